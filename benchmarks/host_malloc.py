"""Training-step speed with and without hostmem.keep_freed_memory().

    python benchmarks/host_malloc.py [--repeats=3] [--images=4000]

For each configuration, two fresh subprocesses alternate in every repeat: one
with glibc's default malloc, one after `hostmem.keep_freed_memory()` (what
main.py and the study runner do first). Each times the project's real step
(throughput.measure_train_step) on random data and counts the page faults
per step. Prints the medians and the kept/default speed ratio. Configurations:
the seed recipe at batch 16 and 32, the `speedrun` preset at batch 128, 256
and 512, and the `best` preset (batch 128; augmentation off, since it does
not change the step's buffers much and the data here is random).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    'seed-bs16': ('seed', {}),
    'seed-bs32': ('seed', {'batch_size': 32}),
    'speedrun-bs128': ('speedrun', {}),
    'speedrun-bs256': ('speedrun', {'batch_size': 256}),
    'speedrun-bs512': ('speedrun', {'batch_size': 512}),
    'best-bs128': ('best', {'augment': 'none'}),
}


def _child(name: str, keep: bool, images: int):
  import throughput  # pylint: disable=g-import-not-at-top
  from mnist_flax import config as config_lib  # pylint: disable=g-import-not-at-top
  from mnist_flax import presets  # pylint: disable=g-import-not-at-top
  from mnist_flax import hostmem  # pylint: disable=g-import-not-at-top
  if keep:
    assert hostmem.keep_freed_memory()
  preset, overrides = CONFIGS[name]
  config = config_lib.Config(**{**presets.preset(preset), **overrides})
  steps = max(10, images // config.batch_size)
  print(json.dumps(throughput.measure_train_step(config, steps, warmup=5)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--images', type=int, default=4000,
                      help='training images timed per measurement')
  parser.add_argument('--configs', default=','.join(CONFIGS),
                      help='comma list of: ' + ', '.join(CONFIGS))
  parser.add_argument('--child', help=argparse.SUPPRESS)
  parser.add_argument('--keep', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    _child(args.child, args.keep, args.images)
    return
  names = args.configs.split(',')
  print('| config | default img/s | kept img/s | kept / default | '
        'faults/step default | faults/step kept |')
  print('|---|---|---|---|---|---|')
  for name in names:
    out = {False: [], True: []}
    for _ in range(args.repeats):
      for keep in (False, True):
        proc = subprocess.run(
            [sys.executable, __file__, f'--child={name}',
             f'--images={args.images}'] + (['--keep'] if keep else []),
            capture_output=True, text=True, check=True)
        out[keep].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rate = {k: statistics.median(o['images_per_s'] for o in v)
            for k, v in out.items()}
    faults = {k: statistics.median(o['faults_per_step'] for o in v)
              for k, v in out.items()}
    print(f'| {name} | {rate[False]:.0f} | {rate[True]:.0f} | '
          f'{rate[True] / rate[False]:.2f} | {faults[False]:.0f} | '
          f'{faults[True]:.0f} |', flush=True)


if __name__ == '__main__':
  main()
