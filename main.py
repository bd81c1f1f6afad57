"""Trains and evaluates one run: `python main.py --workdir=runs/base`.

Every field of mnist_flax.config.Config is a flag of the same name; see
`python main.py --helpfull` or README.md.
"""

import os
import sys

from mnist_flax import console

console.quiet_defaults()  # Before TensorFlow or jaxlib are imported.

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from mnist_flax import distributed  # pylint: disable=g-import-not-at-top
from mnist_flax import flagging  # pylint: disable=g-import-not-at-top
from mnist_flax import hostmem  # pylint: disable=g-import-not-at-top
from mnist_flax import train  # pylint: disable=g-import-not-at-top
from mnist_flax.errors import UserError  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory: checkpoints, metrics, results and plots '
    '(created with its parent folders).', required=True)
_RESTART = flags.DEFINE_bool(
    'restart', False, 'If --workdir holds a run of another config, move it '
    'aside and start over instead of refusing.')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show every library\'s INFO lines in absl\'s format '
    '(as --verbosity=1 does); by default the terminal shows this project\'s '
    'lines and warnings.')
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
    'e.g. --preset=best, or --num_models) are reused instead of '
    'page-faulted in at every step. Opt-in: it helps big batches and slows '
    'small ones (benchmarks/host_malloc.py measures both).')
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', os.path.join('~', '.cache', 'mnist_flax', 'xla'),
    'Folder for JAX\'s persistent compilation cache: a later run of the same '
    'shapes loads its compiled programs instead of compiling them again. '
    'Empty: off.')
flagging.define_config_flags()


def use_compilation_cache(folder: str) -> None:
  """Every compiled program goes to the cache, however fast it compiled."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', os.path.expanduser(folder))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def main(argv):
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])} (flags are '
          '--name=value; `python main.py --helpfull` lists them)',
          file=sys.stderr)
    sys.exit(2)
  console.configure(verbose=_VERBOSE.value or flags.FLAGS.verbosity >= 1)
  if _KEEP_FREED_MEMORY.value:
    hostmem.keep_freed_memory()  # Before JAX starts its threads.
  if _COMPILATION_CACHE.value:
    use_compilation_cache(_COMPILATION_CACHE.value)
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value, auto=_MULTIHOST.value)
    train.train_and_evaluate(flagging.config_from_flags(), _WORKDIR.value,
                             restart=_RESTART.value)
  except UserError as e:
    logging.flush()
    print(f'error: {e}', file=sys.stderr)
    _exit(e.exit_code)
  _exit(0)


def _exit(code: int) -> None:
  """Every file is written and closed (checkpoints waited for): a single
  process skips the interpreter's teardown of XLA and the libraries (about
  half a second, and where orbax's threads could print after the error
  line)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    sys.exit(code)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


if __name__ == '__main__':
  app.run(main, flags_parser=flagging.parse_flags_or_exit)
