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
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_flax import checkpointing
from mnist_flax import data
from mnist_flax import models
from mnist_flax import report
from mnist_flax.config import Config
from mnist_flax.config import semantic_diff
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError
from mnist_flax.errors import DivergenceError


class TrainState(train_state.TrainState):
  batch_stats: Any
  dropout_key: jax.Array  # Base key; each step folds in its step number.


def make_optimizer(config: Config) -> optax.GradientTransformation:
  return optax.sgd(config.learning_rate)


def create_train_state(config: Config, model, key: jax.Array,
                       image_shape: tuple[int, ...]) -> TrainState:
  init_key, dropout_key = jax.random.split(key)
  variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32),
                         train=False)
  return TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=make_optimizer(config), dropout_key=dropout_key)


def normalize(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1], on the device."""
  return images.astype(jnp.float32) / 255.0


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


_params_finite = jax.jit(_all_finite)


def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
               skip_nonfinite: bool = False):
  """One SGD step on a batch of uint8 images; returns (state, metrics).

  With skip_nonfinite, a step whose loss or updated params are NaN/Inf leaves the
  params, optimizer state and BN statistics as they were (the step counter
  still advances, so dropout draws new masks).
  """
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats},
        normalize(images), train=True, rngs={'dropout': dropout_key},
        mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
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


@functools.partial(jax.jit, static_argnames=('batch_size', 'skip_nonfinite'),
                   donate_argnums=0)
def train_step_on_device_data(state, images, labels, order, index, *,
                              batch_size: int, skip_nonfinite: bool = False):
  """train_step on batch `index` of the permutation `order` of device data."""
  idx = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
  return train_step(state, images[idx], labels[idx], skip_nonfinite)


@dataclasses.dataclass
class EvalResult:
  loss: float
  accuracy: float
  preds: np.ndarray       # (N,) predicted class
  confidence: np.ndarray  # (N,) softmax probability of the predicted class


_eval_step = jax.jit(eval_step)


def evaluate(state: TrainState, images: jax.Array, labels: jax.Array,
             batch_size: int) -> EvalResult:
  """Evaluates every example, in batches of `batch_size` (the last padded)."""
  n = images.shape[0]
  losses, logits = [], []
  for start in range(0, n, batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    pad = batch_size - x.shape[0]
    if pad:
      x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
      y = jnp.pad(y, (0, pad))
    out = _eval_step(state, x, y)
    losses.append(out['loss'][:batch_size - pad])
    logits.append(out['logits'][:batch_size - pad])
  loss = np.asarray(jnp.concatenate(losses))
  logits = np.asarray(jnp.concatenate(logits))
  probs = np.asarray(jax.nn.softmax(logits))
  preds = probs.argmax(-1)
  return EvalResult(loss=float(loss.mean()),
                    accuracy=float((preds == np.asarray(labels)).mean()),
                    preds=preds, confidence=probs.max(-1))


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
        old = Config.from_dict(json.load(f))
    except (ValueError, TypeError, ConfigError) as e:
      old, diff = None, {'config.json': (f'unreadable ({e})', '')}
    else:
      diff = semantic_diff(old, config)
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
    loss = np.mean([m['loss'] for m in recent])
    eta_epoch = (self.steps - step) * self.batch_size / rate
    eta_run = eta_epoch + epochs_left * self.steps * self.batch_size / rate
    logging.info(
        'epoch %d/%d  step %d/%d  loss %.4f  %.0f img/s  ETA epoch %.0fs, '
        'run %.1f min', self.epoch, self.epochs, step, self.steps, loss, rate,
        eta_epoch, eta_run / 60)


def _first_nonfinite(losses: np.ndarray) -> int | None:
  bad = np.flatnonzero(~np.isfinite(losses))
  return int(bad[0]) if bad.size else None


def train_and_evaluate(config: Config, workdir: str,
                       restart: bool = False) -> dict:
  """Trains config's model in workdir (resuming if possible); returns results."""
  config.validate()
  prepare_workdir(config, workdir, restart)
  ds = data.load(config)
  model = models.create_model(config, ds.num_classes)
  init_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = create_train_state(config, model, init_key, ds.train_images.shape[1:])
  logging.info('model %s: %d parameters', config.arch, sum(
      x.size for x in jax.tree.leaves(state.params)))

  ckpt = checkpointing.Checkpointer(workdir, config.checkpoints_to_keep)
  restored = ckpt.restore_latest(state)
  if restored:
    start_epoch, state, history = restored
    report.write_metrics(workdir, history)
    logging.info('resumed from the checkpoint of epoch %d', start_epoch)
  else:
    start_epoch, history = 0, []

  n_train = len(ds.train_labels)
  steps = n_train // config.batch_size
  if steps == 0:
    raise ConfigError(f'--batch_size={config.batch_size} exceeds the '
                      f'{n_train} training examples')
  dev = jax.device_put(ds)  # Dataset is a pytree: every split goes over once.

  from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top
  writer = tensorboard.SummaryWriter(workdir)  # Imports TF: keep it local.
  try:
    state, result = _train_epochs(config, workdir, state, history,
                                  start_epoch, shuffle_key, ckpt, writer, dev)
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  if not history:
    raise CheckpointError(f'{workdir}: no epoch was trained')
  if result is None:  # Everything was restored; evaluate the final state.
    result = evaluate(state, dev.test_images, dev.test_labels,
                      config.eval_batch_size)
  return write_results(workdir, history, ds, result)


def _train_epochs(config, workdir, state, history, start_epoch, shuffle_key,
                  ckpt, writer, dev: data.Dataset):
  """Epochs start_epoch+1..config.epochs; appends to history in place."""
  n_train = dev.train_labels.shape[0]
  steps = n_train // config.batch_size
  step_fn = functools.partial(train_step_on_device_data,
                              batch_size=config.batch_size,
                              skip_nonfinite=config.skip_nonfinite)
  result = None
  for epoch in range(start_epoch + 1, config.epochs + 1):
    start = time.perf_counter()
    order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch),
                                   n_train)
    progress = _Progress(epoch, config.epochs, steps, config.batch_size,
                         config.log_every_s)
    step_metrics = []
    for i in range(steps):
      state, m = step_fn(state, dev.train_images, dev.train_labels, order, i)
      step_metrics.append(m)
      progress.maybe_log(i + 1, step_metrics, config.epochs - epoch)
    step_metrics = jax.device_get(step_metrics)
    train_seconds = time.perf_counter() - start
    losses = np.array([m['loss'] for m in step_metrics])
    skipped = sum(int(m.get('skipped', 0)) for m in step_metrics)
    if skipped:
      logging.warning('epoch %d: skipped %d of %d steps with a non-finite '
                      'loss or gradient', epoch, skipped, steps)
      losses = losses[np.isfinite(losses)] if skipped < steps else losses[:0]
    bad = _first_nonfinite(losses) if not config.skip_nonfinite else None
    if bad is not None or not bool(_params_finite(state.params)):
      ckpt.wait()
      where = f'step {bad + 1}' if bad is not None else 'its end'
      value = losses[bad] if bad is not None else 'non-finite params'
      raise DivergenceError(
          f'training diverged ({value}) at epoch {epoch}, {where}; the last '
          f'good checkpoint (epoch {epoch - 1}) is kept in {ckpt.directory}')
    result = evaluate(state, dev.test_images, dev.test_labels,
                      config.eval_batch_size)
    row = {
        'epoch': epoch,
        'train_loss': float(losses.mean()) if losses.size else float('nan'),
        'train_accuracy': float(sum(int(m['correct']) for m in step_metrics)
                                / (steps * config.batch_size)),
        'test_loss': result.loss,
        'test_accuracy': result.accuracy,
        'seconds': time.perf_counter() - start,
        'train_images_per_s': steps * config.batch_size / train_seconds,
    }
    if config.skip_nonfinite:
      row['skipped_steps'] = skipped
    history.append(row)
    ckpt.save(epoch, state, history)
    report.write_metrics(workdir, history)
    for name, value in row.items():
      if name != 'epoch':
        writer.scalar(name, value, epoch)
    writer.flush()
    logging.info(
        'epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  '
        '%.1fs  %.0f img/s', epoch, config.epochs, row['train_loss'],
        100 * row['train_accuracy'], row['test_loss'],
        100 * row['test_accuracy'], row['seconds'], row['train_images_per_s'])
  return state, result


def write_results(workdir: str, history: list[dict], ds: data.Dataset,
                  result: EvalResult) -> dict:
  """results.json and the PNG plots for the final state."""
  res = report.results(history, ds.test_labels, result.preds, ds.class_names)
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
