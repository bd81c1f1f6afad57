"""Data parallelism with JAX's own runtime: one Mesh, jit and NamedSharding.

The training program is written for the global batch. Inputs are sharded on the
batch axis, params and optimizer state are replicated, and XLA inserts the
collectives: gradients are averaged across devices, and BatchNorm's batch mean
and variance are computed over the global batch (a cross-device mean), because
that is what the global-view program says. The same code runs on one CPU, all
devices of a host, or many hosts after `jax.distributed.initialize()`.
"""

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mnist_flax.errors import ConfigError

DATA_AXIS = 'data'


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1, auto: bool = False) -> None:
  """Starts jax.distributed for a multi-process run; a no-op otherwise.

  Either pass all three of coordinator/num_processes/process_id (e.g. several
  processes on one machine), or auto=True on a cluster that jax detects itself
  (TPU pods, SLURM, Open MPI, Kubernetes GKE).
  """
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ConfigError('--coordinator_address needs --num_processes >= 1 '
                        'and 0 <= --process_id < --num_processes')
    # CPU processes talk through gloo; GPUs and TPUs use their own collectives.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif auto:
    jax.distributed.initialize()
  else:
    return
  logging.info('jax.distributed: process %d of %d, %d local and %d global '
               'devices', jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_divisible(name: str, batch_size: int, mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f'--{name}={batch_size} does not divide evenly over '
                      f'{n} devices; use a multiple of {n}')


def put_replicated(array: np.ndarray, mesh) -> jax.Array:
  """A host array (identical on every process) as a replicated global array."""
  sharding = replicated(mesh)
  return jax.make_array_from_callback(array.shape, sharding,
                                      lambda index: array[index])


def is_primary() -> bool:
  """Only process 0 writes logs, metrics and plots."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
