"""Per-epoch orbax checkpoints: the latest few and the best are kept.

A checkpoint holds the TrainState and the metrics history up to its epoch, so a
resumed run rewrites metrics.jsonl from it and ends exactly where an
uninterrupted run would. orbax writes each checkpoint to a temporary folder and
renames it when complete, so a process killed mid-save leaves nothing that
`restore_latest` would pick up.
"""

import hashlib
import logging as std_logging
import os
import time
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from mnist_flax import distributed
from mnist_flax.errors import CheckpointError

# What `best` is chosen by: validation accuracy where the run holds out a
# validation split, else test accuracy (then `best` is a test-set selection,
# and results.json says so).
VALIDATION_METRIC = 'val_accuracy'
TEST_METRIC = 'test_accuracy'


# orbax warns at every save without metrics once `best` is tracked (an epoch
# without an evaluation, --eval_every > 1, is expected, not a problem), and
# whenever a reader opens checkpoints read-only, as it asked to.
_EXPECTED_NOTICES = ('did not provide metrics', 'read_only=True',
                     'Given directory is read only')


def _not_an_expected_notice(record: std_logging.LogRecord) -> bool:
  return not any(n in record.getMessage() for n in _EXPECTED_NOTICES)


std_logging.getLogger('absl').addFilter(_not_an_expected_notice)


def fingerprint(tree: Any) -> str:
  """SHA-256 over every leaf's bytes: detects a checkpoint that restores
  without an error but with altered values."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    leaf = np.asarray(leaf)
    if leaf.dtype.kind in 'iu':  # The step may restore as int64 from int32.
      leaf = leaf.astype(np.int64)
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


class Checkpointer:
  """Saves and restores (epoch, TrainState, history) under workdir/checkpoints."""

  def __init__(self, workdir: str, keep: int = 3,
               best_metric: str = TEST_METRIC, read_only: bool = False):
    """read_only: for readers of a run (predict, export, --init_from), which
    create, clean up and move nothing in it."""
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.best_metric = best_metric
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(keep),
        checkpoint_managers.BestN(
            get_metric_fn=lambda m: m[best_metric], n=1,
            keep_checkpoints_without_metrics=False),
    ])
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only,
            read_only=read_only,
            # What best_step() ranks by (without it, it returns the latest).
            best_fn=lambda m: m[best_metric], best_mode='max',
            cleanup_tmp_directories=not read_only))

  def save(self, epoch: int, state: Any, history: list[dict]) -> None:
    self._manager.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            history=ocp.args.JsonSave(history),
            meta=ocp.args.JsonSave({'fingerprint': fingerprint(state)})),
        # Epochs without a test evaluation are kept only while among the
        # latest; the best is chosen among evaluated ones.
        metrics=({self.best_metric: history[-1][self.best_metric]}
                 if self.best_metric in history[-1] else None))

  def epochs(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def best_epoch(self) -> int | None:
    return self._manager.best_step()

  def restore(self, epoch: int, target: Any) -> tuple[Any, list[dict]]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    items = dict(state=ocp.args.StandardRestore(abstract),
                 history=ocp.args.JsonRestore())
    # Checkpoints from before fingerprints were added have no 'meta' item.
    has_meta = os.path.isdir(os.path.join(self.directory, str(epoch), 'meta'))
    if has_meta:
      items['meta'] = ocp.args.JsonRestore()
    restored = self._manager.restore(epoch, args=ocp.args.Composite(**items))
    if has_meta and fingerprint(restored.state) != restored.meta['fingerprint']:
      raise CheckpointError(f'{self.directory}/{epoch}: contents do not match '
                            'the fingerprint saved with them')
    return restored.state, list(restored.history)

  def restore_latest(self, target: Any) -> tuple[int, Any, list[dict]] | None:
    """Newest checkpoint that restores cleanly; older ones are fallbacks.

    Returns None when there is no checkpoint at all. Raises CheckpointError
    when checkpoints exist but none can be read, rather than train from garbage.
    """
    epochs = self.epochs()
    bad = []
    for epoch in reversed(epochs):
      try:
        state, history = self.restore(epoch, target)
        if len(history) != epoch:
          raise CheckpointError(f'{len(history)} history rows')
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint of epoch %d is unreadable (%s: %s); '
                        'trying an older one', epoch, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else '')
        bad.append(epoch)
        continue
      self._set_aside(bad)
      return epoch, state, history
    if epochs:
      raise CheckpointError(
          f'{self.directory}: none of the checkpoints {epochs} can be '
          'restored; move that folder aside to train the run afresh')
    return None

  def _set_aside(self, epochs: list[int]) -> None:
    """Moves unreadable checkpoints out of orbax's way, keeping them for a
    post-mortem, so that their epochs can be saved again."""
    if not epochs:
      return
    if distributed.is_primary():  # One process moves them, for all.
      aside = os.path.join(os.path.dirname(self.directory),
                           'corrupt_checkpoints')
      os.makedirs(aside, exist_ok=True)
      for epoch in epochs:
        dest = os.path.join(aside,
                            f'{epoch}-{time.strftime("%Y%m%d-%H%M%S")}')
        os.rename(os.path.join(self.directory, str(epoch)), dest)
        logging.warning('moved the unreadable checkpoint of epoch %d to %s',
                        epoch, dest)
    distributed.barrier('checkpoints_set_aside')
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
