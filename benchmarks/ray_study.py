"""A small study through experiments/runner.py: --backend=local vs ray.

    python benchmarks/ray_study.py [--manual_dir=../shared/data/mnist]
        [--epochs=1] [--train_examples=3000] [--cpus_per_run=1]

Six runs of a width-0.25 model (3 variants x 2 seeds), each backend in a fresh
root, timed from the runner's launch to its exit (so Ray's start-up and each
worker's imports count). Prints both wall times, their ratio and whether the
two gave the same final accuracies run by run; exits 1 if not. The load
average is printed too: other work on the machine skews both times.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STUDY = """
STUDY = {{
    'name': 'ray_bench',
    'base': {{'width': 0.25, 'epochs': {epochs}, 'train_examples': {n},
             'robustness_examples': 0, 'tensorboard': False,
             'log_every_s': 1000.0}},
    'variants': {{'seed': {{}}, 'no BN': {{'batchnorm': 'none'}},
                 'no dropout': {{'dropout': 0.0}}}},
    'seeds': [0, 1],
}}
"""


def _run_study(study: str, root: str, manual_dir: str, extra: list) -> float:
  start = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'runner.py'), study,
       f'--root={root}', f'--set=manual_dir={manual_dir}', *extra],
      capture_output=True, text=True, cwd=REPO,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  seconds = time.perf_counter() - start
  if proc.returncode:
    sys.exit(proc.stderr[-3000:])
  return seconds


def _accuracies(root: str) -> dict:
  with open(os.path.join(root, 'ray_bench', 'runs.csv')) as f:
    return {(r['variant'], r['seed']): r['final_test_accuracy']
            for r in csv.DictReader(f)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--manual_dir', default=os.path.join(
      os.path.dirname(REPO), 'shared', 'data', 'mnist'))
  parser.add_argument('--epochs', type=int, default=1)
  parser.add_argument('--train_examples', type=int, default=3000)
  parser.add_argument('--cpus_per_run', type=float, default=1)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    study = os.path.join(tmp, 'ray_bench.py')
    with open(study, 'w') as f:
      f.write(STUDY.format(epochs=args.epochs, n=args.train_examples))
    print(f'{os.cpu_count()} CPUs; load average before: '
          f'{os.getloadavg()[0]:.1f}')
    local = _run_study(study, os.path.join(tmp, 'local'), args.manual_dir, [])
    on_ray = _run_study(study, os.path.join(tmp, 'ray'), args.manual_dir,
                     ['--backend=ray', f'--cpus_per_run={args.cpus_per_run}'])
    print(f'load average after: {os.getloadavg()[0]:.1f}')
    same = _accuracies(os.path.join(tmp, 'local')) == _accuracies(
        os.path.join(tmp, 'ray'))
    runs = len(_accuracies(os.path.join(tmp, 'local')))
  print(f'local backend: {local:.1f} s')
  print(f'ray backend (--cpus_per_run={args.cpus_per_run:g}): {on_ray:.1f} s')
  print(f'local / ray: {local / on_ray:.2f}x')
  print(f'same final accuracies in all {runs} runs: {same}')
  sys.exit(0 if same else 1)


if __name__ == '__main__':
  main()
