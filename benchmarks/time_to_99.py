"""Time to 99% test accuracy: the `speedrun` preset over several seeds.

    python benchmarks/time_to_99.py --manual_dir=../shared/data/mnist [--seeds=5]
                                    [--preset=speedrun] [--root=/tmp/speedrun]
                                    [--extra_flag=--noverify_checksums ...]
                                    [--json]

Each seed is a fresh `python main.py --preset=... --seed=K` process on data
that tfds has already prepared; its time is the wall clock from launching the
process to its exit, so imports, data loading, compilation, evaluation,
checkpoints and plots are all counted. Prints each seed's time and final test
accuracy, then the mean accuracy (the target is 99.0%) and the mean and
slowest time. Each --extra_flag (repeatable) is passed on to main.py as it is,
e.g. --extra_flag=--noverify_checksums to read --manual_dir's IDX files
directly, without tfds. --json ends the output with one line of JSON holding
the same figures.
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
  parser.add_argument('--extra_flag', action='append', default=[],
                      help='A flag for main.py, e.g. --noverify_checksums '
                      '(repeatable).')
  parser.add_argument('--json', action='store_true',
                      help='End with one line of JSON holding the figures.')
  args = parser.parse_args()
  if args.seeds < 1:
    parser.error(f'--seeds={args.seeds}: at least 1')
  times, accs = [], []
  for seed in range(args.seeds):
    workdir = os.path.join(args.root, f'seed{seed}')
    if os.path.exists(workdir) and not os.path.exists(
        os.path.join(workdir, 'config.json')):
      sys.exit(f'error: {workdir} exists and is not a run of this benchmark; '
               'choose another --root')
    shutil.rmtree(workdir, ignore_errors=True)  # A fresh run: no resume.
    os.makedirs(args.root, exist_ok=True)
    command = [sys.executable, os.path.join(REPO, 'main.py'),
               f'--preset={args.preset}', f'--seed={seed}',
               f'--workdir={workdir}']
    if args.manual_dir:
      command.append(f'--manual_dir={args.manual_dir}')
    command += args.extra_flag
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
      lines = proc.stderr.strip().splitlines() or ['(no output)']
      errors = [l for l in lines if l.startswith('error: ')]
      sys.exit(f'error: seed {seed} failed: '
               f'{(errors or lines)[-1].removeprefix("error: ")}')
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
  if args.json:
    print(json.dumps({
        'preset': args.preset, 'extra_flags': args.extra_flag,
        'seconds': [round(t, 2) for t in times], 'test_accuracy': accs,
        'mean_test_accuracy': statistics.mean(accs),
        'min_test_accuracy': min(accs),
        'mean_seconds': round(statistics.mean(times), 2),
        'max_seconds': round(max(times), 2)}))


if __name__ == '__main__':
  main()
