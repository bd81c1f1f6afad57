"""Training throughput of the seed model: this project vs Keras vs PyTorch.

    python benchmarks/throughput.py [--steps=200] [--repeats=3] [--batch_size=16]
                                    [--frameworks=jax,keras,torch]
                                    [--dtype=float32|bfloat16|both] [--json]

Each measurement runs in a fresh subprocess (so no framework's thread pool or
allocator disturbs another's), on the same random uint8 batch data, after a
warm-up that includes compilation. Frameworks alternate within each repeat and
the median over repeats is reported, with the ratio of this project to each
peer and the share of a GEMM peak measured in the same invocation. The JAX
figure goes through the project's real training step
(mnist_flax.steps.make_train_step on device-resident data), not a copy.
PyTorch is optional (`pip install -e '.[bench]'`); missing peers are skipped
(and named under "skipped" with --json). PyTorch runs eager on CUDA when
torch.cuda.is_available() (model and data on the GPU, autocast('cuda') for
bfloat16), else on the CPU. The GEMM peak is measured on JAX's default device:
on CPU the best of numpy's BLAS and XLA's dot at 2048^3, on an accelerator
XLA's dot at 8192^3 on device-resident data (at JAX's default matmul
precision, which may use TF32 there).

--dtype=both measures every framework in float32 and in its bfloat16 mode
(this project's --dtype=bfloat16, Keras's mixed_bfloat16, PyTorch's autocast)
and compares each framework's fastest: images_per_s and jax_vs are of the
best configuration, named in best_dtype; by_config has them all. The output
starts with the CPU's model, core count and the vector and matrix features
that decide which configuration wins (AVX-512, AVX512_BF16, AMX).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np


def measure_train_step(config, steps: int, warmup: int = 20) -> dict:
  """The project's real training step (steps.make_train_step) on random data.

  Returns img/s after `warmup` steps (compilation included there), XLA's
  FLOP count per image and the host's page faults per step.
  """
  import resource  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from mnist_flax import distributed, models, state as state_lib, steps as steps_lib  # pylint: disable=g-import-not-at-top
  batch = config.batch_size
  mesh = distributed.make_mesh()
  state = state_lib.create_train_state(config, models.create_model(config, 10),
                                   jax.random.PRNGKey(0), (28, 28, 1))
  state = jax.device_put(state, distributed.replicated(mesh))
  rng = np.random.default_rng(0)
  n = batch * (steps + warmup)
  images = distributed.put_replicated(
      rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), mesh)
  labels = distributed.put_replicated(
      rng.integers(0, 10, n).astype(np.int32), mesh)
  order = distributed.put_replicated(np.arange(n, dtype=np.int32), mesh)
  step = steps_lib.make_train_step(mesh, config)
  flops = step.lower(state, images, labels, order, 0).compile().cost_analysis()
  flops = flops.get('flops', 0.0) if isinstance(flops, dict) else 0.0
  for i in range(warmup):
    state, m = step(state, images, labels, order, i)
  jax.block_until_ready(m)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  start = time.perf_counter()
  for i in range(steps):
    state, m = step(state, images, labels, order, warmup + i)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
  return {'images_per_s': steps * batch / seconds,
          'flops_per_image': flops / batch, 'faults_per_step': faults / steps}


def bench_jax(steps: int, batch: int, dtype: str):
  import jax  # pylint: disable=g-import-not-at-top
  from mnist_flax.config import Config  # pylint: disable=g-import-not-at-top
  out = measure_train_step(Config(batch_size=batch, dtype=dtype), steps)
  return out['images_per_s'], out['flops_per_image'], _jax_device(jax)


def _jax_device(jax) -> str:
  return f'{jax.default_backend()}: {jax.devices()[0].device_kind}'


def keras_seed_model(dtype: str = 'float32'):
  """The seed model and recipe in Keras 3: the peer the study was written in."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import keras  # pylint: disable=g-import-not-at-top
  from keras import layers  # pylint: disable=g-import-not-at-top
  if dtype == 'bfloat16':
    keras.mixed_precision.set_global_policy('mixed_bfloat16')
  model = keras.Sequential([
      keras.Input((28, 28, 1)),
      layers.Rescaling(1 / 255),
      layers.Conv2D(32, 3, activation='relu'), layers.MaxPooling2D(2),
      layers.Conv2D(64, 3, activation='relu'),
      layers.Conv2D(128, 3, activation='relu'),
      layers.Conv2D(256, 3, activation='relu'),
      layers.Conv2D(512, 3, activation='relu'),
      layers.Flatten(), layers.Dense(64, activation='relu'),
      layers.BatchNormalization(), layers.Dropout(0.2),
      layers.Dense(10, activation='softmax', dtype='float32'),
  ])
  model.compile(optimizer=keras.optimizers.SGD(0.05),
                loss='sparse_categorical_crossentropy', metrics=['accuracy'])
  return model


def bench_keras(steps: int, batch: int, dtype: str):
  model = keras_seed_model(dtype)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (batch * steps, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, batch * steps)
  model.fit(x[:batch * 20], y[:batch * 20], batch_size=batch, epochs=1,
            verbose=0)
  start = time.perf_counter()
  model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
  return steps * batch / (time.perf_counter() - start), 0.0, 'keras'


def bench_torch(steps: int, batch: int, dtype: str):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = nn.Sequential(
      nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 128, 3), nn.ReLU(),
      nn.Conv2d(128, 256, 3), nn.ReLU(), nn.Conv2d(256, 512, 3), nn.ReLU(),
      nn.Flatten(), nn.Linear(12800, 64), nn.ReLU(),
      nn.BatchNorm1d(64, momentum=0.01, eps=1e-3), nn.Dropout(0.2),
      nn.Linear(64, 10))
  cuda = torch.cuda.is_available()
  device = 'cuda' if cuda else 'cpu'
  model = model.to(device)
  opt = torch.optim.SGD(model.parameters(), lr=0.05)
  loss_fn = nn.CrossEntropyLoss()
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.integers(0, 256, (batch * (steps + 20), 1, 28, 28),
                                    dtype=np.uint8))
  y = torch.from_numpy(rng.integers(0, 10, batch * (steps + 20)))
  if cuda:  # Device-resident data, as the JAX side has.
    x, y = x.to(device), y.to(device)
  autocast = dtype == 'bfloat16'

  def sync():
    if cuda:
      torch.cuda.synchronize()

  def step(i):
    xb = x[i * batch:(i + 1) * batch].float() / 255
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
      loss = loss_fn(model(xb), y[i * batch:(i + 1) * batch])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  for i in range(20):
    step(i)
  sync()
  start = time.perf_counter()
  for i in range(steps):
    step(20 + i)
  sync()
  name = f'cuda: {torch.cuda.get_device_name()}' if cuda else 'cpu'
  return steps * batch / (time.perf_counter() - start), 0.0, name


def bench_gemm(_steps: int, _batch: int, _dtype: str):
  """fp32 GEMM GFLOP/s on JAX's default device: on CPU the best of numpy's
  BLAS and XLA's dot at 2048^3; elsewhere XLA's dot at 8192^3 on
  device-resident data (host BLAS is no peak of the accelerator's)."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = jax.default_backend() == 'cpu'
  n = 2048 if cpu else 8192
  a = np.random.default_rng(0).standard_normal((n, n), np.float32)
  candidates = [(np.matmul, a)] if cpu else []
  candidates.append((jax.jit(lambda x, y: x @ y),
                     a if cpu else jax.device_put(a)))
  best = 0.0
  for matmul, x in candidates:
    jax.block_until_ready(matmul(x, x))
    for _ in range(3):
      start = time.perf_counter()
      jax.block_until_ready(matmul(x, x))
      best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
  return best, 0.0, _jax_device(jax)


BENCHES = {'jax': bench_jax, 'keras': bench_keras, 'torch': bench_torch,
           'gemm': bench_gemm}


CPU_FEATURES = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile',
                'amx_bf16', 'amx_int8')


def cpu_description() -> dict:
  """The CPU's model name, logical cores and the features in CPU_FEATURES
  that it has (from /proc/cpuinfo on Linux)."""
  model, flags = platform.processor(), set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name' and not flags:
          model = value.strip()
        elif key.strip() == 'flags':
          flags = set(value.split())
          break
  except OSError:
    pass
  return {'model': model, 'cores': os.cpu_count(),
          'features': [f for f in CPU_FEATURES if f in flags]}


def _child(name: str, steps: int, batch: int, dtype: str):
  rate, flops, device = BENCHES[name](steps, batch, dtype)
  print(json.dumps({'rate': rate, 'flops_per_image': flops, 'device': device}))


def _measure(name, dtype, args, skipped=None):
  proc = subprocess.run(
      [sys.executable, __file__, '--child', name, f'--steps={args.steps}',
       f'--batch_size={args.batch_size}', f'--dtype={dtype}'],
      capture_output=True, text=True)
  if proc.returncode:
    tail = proc.stderr.strip().splitlines()[-1:] or ['?']
    print(f'  {name}: skipped ({tail[0][:200]})', file=sys.stderr)
    if skipped is not None:
      skipped[name] = tail[0][:200]
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--dtype', default='float32',
                      choices=('float32', 'bfloat16', 'both'))
  parser.add_argument('--frameworks', default='jax,keras,torch')
  parser.add_argument('--json', action='store_true')
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    _child(args.child, args.steps, args.batch_size, args.dtype)
    return
  names = args.frameworks.split(',')
  dtypes = (('float32', 'bfloat16') if args.dtype == 'both'
            else (args.dtype,))
  cpu = cpu_description()
  print(f'cpu: {cpu["model"]}, {cpu["cores"]} cores, '
        f'{" ".join(cpu["features"]) or "none of " + " ".join(CPU_FEATURES)}',
        file=sys.stderr)
  rates = {(n, d): [] for n in names for d in dtypes}
  flops = 0.0
  gemm = []
  skipped, devices = {}, {}
  for r in range(args.repeats):
    for name, dtype in list(rates) + [('gemm', 'float32')]:
      out = _measure(name, dtype, args, skipped)
      if out is None:
        continue
      devices[name] = out.get('device', '')
      if name == 'gemm':
        gemm.append(out['rate'])
      else:
        rates[name, dtype].append(out['rate'])
        flops = flops or out['flops_per_image']  # jax float32 comes first.
      print(f'repeat {r + 1}: {name} {dtype} {out["rate"]:.0f}',
            file=sys.stderr)
  by_config = {k: statistics.median(v) for k, v in rates.items() if v}
  best_dtype = {n: max((d for d in dtypes if (n, d) in by_config),
                       key=lambda d, n=n: by_config[n, d])
                for n in names if any((n, d) in by_config for d in dtypes)}
  median = {n: by_config[n, d] for n, d in best_dtype.items()}
  peak = max(gemm) if gemm else 0.0
  result = {
      'cpu': cpu,
      'batch_size': args.batch_size, 'dtype': args.dtype,
      'steps': args.steps, 'repeats': args.repeats,
      'images_per_s': {n: round(v, 1) for n, v in median.items()},
      'gemm_peak_gflops': round(peak, 1),
      'train_flops_per_image': flops,
      'devices': devices,
  }
  if len(dtypes) > 1:
    result['best_dtype'] = best_dtype
    result['by_config'] = {f'{n} {d}': round(v, 1)
                           for (n, d), v in by_config.items()}
  never = {n: why for n, why in skipped.items() if n not in devices}
  if never:
    result['skipped'] = never
  if 'jax' in median:
    result['jax_vs'] = {n: round(median['jax'] / v, 3)
                        for n, v in median.items() if n != 'jax'}
    if peak and flops:
      result['ceiling_images_per_s'] = round(peak * 1e9 / flops, 1)
      result['jax_percent_of_gemm_ceiling'] = round(
          100 * median['jax'] * flops / (peak * 1e9), 1)
  if args.json:
    print(json.dumps(result))
  else:
    for k, v in result.items():
      print(f'{k}: {v}')


if __name__ == '__main__':
  main()
