"""Transfer learning: start from another run's checkpoint, freeze what is asked.

--init_from=WORKDIR copies every layer whose shapes match from that run's latest
checkpoint (the params and BatchNorm statistics it was evaluated with: their
moving average if it trained with --ema_decay) and keeps the fresh initialisation
for the rest, which is the head when the class count differs. --finetune says
what trains afterwards:

  full       everything; the trunk at learning_rate * --trunk_lr_scale
  head+last  the head and the last trunk block (Dense-64 and its BatchNorm)
  linear     the head only (a linear probe)

The grouping into head, trunk and frozen layers is the optimizer's, in
state.py.
"""

import os

from absl import logging
import jax

from mnist_flax import workdir as workdir_lib
from mnist_flax.errors import CheckpointError


def _same_shapes(a, b) -> bool:
  return (jax.tree.structure(a) == jax.tree.structure(b) and
          all(x.shape == y.shape
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def init_from(state, workdir: str, out_dir: str | None = None,
              skip: tuple[str, ...] = ()):
  """Returns `state` with the matching layers of run `workdir` loaded.

  Layers named in `skip` (the head, with --reinit_head) keep their fresh
  initialisation whatever their shapes.

  Writes what was loaded and what was re-initialised to out_dir/init_from.json.
  """
  if not os.path.exists(os.path.join(workdir, workdir_lib.CONFIG)):
    raise CheckpointError(f'--init_from={workdir}: no {workdir_lib.CONFIG}; '
                          'is it a run directory?')
  source = workdir_lib.load_run(workdir)
  # The weights the source run was evaluated with (its average, with EMA).
  src = source.state.inference_variables()
  src_params, src_stats = src['params'], src['batch_stats']
  epoch = source.epoch
  params, stats = dict(state.params), dict(state.batch_stats)
  loaded, fresh = [], []
  for name in params:
    if (name not in skip and name in src_params and
        _same_shapes(params[name], src_params[name])):
      params[name] = jax.tree.map(lambda new, old: old.astype(new.dtype),
                                  params[name], src_params[name])
      if name in stats and name in src_stats:
        stats[name] = src_stats[name]
      loaded.append(name)
    else:
      fresh.append(name)
  logging.info('--init_from=%s (epoch %d): loaded %s; re-initialised %s',
               workdir, epoch, ', '.join(loaded), ', '.join(fresh) or 'none')
  if out_dir:
    workdir_lib.write_json(
        os.path.join(out_dir, workdir_lib.INIT_FROM),
        {'source': os.path.abspath(workdir), 'source_epoch': epoch,
         'loaded': loaded, 'reinitialized': fresh})
  sharding = jax.tree.leaves(state.params)[0].sharding
  state = state.replace(params=jax.device_put(params, sharding),
                        batch_stats=jax.device_put(stats, sharding))
  if getattr(state, 'ema', None) is not None:  # --ema_decay: average from here.
    state = state.replace(ema={'params': state.params,
                               'batch_stats': state.batch_stats})
  return state
