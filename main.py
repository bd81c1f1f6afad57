"""Trains and evaluates one run: `python main.py --workdir=runs/base`.

Every field of mnist_flax.config.Config is a flag of the same name; see
`python main.py --helpfull` or README.md.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from mnist_flax import distributed
from mnist_flax import flagging
from mnist_flax import hostmem
from mnist_flax import train
from mnist_flax.errors import UserError

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, '
                               'metrics, results and plots.', required=True)
_RESTART = flags.DEFINE_bool(
    'restart', False, 'If --workdir holds a run of another config, move it '
    'aside and start over instead of refusing.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', 'host:port of process 0, for a multi-process '
    'run started by hand (with --num_processes and --process_id).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0,
                                      'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, 'This process\'s index.')
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Call jax.distributed.initialize() with what the '
    'cluster provides (TPU pod slices, SLURM, Open MPI).')
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    'keep_freed_memory', False, 'Linux: have glibc malloc keep freed memory '
    'in one heap, so that XLA:CPU temporaries above 32 MiB (big batches, '
    'e.g. --preset=best) are reused instead of page-faulted in at every '
    'step. Measured 1.4-1.6x faster there (and for --num_models=4), 0.92x '
    'on the seed step at batch 16 (benchmarks/host_malloc.py, BENCHMARKS.md).')
flagging.define_config_flags()


def _quiet_library_info(record) -> bool:
  """Keeps orbax's per-save INFO lines out of the progress output."""
  return record.levelno > logging.converter.STANDARD_INFO or (
      '/orbax/' not in record.pathname)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_quiet_library_info)
  if _KEEP_FREED_MEMORY.value:
    hostmem.keep_freed_memory()  # Before JAX starts its threads.
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value, auto=_MULTIHOST.value)
    train.train_and_evaluate(flagging.config_from_flags(), _WORKDIR.value,
                             restart=_RESTART.value)
  except UserError as e:
    logging.flush()
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  app.run(main)
