"""The seed recipe's test accuracy in Keras, per seed: the peer's spread.

    python benchmarks/keras_seed_accuracy.py --manual_dir=../shared/data/mnist \
        [--seeds=0,1,2,3,4] [--epochs=1]

A single run's 1-epoch accuracy is one draw of a spread. This
trains the same model and recipe in Keras (benchmarks/throughput.py's
keras_seed_model: SGD 0.05, batch 16, shuffled each epoch) on the MNIST IDX
files once per seed and prints the test accuracy after each epoch, so that the
project's per-seed figures (experiments/one_epoch.py) can be read against the
peer's own seed-to-seed spread rather than against a single draw.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mnist_flax import idx  # pylint: disable=g-import-not-at-top
import throughput  # pylint: disable=g-import-not-at-top,g-bad-import-order


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--manual_dir', required=True,
                      help='folder with the four MNIST IDX .gz files')
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--epochs', type=int, default=1)
  args = parser.parse_args()
  split = {}
  for name in ('train', 't10k'):
    path = os.path.join(args.manual_dir, f'{name}-%s-idx%d-ubyte.gz')
    split[name] = (idx.read_idx(path % ('images', 3))[..., None],
                   idx.read_idx(path % ('labels', 1)).astype('int32'))
  import keras  # pylint: disable=g-import-not-at-top
  final = []
  for seed in (int(s) for s in args.seeds.split(',')):
    keras.utils.set_random_seed(seed)
    model = throughput.keras_seed_model()
    accuracies = []
    for _ in range(args.epochs):
      model.fit(*split['train'], batch_size=16, epochs=1, verbose=0,
                shuffle=True)
      accuracies.append(model.evaluate(*split['t10k'], batch_size=1000,
                                       verbose=0)[1])
    final.append(accuracies[-1])
    print(f'keras seed {seed}: test accuracy after each epoch: '
          + ', '.join(f'{100 * a:.2f}%' for a in accuracies), flush=True)
  spread = statistics.stdev(final) if len(final) > 1 else 0.0
  print(f'keras after {args.epochs} epoch(s), {len(final)} seeds: mean '
        f'{100 * statistics.mean(final):.2f}% ± {100 * spread:.2f}, min '
        f'{100 * min(final):.2f}%, max {100 * max(final):.2f}%')


if __name__ == '__main__':
  main()
