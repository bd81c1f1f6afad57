"""Per-epoch orbax checkpoints: the latest few and the best are kept.

A checkpoint holds the TrainState and the metrics history up to its epoch, so a
resumed run rewrites metrics.jsonl from it and ends exactly where an
uninterrupted run would. orbax writes each checkpoint to a temporary folder and
renames it when complete, so a process killed mid-save leaves nothing that
`restore_latest` would pick up.
"""

import os
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from mnist_flax.errors import CheckpointError

BEST_METRIC = 'test_accuracy'


class Checkpointer:
  """Saves and restores (epoch, TrainState, history) under workdir/checkpoints."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(keep),
        checkpoint_managers.BestN(
            get_metric_fn=lambda m: m[BEST_METRIC], n=1,
            keep_checkpoints_without_metrics=False),
    ])
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=True,
            cleanup_tmp_directories=True))

  def save(self, epoch: int, state: Any, history: list[dict]) -> None:
    self._manager.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            history=ocp.args.JsonSave(history)),
        metrics={BEST_METRIC: history[-1][BEST_METRIC]})

  def epochs(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def best_epoch(self) -> int | None:
    return self._manager.best_step()

  def restore(self, epoch: int, target: Any) -> tuple[Any, list[dict]]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            history=ocp.args.JsonRestore()))
    return restored.state, list(restored.history)

  def restore_latest(self, target: Any) -> tuple[int, Any, list[dict]] | None:
    """Newest checkpoint that restores cleanly; older ones are fallbacks.

    Returns None when there is no checkpoint at all. Raises CheckpointError
    when checkpoints exist but none can be read, rather than train from garbage.
    """
    epochs = self.epochs()
    for epoch in reversed(epochs):
      try:
        state, history = self.restore(epoch, target)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint of epoch %d is unreadable (%s: %s); '
                        'trying an older one', epoch, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else '')
        continue
      if len(history) != epoch:
        logging.warning('checkpoint of epoch %d holds %d history rows; '
                        'trying an older one', epoch, len(history))
        continue
      return epoch, state, history
    if epochs:
      raise CheckpointError(
          f'{self.directory}: none of the checkpoints {epochs} can be '
          'restored; remove them or pass --restart')
    return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
