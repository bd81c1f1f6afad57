"""Does training K models in one vmapped program beat K sequential runs?

    python benchmarks/multi_model_vmap.py [--num_models=4] [--steps=40]
                                          [--repeats=2]

The question behind #3's --num_models. Both sides use the project's real
train.train_step on the seed model (batch 16, each model with its own init and
its own shuffle of the same device-resident data): K models one after another,
one jitted step each, versus one jitted jax.vmap of the step over the K states.
Prints images/s of each and the ratio, per repeat, side by side in one process.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from mnist_flax import models
from mnist_flax import train
from mnist_flax.config import Config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num_models', type=int, default=4)
  parser.add_argument('--steps', type=int, default=40)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--batch_size', type=int, default=16)
  args = parser.parse_args()
  k, steps, b = args.num_models, args.steps, args.batch_size
  config = Config(batch_size=b)
  model = models.create_model(config, 10)
  rng = np.random.default_rng(0)
  n = b * (steps + 3)
  images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  orders = jnp.stack([jnp.asarray(rng.permutation(n).astype(np.int32))
                      for _ in range(k)])
  keys = jax.random.split(jax.random.PRNGKey(0), k)

  def init(key):
    return train.create_train_state(config, model, key, (28, 28, 1))

  def step(state, order, index):
    idx = jax.lax.dynamic_slice_in_dim(order, index * b, b)
    return train.train_step(state, images[idx], labels[idx], False, 'none',
                            0.0)

  single = jax.jit(step, donate_argnums=0)
  multi = jax.jit(jax.vmap(step, in_axes=(0, 0, None)), donate_argnums=0)

  def timed(fn, state, order):
    for i in range(3):  # Compile and warm up.
      state, _ = fn(state, order, i)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(steps):
      state, _ = fn(state, order, 3 + i)
    jax.block_until_ready(state)
    return time.perf_counter() - start

  print(f'{jax.default_backend()}: {k} seed models, {steps} steps of {b}')
  for r in range(args.repeats):
    sequential = sum(timed(single, init(keys[i]), orders[i]) for i in range(k))
    vmapped = timed(multi, jax.jit(jax.vmap(init))(keys), orders)
    print(f'repeat {r + 1}: sequential {k * steps * b / sequential:.0f} img/s, '
          f'vmapped {k * steps * b / vmapped:.0f} img/s, '
          f'vmapped/sequential speed {sequential / vmapped:.2f}')


if __name__ == '__main__':
  main()
