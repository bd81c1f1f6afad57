"""The training loop: `train_and_evaluate(config, workdir)` and its epochs.

A last partial batch is dropped: each epoch takes N // batch_size full batches
of a fresh permutation, so every example is seen equally often in
expectation (exactly when the batch size divides N, as the default 16 divides
MNIST's 60,000). Evaluation covers every test example. The steps are in
steps.py, the TrainState in state.py, evaluation in evaluation.py, the run
directory's layout in workdir.py and what is written for people in report.py.
"""

import os
import time

from absl import logging
import jax
import numpy as np

from mnist_flax import augment
from mnist_flax import checkpointing
from mnist_flax import console
from mnist_flax import data
from mnist_flax import distributed
from mnist_flax import evaluation
from mnist_flax import models
from mnist_flax import report
from mnist_flax import state as state_lib
from mnist_flax import steps as steps_lib
from mnist_flax import transfer
from mnist_flax import workdir as workdir_lib
from mnist_flax.config import Config
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError
from mnist_flax.errors import DivergenceError


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
  logging.info('config: %s', config.summary())
  if primary:
    workdir_lib.prepare_workdir(config, workdir, restart)
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
  state = state_lib.init_state(config, model, ds.train_images.shape[1:],
                               steps * config.epochs,
                               distributed.replicated(mesh))
  logging.info('model %s: %d parameters (%d models); %d devices, %d per step '
               'each', config.arch,
               sum(x.size for x in jax.tree.leaves(state.params)),
               config.num_models, mesh.devices.size,
               config.batch_size // mesh.devices.size)
  if primary:
    workdir_lib.write_config(config, workdir)

  ckpt = workdir_lib.checkpointer(workdir, config)
  writer = report.MetricsWriter(workdir, config.tensorboard) if primary else None
  try:  # The checkpointer is closed however the run ends.
    restored = ckpt.restore_latest(state)
    if restored:
      start_epoch, state, history = restored
      if writer:
        writer.write_history(history)
      logging.info('resumed from the checkpoint of epoch %d', start_epoch)
    else:
      start_epoch, history = 0, []
      if config.init_from:
        skip = (models.HEAD,) if config.reinit_head else ()
        state = transfer.init_from(state, config.init_from,
                                   workdir if primary else None, skip)

    run = _Epochs(config, mesh, ds)
    if primary and augment.parse(config.augment):
      report.save_augment_preview(
          config.augment, ds.train_images, ds.train_labels, ds.class_names,
          os.path.join(workdir, 'augment_preview.png'))
    result = None
    for epoch in range(start_epoch + 1, config.epochs + 1):
      state, row, result = run.epoch(state, epoch, ckpt)
      history.append(row)
      ckpt.save(epoch, state, history)
      if writer:
        writer.write_epoch(history)
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
  robust = evaluation.evaluate_robustness(state, ds, config, mesh)
  if not primary:
    return {}
  return report.write_results(workdir, history, ds.test_images, ds.test_labels,
                              ds.class_names, result, robust,
                              config.num_models, config.plots)


class _Epochs:
  """The run's epochs: shuffle, the jitted steps, checks, evaluation, a row."""

  def __init__(self, config: Config, mesh, ds: data.Dataset):
    self.config, self.mesh = config, mesh
    # Every split goes to the devices once, as uint8; the evaluated splits are
    # padded to whole eval batches here so evaluation never reshapes.
    put = lambda x: distributed.put_replicated(x, mesh)
    pad = lambda x: put(data.pad_to_multiple(x, config.eval_batch_size))
    self.train_split = (put(ds.train_images), put(ds.train_labels))
    self.eval_splits = {'test': (pad(ds.test_images), pad(ds.test_labels),
                                 len(ds.test_labels))}
    if len(ds.val_labels):
      self.eval_splits['val'] = (pad(ds.val_images), pad(ds.val_labels),
                                 len(ds.val_labels))
    shuffle_keys = np.asarray(state_lib.model_keys(config)[1])
    self.shuffle_key = shuffle_keys if config.num_models > 1 else shuffle_keys[0]
    self.n_train = len(ds.train_labels)
    self.steps = self.n_train // config.batch_size
    self.loop = steps_lib.resolve_loop(config.loop)
    permutation = lambda key, epoch: jax.random.permutation(
        jax.random.fold_in(key, epoch), self.n_train)
    if config.num_models > 1:
      permutation = jax.vmap(permutation, in_axes=(0, None))
    self.order_fn = jax.jit(permutation,
                            out_shardings=distributed.replicated(mesh))

  def evaluate(self, state, split: str = 'test') -> evaluation.EvalResult:
    images, labels, n = self.eval_splits[split]
    return evaluation.evaluate(state, images, labels,
                               self.config.eval_batch_size, self.mesh, n,
                               self.config.num_models)

  def _train(self, state, epoch: int):
    """Dispatches the epoch's steps; returns (state, per-step metrics)."""
    config = self.config
    progress = console.Progress(epoch, config.epochs, self.steps,
                                config.batch_size, config.log_every_s)
    args = (*self.train_split, self.order_fn(self.shuffle_key, epoch))
    metrics = []
    if self.loop == 'step':
      step_fn = steps_lib.make_train_step(self.mesh, config, epoch)
      for i in range(self.steps):
        state, m = step_fn(state, *args, i)
        metrics.append(m)
        progress.maybe_log(i + 1, metrics, config.epochs - epoch)
    else:
      for first in range(0, self.steps, config.scan_steps):
        n = min(config.scan_steps, self.steps - first)
        scan = steps_lib.make_train_scan(self.mesh, config, n, epoch)
        state, m = scan(state, *args, first)
        metrics.append(m)
        progress.maybe_log(first + n, metrics, config.epochs - epoch)
    metrics = jax.device_get(metrics)
    progress.close()
    if self.loop == 'scan':  # One entry per call: unstack the scanned steps.
      metrics = [{k: v[i] for k, v in chunk.items()}
                 for chunk in metrics for i in range(len(chunk['loss']))]
    return state, metrics

  def _check_finite(self, state, losses: np.ndarray, epoch: int, ckpt):
    """DivergenceError at the first non-finite loss (or params), unless
    --skip_nonfinite skipped those steps."""
    bad = None
    if not self.config.skip_nonfinite:
      nonfinite = np.flatnonzero(~np.isfinite(losses.max(axis=1)))
      bad = int(nonfinite[0]) if nonfinite.size else None
    if bad is None and bool(steps_lib.params_finite(state.params)):
      return
    ckpt.wait()
    where = f'step {bad + 1}' if bad is not None else 'its end'
    value = losses[bad].max() if bad is not None else 'non-finite params'
    kept = (f'the last good checkpoint (epoch {epoch - 1}) is kept in '
            f'{ckpt.directory}' if epoch > 1 else 'no checkpoint was written')
    raise DivergenceError(
        f'training diverged ({value}) at epoch {epoch}, {where}; {kept}')

  def epoch(self, state, epoch: int, ckpt):
    """One epoch; returns (state, metrics row, test EvalResult or None)."""
    config, steps = self.config, self.steps
    start = time.perf_counter()
    state, step_metrics = self._train(state, epoch)
    train_seconds = time.perf_counter() - start
    # (steps, models): every model's loss and correct count at every step.
    losses = np.array([m['loss'] for m in step_metrics]).reshape(steps, -1)
    correct = np.array([m['correct'] for m in step_metrics]).reshape(steps, -1)
    skipped = int(sum(np.sum(m.get('skipped', 0)) for m in step_metrics))
    if skipped:
      logging.warning('epoch %d: skipped %d of %d steps with a non-finite '
                      'loss or update', epoch, skipped,
                      steps * config.num_models)
    self._check_finite(state, losses, epoch, ckpt)
    # A step's loss and correct count are of the params it started from, kept
    # as they were when --skip_nonfinite skips it; a non-finite loss is left out.
    finite = np.isfinite(losses)
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
      for split in self.eval_splits:
        scored = self.evaluate(state, split)
        row.update({f'{split}_loss': scored.loss,
                    f'{split}_accuracy': scored.accuracy})
        if config.num_models > 1:
          row.update({f'model_{split}_loss': scored.model_loss,
                      f'model_{split}_accuracy': scored.model_accuracy})
        if split == 'test':
          result = scored
    # Images/s counts every model's images.
    row.update(seconds=time.perf_counter() - start,
               train_images_per_s=(steps * config.batch_size *
                                   config.num_models / train_seconds))
    if config.skip_nonfinite:
      row['skipped_steps'] = skipped
    test = ''.join(f'{split} loss {row[f"{split}_loss"]:.4f} acc '
                   f'{100 * row[f"{split}_accuracy"]:.2f}%  '
                   for split in ('val', 'test') if f'{split}_loss' in row)
    test = test.strip() or 'not evaluated'
    logging.info(
        'epoch %d/%d  train loss %.4f acc %.2f%%  %s  %.1fs  %.0f img/s',
        epoch, config.epochs, row['train_loss'], 100 * row['train_accuracy'],
        test, row['seconds'], row['train_images_per_s'])
    return state, row, result
