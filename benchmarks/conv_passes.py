"""One 3x3 conv's training passes, per implementation, against its GEMMs.

    python benchmarks/conv_passes.py [--batch_size=32] [--size=28]
                                     [--channels=128] [--repeats=3] [--json]

Where a wide network's training time goes on this host: the forward and
backward passes (gradients of the input and the kernel) of one SAME 3x3 conv
with `--channels` in and out on a `--size`x`--size` map, followed by a ReLU,
for each way the project computes it (layers.conv3x3: lax and im2col in
float32, im2col in bfloat16 with the step's compiler options), beside what
bounds it: the forward GEMM of the im2col product alone in each dtype (the
three passes are three GEMMs of that size) and the gather of the patches
alone. The defaults are the shape of the 28x28 convs of Matuzas77's network
(models.SEBlocksCNN, `--preset=literature`) at its batch of 32. Each figure
is the best of `--repeats` timings of 8 calls, side by side in one process
with freed memory kept (hostmem), as main.py --keep_freed_memory runs.
--json ends the output with one line of JSON holding the same figures.
"""

import argparse
import json
import time

from mnist_flax import hostmem

hostmem.keep_freed_memory()  # Before JAX starts its threads.

import flax.linen as nn  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from mnist_flax import layers  # pylint: disable=wrong-import-position
from mnist_flax import steps  # pylint: disable=wrong-import-position


def best_seconds(fn, args, repeats: int, calls: int = 8) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / calls)
  return min(times)


class OneConv(nn.Module):
  """layers.conv3x3 (SAME, ReLU inside), as the networks build it."""
  conv_impl: str
  features: int
  dtype: object

  @nn.compact
  def __call__(self, x):
    return layers.conv3x3(self.conv_impl, self.features, padding='SAME',
                          dtype=self.dtype, name='conv',
                          activation=jax.nn.relu)(x)


def conv_training_passes(conv_impl: str, dtype, x):
  """jit(grad) of sum(relu(conv(x))^2) w.r.t. the input and the kernel."""
  module = OneConv(conv_impl=conv_impl, features=x.shape[-1], dtype=dtype)
  params = module.init(jax.random.key(1), x)

  def loss(x, params):
    return jnp.sum(module.apply(params, x).astype(jnp.float32) ** 2)

  options = dict(steps.compiler_options(jnp.dtype(dtype).name)) or None
  return jax.jit(jax.grad(loss, (0, 1)), compiler_options=options), params


def patches(x):
  return layers.window_patches(x, ((1, 1), (1, 1)), 3, 3)


def bf16_dot(x, w):
  """The im2col GEMM's bfloat16 form: bf16 operands, float32 sums."""
  return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--size', type=int, default=28)
  parser.add_argument('--channels', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  for name in ('batch_size', 'size', 'channels', 'repeats'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1')

  b, s, c = args.batch_size, args.size, args.channels
  gemm_flops = 2 * b * s * s * 9 * c * c  # One pass: [B*S*S, 9C] @ [9C, C].
  x32 = jax.random.normal(jax.random.key(0), (b, s, s, c), jnp.float32)
  rows = []

  def record(what, seconds, flops):
    rows.append(dict(what=what, ms=1e3 * seconds,
                     gflops=flops / seconds / 1e9))
    print(f'{what:<44} {1e3 * seconds:8.1f} ms {flops / seconds / 1e9:7.0f}'
          ' GFLOP/s', flush=True)

  print(f'one 3x3 conv, batch {b}, {s}x{s}, {c} -> {c} channels; '
        f'{jax.devices()[0].device_kind}')
  for conv_impl, dtype in (('lax', jnp.float32), ('im2col', jnp.float32),
                           ('im2col', jnp.bfloat16)):
    fn, params = conv_training_passes(conv_impl, dtype, x32.astype(dtype))
    record(f'{conv_impl} {jnp.dtype(dtype).name}: forward + both gradients',
           best_seconds(fn, (x32.astype(dtype), params), args.repeats),
           3 * gemm_flops)
  for dtype in (jnp.float32, jnp.bfloat16):
    p = patches(x32).reshape(-1, 9 * c).astype(dtype)
    k = jnp.ones((9 * c, c), dtype)
    product = bf16_dot if dtype == jnp.bfloat16 else jnp.matmul
    fn = jax.jit(product, compiler_options=dict(
        steps.compiler_options(jnp.dtype(dtype).name)) or None)
    record(f'forward GEMM alone, {jnp.dtype(dtype).name}',
           best_seconds(fn, (p, k), args.repeats), gemm_flops)
  gathers = (('float32', jnp.float32, patches),
             ('bfloat16', jnp.bfloat16, patches),
             ('bfloat16 as uint16 (the conv\'s)', jnp.bfloat16,
              lambda x: layers.moved_as_bits(patches, x)))
  for name, dtype, gather in gathers:
    x = x32.astype(dtype)
    seconds = best_seconds(jax.jit(gather), (x,), args.repeats)
    gbytes = 9 * x.nbytes / 1e9
    rows.append(dict(what=f'patch gather, {name}', ms=1e3 * seconds,
                     gbytes_per_s=gbytes / seconds))
    print(f'{"patch gather, " + name:<44} {1e3 * seconds:8.1f} ms '
          f'{gbytes / seconds:7.1f} GB/s written')
  if args.json:
    print(json.dumps(dict(batch_size=b, size=s, channels=c, rows=rows)))


if __name__ == '__main__':
  main()
