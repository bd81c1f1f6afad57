"""Training: the TrainState, the jitted steps, and the epoch loop.

`train_step` and `eval_step` are pure functions of a TrainState and a batch of
uint8 images; normalisation happens inside them, on the device. The training
set lives on the device for the whole run; each step gathers its batch there
from the epoch's permutation, so the host only dispatches.

A last partial batch is dropped: each epoch takes N // batch_size full batches
of a fresh permutation, so every example is seen equally often over the run.
(MNIST's 60,000 divide evenly by the default 16.) Evaluation covers every test
example: the last eval batch is padded and the padding is ignored.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any

from absl import logging
from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_flax import augment
from mnist_flax import checkpointing
from mnist_flax import data
from mnist_flax import distributed
from mnist_flax import models
from mnist_flax import report
from mnist_flax import robustness
from mnist_flax import transfer
from mnist_flax.config import Config
from mnist_flax.config import semantic_diff
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError
from mnist_flax.errors import DivergenceError


class TrainState(train_state.TrainState):
  batch_stats: Any
  dropout_key: jax.Array  # Base key; each step folds in its step number.
  # Top-level layers that train_step passes through unchanged (--finetune).
  frozen: frozenset = struct.field(pytree_node=False, default=frozenset())


BASE_BATCH_SIZE = 16  # The study's batch; --scale_lr_with_batch scales from it.


def learning_rate(config: Config) -> float:
  if config.scale_lr_with_batch:
    return config.learning_rate * config.batch_size / BASE_BATCH_SIZE
  return config.learning_rate


def make_schedule(config: Config, total_steps: int):
  """The learning rate as a function of the step (a float when constant)."""
  lr = learning_rate(config)
  if config.schedule == 'constant':
    return lr
  if config.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, total_steps)
  if config.schedule == 'one-cycle':
    return optax.linear_onecycle_schedule(total_steps, lr, pct_start=0.3)
  return optax.piecewise_constant_schedule(
      lr, {int(total_steps * 0.5): 0.1, int(total_steps * 0.75): 0.1})


def _base_optimizer(config: Config, lr) -> optax.GradientTransformation:
  if config.optimizer == 'adam':
    tx = optax.adam(lr)
  else:
    momentum = None if config.optimizer == 'sgd' else 0.9
    tx = optax.sgd(lr, momentum=momentum,
                   nesterov=config.optimizer == 'nesterov')
  if config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  if config.learning_rates:
    # Each optimizer's update is linear in its rate, so a per-model factor
    # on the update, held in the optimizer state, gives model k its rate.
    tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
  return tx


def make_optimizer(config: Config,
                   total_steps: int = 1) -> optax.GradientTransformation:
  """The optimizer of --optimizer/--schedule/--weight_decay; with --finetune or
  --trunk_lr_scale, per-group rates and frozen layers (see transfer.py)."""
  lr = make_schedule(config, total_steps)
  if config.finetune == 'full' and config.trunk_lr_scale == 1.0:
    return _base_optimizer(config, lr)
  scale = config.trunk_lr_scale
  trunk_lr = (lambda step: lr(step) * scale) if callable(lr) else lr * scale
  return optax.multi_transform(
      {'head': _base_optimizer(config, lr),
       'trunk': _base_optimizer(config, trunk_lr),
       'frozen': optax.set_to_zero()},
      lambda params: {name: jax.tree.map(lambda _, g=group: g, params[name])
                      for name, group in transfer.trainable_layers(
                          config, params).items()})


def create_train_state(config: Config, model, key: jax.Array,
                       image_shape: tuple[int, ...], total_steps: int = 1,
                       lr_scale: float | jax.Array = 1.0) -> TrainState:
  """One model's TrainState; lr_scale is its rate over --learning_rate
  (used with --learning_rates)."""
  init_key, dropout_key = jax.random.split(key)
  variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32),
                         train=False)
  state = TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=make_optimizer(config, total_steps), dropout_key=dropout_key,
      frozen=transfer.frozen_layers(config, variables['params']))
  if config.learning_rates:
    state = state.replace(opt_state=optax.tree_utils.tree_set(
        state.opt_state, step_size=jnp.asarray(lr_scale, jnp.float32)))
  return state


def model_keys(config: Config) -> tuple[jax.Array, jax.Array]:
  """(init keys, shuffle keys), one row per model: model k's come from
  --seed+k, so model 0 of --num_models=K is the run of --num_models=1."""
  keys = jnp.stack([jax.random.split(jax.random.PRNGKey(config.seed + k))
                    for k in range(config.num_models)])
  return keys[:, 0], keys[:, 1]


def init_state(config: Config, model, image_shape: tuple[int, ...],
               total_steps: int = 1, out_shardings=None) -> TrainState:
  """The run's TrainState: one model's, or with --num_models=K the K models'
  stacked on a leading axis (each leaf gets a first dimension of K)."""
  init_keys, _ = model_keys(config)
  create = functools.partial(create_train_state, config, model,
                             image_shape=image_shape, total_steps=total_steps)
  if config.num_models == 1:
    return jax.jit(create, out_shardings=out_shardings)(init_keys[0])
  rates = config.model_learning_rates()
  scales = (np.asarray(rates, np.float32) / config.learning_rate if rates
            else np.ones(config.num_models, np.float32))
  return jax.jit(jax.vmap(lambda key, scale: create(key, lr_scale=scale)),
                 out_shardings=out_shardings)(init_keys, scales)


def normalize(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1], on the device."""
  return images.astype(jnp.float32) / 255.0


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


_params_finite = jax.jit(_all_finite)


def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
               skip_nonfinite: bool = False, augment_spec: str = 'none',
               label_smoothing: float = 0.0):
  """One optimizer step on a batch of uint8 images; returns (state, metrics).

  With skip_nonfinite, a step whose loss or updated params are NaN/Inf leaves the
  params, optimizer state and BN statistics as they were (the step counter
  still advances, so dropout draws new masks).
  """
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)
  x = augment.apply(augment_spec, jax.random.fold_in(dropout_key, 0xA06),
                    normalize(images))

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats},
        x, train=True, rngs={'dropout': dropout_key},
        mutable=['batch_stats'])
    if label_smoothing:
      targets = optax.smooth_labels(
          jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
      loss = optax.softmax_cross_entropy(logits, targets)
    else:
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  if state.frozen:
    keep = lambda new, old: {k: old[k] if k in state.frozen else v
                             for k, v in new.items()}
    new_state = new_state.replace(
        params=keep(new_state.params, state.params),
        batch_stats=keep(new_state.batch_stats, state.batch_stats))
  metrics = {'loss': loss,
             'correct': jnp.sum(jnp.argmax(logits, -1) == labels)}
  if skip_nonfinite:
    finite = jnp.isfinite(loss) & _all_finite(
        (new_state.params, new_state.batch_stats))
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                             new_state, state.replace(step=new_state.step))
    metrics['skipped'] = 1 - finite.astype(jnp.int32)
  return new_state, metrics


def eval_step(state: TrainState, images: jax.Array, labels: jax.Array):
  """Per-example loss and logits, with BN in inference mode, no dropout."""
  logits = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats},
      normalize(images), train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return {'loss': loss, 'logits': logits}


def _step_options(config: Config) -> tuple:
  """The config fields a compiled step depends on (the model and optimizer
  come in through the TrainState), so runs that differ only in, say, the seed
  share one compiled step."""
  return (config.batch_size, config.skip_nonfinite, config.augment,
          config.label_smoothing, config.num_models)


def _batch_step(mesh, options: tuple):
  """train_step on batch `index` of the permutation `order` of device data.

  The training set is replicated on every device; the batch indices are
  sharded over the mesh, so each device gathers and computes its own slice of
  the global batch, and XLA averages gradients and BN statistics across them.
  With several models the step is vmapped over the stacked states and their
  permutations; the data is shared.
  """
  size, skip_nonfinite, augment_spec, label_smoothing, num_models = options
  batch = distributed.batch_sharded(mesh)

  def step(state, images, labels, order, index):
    idx = jax.lax.dynamic_slice_in_dim(order, index * size, size)
    idx = jax.lax.with_sharding_constraint(idx, batch)
    return train_step(state, images[idx], labels[idx], skip_nonfinite,
                      augment_spec, label_smoothing)

  if num_models > 1:
    return jax.vmap(step, in_axes=(0, None, None, 0, None))
  return step


def make_train_step(mesh, config: Config):
  """One jitted call per step: (state, images, labels, order, index)."""
  return _make_train_step(mesh, _step_options(config))


@functools.lru_cache
def _make_train_step(mesh, options: tuple):
  replicated = distributed.replicated(mesh)
  return jax.jit(_batch_step(mesh, options), donate_argnums=0,
                 out_shardings=(replicated, replicated))


def make_train_scan(mesh, config: Config, num_steps: int):
  """`num_steps` consecutive steps in one lax.scan: (state, ..., order, first).

  One dispatch per num_steps: the remedy for per-step overhead on GPU/TPU at
  small batches. Returns per-step metrics stacked on a leading axis.
  """
  return _make_train_scan(mesh, _step_options(config), num_steps)


@functools.lru_cache
def _make_train_scan(mesh, options: tuple, num_steps: int):
  replicated = distributed.replicated(mesh)
  step = _batch_step(mesh, options)

  @functools.partial(jax.jit, donate_argnums=0,
                     out_shardings=(replicated, replicated))
  def steps(state, images, labels, order, first):
    return jax.lax.scan(
        lambda state, index: step(state, images, labels, order, index),
        state, first + jnp.arange(num_steps))

  return steps


def resolve_loop(loop: str) -> str:
  """'auto' -> 'step' on CPU (measured faster there), 'scan' elsewhere."""
  if loop != 'auto':
    return loop
  return 'step' if jax.default_backend() == 'cpu' else 'scan'


@functools.lru_cache
def make_eval_step(mesh, batch_size: int, num_models: int = 1):
  """Jitted eval_step on batch `index`; outputs replicated for the host.
  With several models, vmapped over the stacked states: outputs get a
  leading model axis."""
  batch = distributed.batch_sharded(mesh)

  def step(state, images, labels, index):
    x = jax.lax.dynamic_slice_in_dim(images, index * batch_size, batch_size)
    y = jax.lax.dynamic_slice_in_dim(labels, index * batch_size, batch_size)
    x = jax.lax.with_sharding_constraint(x, batch)
    return eval_step(state, x, jax.lax.with_sharding_constraint(y, batch))

  if num_models > 1:
    step = jax.vmap(step, in_axes=(0, None, None, None))
  return jax.jit(step, out_shardings=distributed.replicated(mesh))


@dataclasses.dataclass
class EvalResult:
  """A test-set evaluation; with several models, of their ensemble (the
  mean of their softmaxes), plus each model's own loss and accuracy."""
  loss: float
  accuracy: float
  preds: np.ndarray       # (N,) predicted class
  confidence: np.ndarray  # (N,) softmax probability of the predicted class
  model_loss: list[float] | None = None
  model_accuracy: list[float] | None = None


def evaluate(state: TrainState, images: jax.Array, labels: jax.Array,
             batch_size: int, mesh=None, num_examples: int | None = None,
             num_models: int = 1) -> EvalResult:
  """Evaluates the first `num_examples` (default: all) in batches.

  If the arrays are not a multiple of batch_size they are padded here; the
  training loop pads its test set once instead. Padding never counts.
  """
  mesh = mesh or distributed.make_mesh()
  n = labels.shape[0] if num_examples is None else num_examples
  if labels.shape[0] % batch_size:
    pad = batch_size - labels.shape[0] % batch_size
    images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    labels = jnp.pad(labels, (0, pad))
  step = make_eval_step(mesh, batch_size, num_models)
  outs = [step(state, images, labels, i)
          for i in range(labels.shape[0] // batch_size)]
  # Example axis last but one: (N, C) for one model, (K, N, C) for K.
  loss = np.concatenate([np.asarray(o['loss']) for o in outs], -1)[..., :n]
  logits = np.concatenate([np.asarray(o['logits']) for o in outs], -2)
  probs = np.asarray(jax.nn.softmax(logits[..., :n, :]))
  labels = np.asarray(labels)[:n]
  if num_models == 1:
    preds = probs.argmax(-1)
    return EvalResult(loss=float(loss.mean()),
                      accuracy=float((preds == labels).mean()),
                      preds=preds, confidence=probs.max(-1))
  ensemble = probs.mean(0)
  preds = ensemble.argmax(-1)
  nll = -np.log(np.maximum(ensemble[np.arange(n), labels], 1e-30))
  return EvalResult(
      loss=float(nll.mean()), accuracy=float((preds == labels).mean()),
      preds=preds, confidence=ensemble.max(-1),
      model_loss=[float(x) for x in loss.mean(-1)],
      model_accuracy=[float(x) for x in
                      (probs.argmax(-1) == labels).mean(-1)])


def prepare_workdir(config: Config, workdir: str, restart: bool) -> None:
  """Creates workdir and config.json; refuses a workdir of another config."""
  workdir = os.path.abspath(workdir)
  parent = os.path.dirname(workdir)
  if not os.path.isdir(parent):
    raise ConfigError(f'--workdir={workdir}: parent folder {parent} does not '
                      'exist')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir={workdir} exists and is not a folder')
  config_path = os.path.join(workdir, 'config.json')
  if os.path.exists(config_path):
    try:
      with open(config_path) as f:
        diff = semantic_diff(Config.from_dict(json.load(f)), config)
    except (ValueError, TypeError, ConfigError) as e:
      diff = {'config.json': (f'unreadable ({e})', '')}
    if diff and not restart:
      changes = '; '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())
      raise CheckpointError(
          f'{workdir} holds a run with another config ({changes}); use a new '
          '--workdir, or pass --restart to move the old run aside')
    if diff:
      aside = f'{workdir}.old-{time.strftime("%Y%m%d-%H%M%S")}'
      os.rename(workdir, aside)
      logging.warning('--restart: moved the previous run to %s', aside)
  os.makedirs(workdir, exist_ok=True)
  report.write_atomic(config_path, config.to_json() + '\n')


class _Progress:
  """Prints a line every `every_s` seconds inside an epoch: rate and ETA."""

  def __init__(self, epoch, epochs, steps, batch_size, every_s):
    self.epoch, self.epochs, self.steps = epoch, epochs, steps
    self.batch_size, self.every_s = batch_size, every_s
    self.start = self.last = time.perf_counter()

  def maybe_log(self, step: int, metrics: list[dict], epochs_left: int):
    now = time.perf_counter()
    if now - self.last < self.every_s or step == self.steps:
      return
    jax.block_until_ready(metrics[-1])
    now = time.perf_counter()
    self.last = now
    rate = step * self.batch_size / (now - self.start)
    recent = jax.device_get(metrics[-min(len(metrics), 100):])
    loss = np.mean(np.concatenate([np.ravel(m['loss']) for m in recent]))
    eta_epoch = (self.steps - step) * self.batch_size / rate
    eta_run = eta_epoch + epochs_left * self.steps * self.batch_size / rate
    logging.info(
        'epoch %d/%d  step %d/%d  loss %.4f  %.0f img/s  ETA epoch %.0fs, '
        'run %.1f min', self.epoch, self.epochs, step, self.steps, loss, rate,
        eta_epoch, eta_run / 60)


def _first_nonfinite(losses: np.ndarray) -> int | None:
  bad = np.flatnonzero(~np.isfinite(losses))
  return int(bad[0]) if bad.size else None


def _per_step(metrics: list[dict], loop: str) -> list[dict]:
  """Per-step metric dicts, whether each call ran one step or a scan of many."""
  if loop == 'step':
    return metrics
  return [{k: v[i] for k, v in chunk.items()}
          for chunk in metrics for i in range(len(chunk['loss']))]


def _pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
  pad = -len(array) % multiple
  return np.pad(array, [(0, pad)] + [(0, 0)] * (array.ndim - 1))


def train_and_evaluate(config: Config, workdir: str,
                       restart: bool = False) -> dict:
  """Trains config's model in workdir (resuming if possible); returns results.

  Runs data-parallel over every device of every process (see distributed.py);
  only process 0 writes files other than checkpoints.
  """
  config.validate()
  mesh = distributed.make_mesh()
  distributed.check_divisible('batch_size', config.batch_size, mesh)
  distributed.check_divisible('eval_batch_size', config.eval_batch_size, mesh)
  primary = distributed.is_primary()
  if primary:
    prepare_workdir(config, workdir, restart)
    ds = data.load(config)  # Prepares the tfds dataset once, for everyone.
  distributed.barrier('data prepared')
  if not primary:
    ds = data.load(config)

  n_train = len(ds.train_labels)
  steps = n_train // config.batch_size
  if steps == 0:
    raise ConfigError(f'--batch_size={config.batch_size} exceeds the '
                      f'{n_train} training examples')
  model = models.create_model(config, ds.num_classes)
  state = init_state(config, model, ds.train_images.shape[1:],
                     steps * config.epochs, distributed.replicated(mesh))
  logging.info('model %s: %d parameters (%d models); %d devices, %d per step '
               'each', config.arch,
               sum(x.size for x in jax.tree.leaves(state.params)),
               config.num_models, mesh.devices.size,
               config.batch_size // mesh.devices.size)

  ckpt = checkpointing.Checkpointer(workdir, config.checkpoints_to_keep)
  restored = ckpt.restore_latest(state)
  if restored:
    start_epoch, state, history = restored
    if primary:
      report.write_metrics(workdir, history)
    logging.info('resumed from the checkpoint of epoch %d', start_epoch)
  else:
    start_epoch, history = 0, []
    if config.init_from:
      skip = (transfer.HEAD,) if config.reinit_head else ()
      state = transfer.init_from(state, config.init_from,
                                 workdir if primary else None, skip)

  # Every split goes to the devices once, as uint8; the test set is padded to
  # whole eval batches here so evaluation never reshapes.
  dev = data.Dataset(
      train_images=distributed.put_replicated(ds.train_images, mesh),
      train_labels=distributed.put_replicated(ds.train_labels, mesh),
      test_images=distributed.put_replicated(
          _pad_to_multiple(ds.test_images, config.eval_batch_size), mesh),
      test_labels=distributed.put_replicated(
          _pad_to_multiple(ds.test_labels, config.eval_batch_size), mesh),
      class_names=ds.class_names)
  run = _EpochRunner(config, mesh, dev, len(ds.test_labels))
  if primary and augment.parse(config.augment):
    _save_augment_preview(config, ds, workdir)

  writer = None
  if primary and config.tensorboard:
    from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top
    writer = tensorboard.SummaryWriter(workdir)  # Imports TF: keep it local.
  try:
    result = None
    for epoch in range(start_epoch + 1, config.epochs + 1):
      state, row, result = run.epoch(state, epoch, ckpt)
      history.append(row)
      ckpt.save(epoch, state, history)
      if primary:
        report.write_metrics(workdir, history)
      if writer:
        for name, value in row.items():
          if isinstance(value, list):  # Per model: one curve each.
            for k, v in enumerate(value):
              writer.scalar(f'{name}/{k}', v, epoch)
          elif name != 'epoch':
            writer.scalar(name, value, epoch)
        writer.flush()
  finally:
    ckpt.wait()
    ckpt.close()
    if writer:
      writer.close()
  if not history:
    raise CheckpointError(f'{workdir}: no epoch was trained')
  logging.info('final state fingerprint %s (process %d)',
               checkpointing.fingerprint(state), jax.process_index())
  if result is None:  # Everything was restored; evaluate the final state.
    result = run.evaluate(state)
  robust = evaluate_robustness(state, ds, config, mesh)
  if not primary:
    return {}
  return write_results(workdir, history, ds, result, robust,
                       config.num_models)


class _EpochRunner:
  """One epoch: shuffle, the jitted steps, checks, evaluation, a metrics row."""

  def __init__(self, config: Config, mesh, dev: data.Dataset, num_test: int):
    self.config, self.mesh, self.dev, self.num_test = config, mesh, dev, num_test
    shuffle_keys = np.asarray(model_keys(config)[1])
    self.shuffle_key = shuffle_keys if config.num_models > 1 else shuffle_keys[0]
    self.n_train = dev.train_labels.shape[0]
    self.steps = self.n_train // config.batch_size
    self.step_fn = make_train_step(mesh, config)
    self.loop = resolve_loop(config.loop)
    permutation = lambda key, epoch: jax.random.permutation(
        jax.random.fold_in(key, epoch), self.n_train)
    if config.num_models > 1:
      permutation = jax.vmap(permutation, in_axes=(0, None))
    self.order_fn = jax.jit(permutation,
                            out_shardings=distributed.replicated(mesh))

  def evaluate(self, state) -> EvalResult:
    return evaluate(state, self.dev.test_images, self.dev.test_labels,
                    self.config.eval_batch_size, self.mesh, self.num_test,
                    self.config.num_models)

  def epoch(self, state, epoch: int, ckpt):
    config, steps = self.config, self.steps
    start = time.perf_counter()
    order = self.order_fn(self.shuffle_key, epoch)
    progress = _Progress(epoch, config.epochs, steps, config.batch_size,
                         config.log_every_s)
    step_metrics = []
    data = (self.dev.train_images, self.dev.train_labels, order)
    if self.loop == 'step':
      for i in range(steps):
        state, m = self.step_fn(state, *data, i)
        step_metrics.append(m)
        progress.maybe_log(i + 1, step_metrics, config.epochs - epoch)
    else:
      for first in range(0, steps, config.scan_steps):
        n = min(config.scan_steps, steps - first)
        state, m = make_train_scan(self.mesh, config, n)(state, *data, first)
        step_metrics.append(m)
        progress.maybe_log(first + n, step_metrics, config.epochs - epoch)
    step_metrics = _per_step(jax.device_get(step_metrics), self.loop)
    train_seconds = time.perf_counter() - start
    # (steps, models): every model's loss and correct count at every step.
    losses = np.array([m['loss'] for m in step_metrics]).reshape(steps, -1)
    correct = np.array([m['correct'] for m in step_metrics]).reshape(steps, -1)
    skipped = int(sum(np.sum(m.get('skipped', 0)) for m in step_metrics))
    if skipped:
      logging.warning('epoch %d: skipped %d of %d steps with a non-finite '
                      'loss or update', epoch, skipped,
                      steps * config.num_models)
    bad = (None if config.skip_nonfinite
           else _first_nonfinite(losses.max(axis=1)))
    if bad is not None or not bool(_params_finite(state.params)):
      ckpt.wait()
      where = f'step {bad + 1}' if bad is not None else 'its end'
      value = losses[bad].max() if bad is not None else 'non-finite params'
      raise DivergenceError(
          f'training diverged ({value}) at epoch {epoch}, {where}; the last '
          f'good checkpoint (epoch {epoch - 1}) is kept in {ckpt.directory}')
    finite = np.isfinite(losses)  # Skipped steps do not count.
    with np.errstate(invalid='ignore'):
      model_loss = np.where(finite, losses, 0).sum(0) / finite.sum(0)
    model_accuracy = correct.sum(0) / (steps * config.batch_size)
    row = {'epoch': epoch, 'train_loss': float(model_loss.mean()),
           'train_accuracy': float(model_accuracy.mean())}
    if config.num_models > 1:  # Above: the means over models.
      row.update(model_train_loss=model_loss.tolist(),
                 model_train_accuracy=model_accuracy.tolist())
    result = None
    if epoch % config.eval_every == 0 or epoch == config.epochs:
      result = self.evaluate(state)
      row.update(test_loss=result.loss, test_accuracy=result.accuracy)
      if config.num_models > 1:
        row.update(model_test_loss=result.model_loss,
                   model_test_accuracy=result.model_accuracy)
    # Images/s counts every model's images.
    row.update(seconds=time.perf_counter() - start,
               train_images_per_s=(steps * config.batch_size *
                                   config.num_models / train_seconds))
    if config.skip_nonfinite:
      row['skipped_steps'] = skipped
    test = (f'test loss {row["test_loss"]:.4f} acc '
            f'{100 * row["test_accuracy"]:.2f}%' if result else 'not evaluated')
    logging.info(
        'epoch %d/%d  train loss %.4f acc %.2f%%  %s  %.1fs  %.0f img/s',
        epoch, config.epochs, row['train_loss'], 100 * row['train_accuracy'],
        test, row['seconds'], row['train_images_per_s'])
    return state, row, result


def _save_augment_preview(config: Config, ds: data.Dataset, workdir: str):
  """augment_preview.png: 8 training digits, each with 7 augmented draws."""
  originals = jnp.asarray(normalize(ds.train_images[:8]))
  draws = [augment.apply(config.augment, jax.random.PRNGKey(i), originals)
           for i in range(7)]
  grid = jnp.stack([originals] + draws, axis=1).reshape(-1, *originals.shape[1:])
  titles = [('original ' if j == 0 else '') + ds.class_names[int(label)]
            for label in ds.train_labels[:8] for j in range(8)]
  report.plot_image_grid(np.asarray(grid * 255), titles,
                         os.path.join(workdir, 'augment_preview.png'),
                         f'--augment={config.augment}')


def evaluate_robustness(state, ds: data.Dataset, config: Config,
                        mesh) -> dict[str, EvalResult]:
  """Each robustness set, built from the first test images, evaluated."""
  n = min(config.robustness_examples, len(ds.test_labels))
  if not n:
    return {}
  size = config.eval_batch_size
  labels = distributed.put_replicated(
      _pad_to_multiple(ds.test_labels[:n], size), mesh)
  results = {}
  for name, images in robustness.build(ds.test_images[:n]).items():
    images = distributed.put_replicated(_pad_to_multiple(images, size), mesh)
    results[name] = evaluate(state, images, labels, size, mesh, n,
                             config.num_models)
  logging.info('robustness (%d images each): %s', n, ', '.join(
      f'{k} {100 * v.accuracy:.2f}%' for k, v in results.items()))
  return results


def write_results(workdir: str, history: list[dict], ds: data.Dataset,
                  result: EvalResult,
                  robust: dict[str, EvalResult] | None = None,
                  num_models: int = 1) -> dict:
  """results.json and the PNG plots for the final state (with several
  models, the ensemble's, plus each model's own accuracies)."""
  robust = robust or {}
  extra = {}
  if robust:
    extra['robustness_accuracy'] = {k: r.accuracy for k, r in robust.items()}
  if num_models > 1:
    extra.update(num_models=num_models,
                 model_final_test_accuracy=result.model_accuracy,
                 model_mean_test_accuracy=float(np.mean(result.model_accuracy)),
                 model_std_test_accuracy=float(np.std(result.model_accuracy,
                                                      ddof=1)))
    if robust:
      extra['model_robustness_accuracy'] = {
          k: r.model_accuracy for k, r in robust.items()}
  res = report.results(history, ds.test_labels, result.preds, ds.class_names,
                       extra)
  report.write_atomic(os.path.join(workdir, 'results.json'),
                      json.dumps(res, indent=2) + '\n')
  report.plot_learning_curves(history, os.path.join(workdir, 'curves.png'))
  report.plot_confusion(np.array(res['confusion_matrix']), ds.class_names,
                        os.path.join(workdir, 'confusion.png'))
  report.plot_misclassified(ds.test_images, ds.test_labels, result.preds,
                            result.confidence, ds.class_names,
                            os.path.join(workdir, 'misclassified.png'))
  logging.info('final test accuracy %.2f%% (best %.2f%% at epoch %d); '
               'results in %s', 100 * res['final_test_accuracy'],
               100 * res['best_test_accuracy'], res['best_epoch'], workdir)
  return res
