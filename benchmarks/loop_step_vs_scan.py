"""Per-step dispatch vs lax.scan, for each conv implementation.

    python benchmarks/loop_step_vs_scan.py [--steps=40] [--batch_size=16]
                                           [--conv_impls=lax,im2col] [--json]

Times the project's two training loops (steps.make_train_step, one jitted call
per step; steps.make_train_scan, `steps` steps in one lax.scan) on the seed
model with each --conv_impl, side by side in one process, and lists the
dimension labels of every convolution in each optimized HLO module. XLA:CPU
runs a convolution through Eigen's fast kernel only in the canonical form
b01f x 01io -> b01f (NHWC, HWIO); inside a while body the backward convs keep
other forms and fall back to a generic loop emitter. im2col has no
convolutions left, only GEMMs, so the loop body compiles as well as the step.
--json ends the output with one line of JSON holding the same figures.
"""

import argparse
import collections
import json
import re
import time

import jax
import numpy as np

from mnist_flax import distributed
from mnist_flax import models
from mnist_flax import state as state_lib
from mnist_flax import steps
from mnist_flax.config import Config


def conv_forms(compiled) -> collections.Counter:
  return collections.Counter(
      re.findall(r'convolution\(.*?dim_labels=(\S+?),', compiled.as_text()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=40)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--conv_impls', default='lax,im2col')
  parser.add_argument('--json', action='store_true',
                      help='End with one line of JSON holding the figures.')
  args = parser.parse_args()
  rates, forms = {}, {}
  for conv_impl in args.conv_impls.split(','):
    forms[conv_impl] = {}
    for loop, rate in measure(args.batch_size, args.steps, conv_impl,
                              forms[conv_impl]).items():
      rates[conv_impl, loop] = rate
  print(f'({jax.default_backend()}, {args.steps} steps of {args.batch_size})')
  for (conv_impl, loop), rate in rates.items():
    print(f'{conv_impl:>7} {loop}: {rate:7.1f} img/s')
  for conv_impl in args.conv_impls.split(','):
    print(f'{conv_impl}: step/scan speed ratio '
          f'{rates[conv_impl, "step"] / rates[conv_impl, "scan"]:.2f}')
  if args.json:
    impls = args.conv_impls.split(',')
    print(json.dumps({
        'backend': jax.default_backend(),
        'device_kind': jax.devices()[0].device_kind,
        'steps': args.steps, 'batch_size': args.batch_size,
        'images_per_s': {c: {loop: round(rates[c, loop], 1)
                             for loop in ('step', 'scan')} for c in impls},
        'step_over_scan': {c: round(rates[c, 'step'] / rates[c, 'scan'], 3)
                           for c in impls},
        'resolved_conv_impl': {c: models.resolve_conv_impl(c) for c in impls},
        'conv_forms': forms}))


def measure(b: int, k: int, conv_impl: str,
            forms: dict | None = None) -> dict[str, float]:
  """img/s of the step loop and the scan loop; `forms`, if given, gets each
  loop's convolution forms (dim_labels -> count) in the optimized HLO."""
  config = Config(batch_size=b, conv_impl=conv_impl)
  mesh = distributed.make_mesh()
  rng = np.random.default_rng(0)
  n = b * 3 * k
  images = distributed.put_replicated(
      rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), mesh)
  labels = distributed.put_replicated(rng.integers(0, 10, n).astype(np.int32),
                                      mesh)
  order = distributed.put_replicated(np.arange(n, dtype=np.int32), mesh)
  state = jax.device_put(
      state_lib.create_train_state(config, models.create_model(config, 10),
                               jax.random.PRNGKey(0), (28, 28, 1)),
      distributed.replicated(mesh))
  step = steps.make_train_step(mesh, config)
  scan = steps.make_train_scan(mesh, config, k)
  for name, fn in (('step', step), ('scan', scan)):
    found = conv_forms(fn.lower(state, images, labels, order, 0).compile())
    print(f'{conv_impl} {name}: convolution forms in the optimized HLO: '
          f'{dict(found)}')
    if forms is not None:
      forms[name] = dict(found)

  def run_step(state, first):
    for i in range(k):
      state, m = step(state, images, labels, order, first + i)
    return state, m

  def run_scan(state, first):
    return scan(state, images, labels, order, first)

  rates = {}
  for name, run in (('step', run_step), ('scan', run_scan)):
    state, m = run(state, 0)  # Compile and warm up.
    jax.block_until_ready(m)
    start = time.perf_counter()
    state, m = run(state, k)
    jax.block_until_ready(m)
    rates[name] = k * b / (time.perf_counter() - start)
  return rates


if __name__ == '__main__':
  main()
