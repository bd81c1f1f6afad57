"""Does training K models in one vmapped program beat K sequential runs?

    python benchmarks/multi_model_vmap.py [--num_models=4] [--steps=40]
                                          [--repeats=2] [--keep_freed_memory]
                                          [--json]

The measurement behind --num_models. Both sides use the project's real
code path (state.init_state and steps.make_train_step on device-resident data,
the seed model at batch 16, each model with its own init and its own shuffle):
K models one after another, one jitted step each, versus one jitted step of
--num_models=K, which vmaps the step over the K stacked states. Prints images/s
of each and the ratio, per repeat, side by side in one process.
--keep_freed_memory applies hostmem.keep_freed_memory() to the whole process
first (main.py's flag of the same name): K stacked models have K times the
step's temporaries, which can cross glibc's mmap threshold (host_malloc.py).
--json ends the output with one line of JSON holding the same figures.
"""

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from mnist_flax import distributed
from mnist_flax import hostmem
from mnist_flax import models
from mnist_flax import state as state_lib
from mnist_flax import steps as steps_lib
from mnist_flax.config import Config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num_models', type=int, default=4)
  parser.add_argument('--steps', type=int, default=40)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--keep_freed_memory', action='store_true')
  parser.add_argument('--json', action='store_true',
                      help='End with one line of JSON holding the figures.')
  args = parser.parse_args()
  if args.keep_freed_memory and not hostmem.keep_freed_memory():
    raise SystemExit('--keep_freed_memory: not available here (glibc only)')
  k, steps, b = args.num_models, args.steps, args.batch_size
  single_config = Config(batch_size=b)
  multi_config = Config(batch_size=b, num_models=k)
  model = models.create_model(single_config, 10)
  mesh = distributed.make_mesh()
  rng = np.random.default_rng(0)
  n = b * (steps + 3)
  images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  orders = jnp.stack([jnp.asarray(rng.permutation(n).astype(np.int32))
                      for _ in range(k)])
  single = steps_lib.make_train_step(mesh, single_config)
  multi = steps_lib.make_train_step(mesh, multi_config)

  def timed(fn, state, order):
    for i in range(3):  # Compile and warm up.
      state, _ = fn(state, images, labels, order, i)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(steps):
      state, _ = fn(state, images, labels, order, 3 + i)
    jax.block_until_ready(state)
    return time.perf_counter() - start

  print(f'{jax.default_backend()}: {k} seed models, {steps} steps of {b}'
        f'{", freed memory kept" if args.keep_freed_memory else ""}')
  repeats = []
  for r in range(args.repeats):
    sequential = sum(
        timed(single, state_lib.init_state(dataclasses.replace(
            single_config, seed=i), model, (28, 28, 1)), orders[i])
        for i in range(k))
    vmapped = timed(multi, state_lib.init_state(multi_config, model, (28, 28, 1)),
                    orders)
    print(f'repeat {r + 1}: sequential {k * steps * b / sequential:.0f} img/s, '
          f'vmapped {k * steps * b / vmapped:.0f} img/s, '
          f'vmapped/sequential speed {sequential / vmapped:.2f}')
    repeats.append({
        'sequential_images_per_s': round(k * steps * b / sequential, 1),
        'vmapped_images_per_s': round(k * steps * b / vmapped, 1),
        'vmapped_over_sequential': round(sequential / vmapped, 3)})
  if args.json:
    print(json.dumps({
        'backend': jax.default_backend(),
        'device_kind': jax.devices()[0].device_kind,
        'num_models': k, 'steps': steps, 'batch_size': b,
        'keep_freed_memory': args.keep_freed_memory, 'repeats': repeats}))


if __name__ == '__main__':
  main()
