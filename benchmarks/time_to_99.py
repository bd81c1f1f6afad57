"""Time to 99% test accuracy: the `speedrun` preset over several seeds.

    python benchmarks/time_to_99.py --manual_dir=../shared/data/mnist [--seeds=5]
                                    [--preset=speedrun] [--root=/tmp/speedrun]

Each seed is a fresh `python main.py --preset=... --seed=K` process on data
that tfds has already prepared; its time is the wall clock from launching the
process to its exit, so imports, data loading, compilation, evaluation,
checkpoints and plots are all counted. Prints each seed's time and final test
accuracy, then the mean accuracy (the target is 99.0%) and the mean and
slowest time.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--manual_dir', default='')
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--preset', default='speedrun')
  parser.add_argument('--root', default='/tmp/speedrun')
  args = parser.parse_args()
  times, accs = [], []
  for seed in range(args.seeds):
    workdir = os.path.join(args.root, f'seed{seed}')
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(args.root, exist_ok=True)
    command = [sys.executable, os.path.join(REPO, 'main.py'),
               f'--preset={args.preset}', f'--seed={seed}',
               f'--workdir={workdir}']
    if args.manual_dir:
      command.append(f'--manual_dir={args.manual_dir}')
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
      sys.exit(f'seed {seed} failed: {proc.stderr.strip().splitlines()[-1]}')
    with open(os.path.join(workdir, 'results.json')) as f:
      accuracy = json.load(f)['final_test_accuracy']
    times.append(seconds)
    accs.append(accuracy)
    print(f'seed {seed}: {seconds:.1f} s from process start to exit, '
          f'test accuracy {100 * accuracy:.2f}%')
  print(f'--preset={args.preset}: mean test accuracy '
        f'{100 * statistics.mean(accs):.2f}% over {len(accs)} seeds '
        f'(min {100 * min(accs):.2f}%); wall time mean '
        f'{statistics.mean(times):.1f} s, slowest {max(times):.1f} s')


if __name__ == '__main__':
  main()
