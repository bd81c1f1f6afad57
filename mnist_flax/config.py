"""The run configuration: one frozen dataclass, the single source of every flag.

main.py turns each field into an absl flag (help text and valid choices come from
the field's metadata), so a new option is added here once and nowhere else.
config.json in a workdir is `dataclasses.asdict(config)`.
"""

import dataclasses
import json
import math
from typing import Any

from mnist_flax.errors import ConfigError


def _field(default, help_text: str, choices: tuple[str, ...] | None = None):
  return dataclasses.field(
      default=default, metadata={'help': help_text, 'choices': choices})


DATASETS = ('mnist', 'fashion_mnist', 'kmnist')


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's result (plus a few logging knobs)."""

  # Data.
  dataset: str = _field('mnist', 'tfds dataset name.', DATASETS)
  data_dir: str = _field(
      '', 'tfds data_dir where prepared datasets live. Empty: $TFDS_DATA_DIR '
      'or tfds\'s default (~/tensorflow_datasets).')
  manual_dir: str = _field(
      '', 'Folder of already downloaded dataset files (offline or air-gapped '
      'machines). tfds verifies their checksums as it does for downloads. '
      '"{dataset}" in it is replaced by --dataset, so one value serves a '
      'study over several datasets, e.g. ../shared/data/{dataset}.')
  verify_checksums: bool = _field(
      True, 'Check --manual_dir files against the checksums tfds registers. '
      'With --noverify_checksums the IDX files are parsed directly, so a '
      'folder of your own IDX files can be trained on.')
  train_examples: int = _field(
      0, 'Train on the first N training examples (0: all).')
  validation_examples: int = _field(
      0, 'Hold out the last N training examples as a validation split, '
      'scored every evaluated epoch; the `best` checkpoint is then chosen on '
      'it instead of the test set. Choose settings on it, not on the test '
      'set.')
  classes: str = _field(
      '', 'Comma list of labels to keep, e.g. 0,1,2,3,4, relabelled 0..K-1 '
      'in the given order (empty: all classes).')

  augment: str = _field(
      'none', 'Comma list of on-device augmentation ops, e.g. '
      '"shift(3),rotate(15)"; see mnist_flax/augment.py.')

  # Model.
  arch: str = _field(
      'seed', 'Model name from mnist_flax.models.MODELS: the study\'s network '
      '(seed); VGG-style blocks of SAME convs, --blocks wide, with a '
      'max-pool between blocks (blocks; --depth, --padding and '
      '--conv_activation do not apply); or a small one for fast CPU runs '
      '(space_to_depth; it takes --width, --dropout, --conv_impl and '
      '--dtype); or Matuzas77/MNIST-0.17\'s network (se_blocks, see '
      'models.SEBlocksCNN and --preset=literature).')
  blocks: str = _field(
      '64,64|128,128|256', 'With --arch=blocks: the conv widths of each '
      'block, blocks separated by |, a 2x2 max-pool between blocks (before '
      '--width); with --arch=se_blocks, the same widths.')
  conv_activation: str = _field(
      'all', 'ReLU after every conv (all) or only after the first, as the '
      'study lists it (first).', ('all', 'first'))
  batchnorm: str = _field(
      'head', 'BatchNorm after the Dense-64 ReLU (head), after every conv '
      '(conv), or off (none).', ('head', 'conv', 'none'))
  dropout: float = _field(0.2, 'Dropout rate before the last Dense layer.')
  padding: str = _field('VALID', 'Conv padding.', ('VALID', 'SAME'))
  width: float = _field(1.0, 'Multiplier on every conv and dense width.')
  depth: int = _field(
      5, 'Number of 3x3 convs (1-6): the study has 5 (32..512 filters); 6 '
      'adds a 1024-filter conv.')
  head: str = _field(
      'flatten', 'Flatten the last feature map into Dense-64 (flatten), or '
      'global-pool it first: average (gap), or max and average side by side '
      '(maxavg).', ('flatten', 'gap', 'maxavg'))
  squeeze_excite: int = _field(
      0, 'Squeeze-excitation after every conv (after every block with '
      '--arch=se_blocks), with this channel reduction in its gate (e.g. 8). '
      '0: none.')
  conv_impl: str = _field(
      'auto', 'How convs are computed (same parameters and sums): '
      'lax.conv_general_dilated (lax) or one GEMM over 3x3 patches '
      '(im2col). auto: im2col on CPU, where it is measured faster, lax on '
      'GPU/TPU.', ('auto', 'lax', 'im2col'))
  dtype: str = _field(
      'float32', 'Compute dtype; params stay float32.',
      ('float32', 'bfloat16'))

  # Optimisation.
  optimizer: str = _field('sgd', 'optax optimizer (momentum 0.9 for '
                          'momentum and nesterov).',
                          ('sgd', 'momentum', 'nesterov', 'adam'))
  learning_rate: float = _field(0.05, 'Peak learning rate.')
  adam_b1: float = _field(0.9, 'Adam\'s first-moment decay.')
  adam_b2: float = _field(0.999, 'Adam\'s second-moment decay.')
  schedule: str = _field(
      'constant', 'Learning-rate schedule over the whole run: constant, '
      'cosine decay to 0, one-cycle (linear warm-up for 30%, then down to '
      '4e-6 of the peak), step (x0.1 at 50% and 75% of the run), or '
      'exponential (down to --final_lr_fraction of the peak).',
      ('constant', 'cosine', 'one-cycle', 'step', 'exponential'))
  final_lr_fraction: float = _field(
      1e-5, 'Where --schedule=exponential ends, as a fraction of the peak.')
  ema_decay: float = _field(
      0.0, 'Keep an exponential moving average of the weights and BN '
      'statistics with this decay (e.g. 0.999); evaluation, checkpoints\' '
      'best and the Predictor then use the average. 0: off.')
  clean_epochs: int = _field(
      0, 'Train the last N epochs without --augment, on the images as they '
      'are.')
  weight_decay: float = _field(
      0.0, 'Decoupled weight decay (added to the update, times the lr).')
  label_smoothing: float = _field(0.0, 'Label smoothing of the targets.')
  scale_lr_with_batch: bool = _field(
      False, 'Linear scaling rule: use learning_rate * batch_size / 16, so a '
      'larger global batch on many devices keeps the per-example step.')
  batch_size: int = _field(16, 'Training batch size.')
  epochs: int = _field(30, 'Number of passes over the training set.')
  seed: int = _field(0, 'Seed for init, shuffling and dropout.')
  num_models: int = _field(
      1, 'Train K independent models in one jitted program (jax.vmap over '
      'a stacked TrainState): model k has seed --seed+k (its own init, '
      'shuffle and dropout). Metrics are per model; test_accuracy is the '
      'ensemble\'s (the mean of the K softmaxes).')
  learning_rates: str = _field(
      '', 'With --num_models=K, a comma list of K learning rates, one per '
      'model, in place of --learning_rate (the schedule shape is shared).')

  skip_nonfinite: bool = _field(
      False, 'Skip a step whose loss or gradients are NaN/Inf (and count it) '
      'instead of stopping the run at the end of the epoch.')

  loop: str = _field(
      'auto', 'How steps are dispatched: one jitted call per step (step), or '
      'lax.scan over --scan_steps steps per call (scan). auto: step on CPU, '
      'where XLA lowers convs inside a loop body to a slow emitter (see '
      'BENCHMARKS.md), scan on GPU/TPU, where per-step dispatch dominates.',
      ('auto', 'step', 'scan'))
  scan_steps: int = _field(100, 'Steps per jitted call with --loop=scan.')

  # Transfer learning.
  init_from: str = _field(
      '', 'Workdir of a finished run whose latest checkpoint initialises '
      'this one; layers whose shapes differ (the head, when the class count '
      'differs) keep their fresh initialisation.')
  finetune: str = _field(
      'full', 'What trains: everything (full), the head and the last trunk '
      'block (head+last), or the head only (linear).',
      ('full', 'head+last', 'linear'))
  reinit_head: bool = _field(
      False, 'With --init_from, keep the fresh head even when its shape '
      'matches the source\'s: a new task with as many classes (MNIST to '
      'Fashion-MNIST) should not start from the old labels\' weights.')
  trunk_lr_scale: float = _field(
      1.0, 'Learning-rate multiplier for the trainable layers below the head.')

  # Evaluation and bookkeeping.
  eval_batch_size: int = _field(1000, 'Batch size for test-set evaluation.')
  robustness_examples: int = _field(
      10000, 'Test images in each robustness set (rotated, shifted, scaled, '
      'noisy; see mnist_flax/robustness.py), scored after the last epoch. '
      '0: none.')
  eval_every: int = _field(
      1, 'Evaluate on the test set every N epochs and after the last one; '
      'short study runs use it to spend their budget on training.')
  tensorboard: bool = _field(
      True, 'Write TensorBoard event files. They need TensorFlow, whose '
      'import adds seconds to start-up; metrics.jsonl has '
      'the same numbers.')
  plots: bool = _field(
      True, 'Draw curves.png, confusion.png and misclassified.png at the end '
      '(matplotlib; about a second or more). results.json has the numbers.')
  checkpoints_to_keep: int = _field(
      3, 'Latest checkpoints kept (the best one is kept as well).')
  log_every_s: float = _field(
      10.0, 'Seconds between progress lines inside an epoch.')

  def block_widths(self) -> tuple[tuple[int, ...], ...]:
    """--blocks parsed: one tuple of conv widths a block."""
    try:
      widths = tuple(tuple(int(w) for w in block.split(','))
                     for block in self.blocks.split('|'))
    except ValueError:
      widths = ()
    if not widths or any(w <= 0 for block in widths for w in block):
      raise ConfigError(
          f'--blocks={self.blocks!r} is not valid: write positive conv '
          'widths, a comma between convs and | between blocks, e.g. '
          '64,64|128,128|256')
    if len(widths) > 5:  # A 2x2 pool between blocks: 28, 14, 7, 3, 1.
      raise ConfigError(f'--blocks={self.blocks!r} has {len(widths)} blocks; '
                        'at most 5 fit a 28x28 image')
    return widths

  def validate(self) -> 'Config':
    """Raises ConfigError naming the first bad value; returns self."""
    for f in dataclasses.fields(self):
      choices = f.metadata.get('choices')
      value = getattr(self, f.name)
      # bool is an int to isinstance; an int is a fine float.
      allowed = (int, float) if f.type is float else f.type
      if not isinstance(value, allowed) or (
          f.type is not bool and isinstance(value, bool)):
        kind = {int: 'an integer', float: 'a number', str: 'a string',
                bool: 'true or false'}[f.type]
        raise ConfigError(f'--{f.name}={value!r} must be {kind}')
      if f.type is float and not math.isfinite(value):
        raise ConfigError(f'--{f.name}={value!r} must be a finite number')
      if choices and value not in choices:
        raise ConfigError(
            f'--{f.name}={value!r} is not valid; choose one of: '
            + ', '.join(choices))
    from mnist_flax import models  # Local import: models imports flax.
    if self.arch not in models.MODELS:
      raise ConfigError(
          f'--arch={self.arch!r} is not valid; choose one of: '
          + ', '.join(sorted(models.MODELS)))
    self.block_widths()  # Raises on a malformed --blocks.
    for name in ('batch_size', 'epochs', 'eval_batch_size', 'eval_every',
                 'checkpoints_to_keep', 'scan_steps', 'num_models'):
      if getattr(self, name) <= 0:
        raise ConfigError(
            f'--{name} must be a positive integer, got {getattr(self, name)}')
    if self.robustness_examples < 0:
      raise ConfigError('--robustness_examples must be >= 0 (0 means none)')
    if self.validation_examples < 0:
      raise ConfigError('--validation_examples must be >= 0 (0 means none)')
    if self.train_examples < 0:
      raise ConfigError('--train_examples must be >= 0 (0 means all)')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'--dropout must be in [0, 1), got {self.dropout}')
    if self.learning_rate <= 0:
      raise ConfigError(
          f'--learning_rate must be positive, got {self.learning_rate}')
    if self.trunk_lr_scale < 0:
      raise ConfigError(
          f'--trunk_lr_scale must be >= 0, got {self.trunk_lr_scale}')
    if not 1 <= self.depth <= 6:
      raise ConfigError(f'--depth must be in 1..6, got {self.depth}')
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ConfigError(
          f'--label_smoothing must be in [0, 1), got {self.label_smoothing}')
    if not (0.0 <= self.adam_b1 < 1.0 and 0.0 <= self.adam_b2 < 1.0):
      raise ConfigError('--adam_b1 and --adam_b2 must be in [0, 1), got '
                        f'{self.adam_b1}, {self.adam_b2}')
    if not 0.0 <= self.ema_decay < 1.0:
      raise ConfigError(f'--ema_decay must be in [0, 1), got {self.ema_decay}')
    if not 0 <= self.clean_epochs <= self.epochs:
      raise ConfigError(f'--clean_epochs must be in 0..--epochs '
                        f'({self.epochs}), got {self.clean_epochs}')
    if not 0.0 < self.final_lr_fraction <= 1.0:
      raise ConfigError('--final_lr_fraction must be in (0, 1], got '
                        f'{self.final_lr_fraction}')
    if self.weight_decay < 0:
      raise ConfigError(f'--weight_decay must be >= 0, got {self.weight_decay}')
    if self.squeeze_excite < 0:
      raise ConfigError('--squeeze_excite must be >= 0 (0 means none), got '
                        f'{self.squeeze_excite}')
    if self.width <= 0:
      raise ConfigError(f'--width must be positive, got {self.width}')
    self.class_list()  # Raises on a malformed --classes.
    self.model_learning_rates()  # Raises on a malformed --learning_rates.
    if self.num_models > 1 and self.init_from:
      raise ConfigError('--init_from works with one model; use --num_models=1')
    from mnist_flax import augment  # pylint: disable=g-import-not-at-top
    augment.parse(self.augment)  # Raises listing the valid ops.
    return self

  def class_list(self) -> tuple[int, ...] | None:
    """The --classes subset as ints, or None for all classes."""
    if not self.classes:
      return None
    try:
      labels = tuple(int(c) for c in self.classes.split(','))
    except ValueError:
      raise ConfigError(
          f'--classes={self.classes!r} must be a comma list of integer labels'
      ) from None
    if len(set(labels)) != len(labels) or len(labels) < 2:
      raise ConfigError(
          f'--classes={self.classes!r} needs at least two distinct labels')
    if any(not 0 <= c < 10 for c in labels):
      raise ConfigError(f'--classes={self.classes!r}: labels must be 0..9')
    return labels

  def model_learning_rates(self) -> tuple[float, ...] | None:
    """The --learning_rates list as floats, or None when not given."""
    if not self.learning_rates:
      return None
    try:
      rates = tuple(float(r) for r in self.learning_rates.split(','))
    except ValueError:
      raise ConfigError(f'--learning_rates={self.learning_rates!r} must be a '
                        'comma list of numbers') from None
    if self.num_models < 2 or len(rates) != self.num_models:
      raise ConfigError(
          f'--learning_rates={self.learning_rates!r} needs one rate per model: '
          f'{len(rates)} rates for --num_models={self.num_models} (use '
          '--learning_rate for a single model)')
    if not all(math.isfinite(r) and r > 0 for r in rates):
      raise ConfigError(
          f'--learning_rates={self.learning_rates!r}: rates must be positive '
          'and finite')
    return rates

  @property
  def num_classes(self) -> int:
    labels = self.class_list()
    return len(labels) if labels else 10

  def summary(self) -> str:
    """The fields that differ from the seed recipe, as flags."""
    changed = [f'--{f.name}={getattr(self, f.name)}'
               for f in dataclasses.fields(self)
               if getattr(self, f.name) != f.default]
    return ' '.join(changed) or 'the seed recipe (all defaults)'

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'Config':
    if not isinstance(d, dict):
      raise ConfigError('not a JSON object of flag names and values')
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ConfigError(f'unknown config keys: {", ".join(unknown)}')
    return cls(**d)


# Fields that may differ between a run and its resumption without changing
# any result: where the data lives, how often progress is printed, and
# whether TensorBoard files are written.
NON_SEMANTIC_FIELDS = frozenset(
    {'data_dir', 'manual_dir', 'verify_checksums', 'log_every_s',
     'tensorboard', 'plots'})


def semantic_diff(a: Config, b: Config) -> dict[str, tuple[Any, Any]]:
  """Fields whose values differ in a way that changes the run's result."""
  da, db = dataclasses.asdict(a), dataclasses.asdict(b)
  return {k: (da[k], db[k]) for k in da
          if k not in NON_SEMANTIC_FIELDS and da[k] != db[k]}
