"""Loading a prepared tfds dataset: through tf.data vs the decoded-array cache.

    python benchmarks/data_load.py --manual_dir=../shared/data/mnist [--repeats=3]
                                   [--dataset=mnist] [--data_dir=DIR]

The dataset must already be prepared (any earlier run does it). Each
measurement is a fresh process that imports mnist_flax and calls
`data.load(config)` (what main.py does), timed from launch to exit, so
imports count. "tf.data" runs move the cache file aside first, so the split is
read and decoded through TensorFlow (and the cache is written again);
"cache" runs read it back. The two alternate; prints each time, the medians,
and whether TensorFlow was imported.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys
from mnist_flax import config as config_lib, data
from mnist_flax.errors import UserError
cfg = config_lib.Config(dataset={dataset!r}, data_dir={data_dir!r},
                        manual_dir={manual_dir!r})
try:
  ds = data.load(cfg)
except UserError as e:
  sys.exit(f'error: {{e}}')
print(len(ds.train_labels), len(ds.test_labels),
      'tensorflow' in sys.modules)
"""


def _run(args) -> tuple[float, list[str]]:
  code = CHILD.format(dataset=args.dataset, data_dir=args.data_dir,
                      manual_dir=args.manual_dir)
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, cwd=REPO)
  seconds = time.perf_counter() - start
  if proc.returncode:
    sys.exit(proc.stderr.strip().splitlines()[-1])
  return seconds, proc.stdout.split()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='mnist')
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--manual_dir', default='')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  _run(args)  # Prepares the dataset if needed, and writes the cache.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mnist_flax import data  # pylint: disable=g-import-not-at-top
  folder = tfds.builder(args.dataset, data_dir=args.data_dir or None).data_dir
  cache = os.path.join(folder, data.ARRAY_CACHE)
  if not os.path.exists(cache):
    sys.exit(f'no array cache at {cache}: is the data folder writable?')
  times = {'tf.data': [], 'cache': []}
  for repeat in range(args.repeats):
    for kind in times:
      if kind == 'tf.data':
        os.replace(cache, cache + '.aside')
      try:
        seconds, (n_train, n_test, tf_imported) = _run(args)
      finally:
        if os.path.exists(cache + '.aside'):
          os.replace(cache + '.aside', cache)  # Keep the original file.
      times[kind].append(seconds)
      print(f'repeat {repeat + 1}: {kind:7s} {seconds:5.2f} s '
            f'({n_train} + {n_test} images, TensorFlow imported: '
            f'{tf_imported})')
  a, b = (statistics.median(times[k]) for k in ('tf.data', 'cache'))
  print(f'median: tf.data {a:.2f} s, cache {b:.2f} s, {a / b:.1f}x faster')


if __name__ == '__main__':
  main()
