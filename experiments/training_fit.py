"""How well finished runs fit the images they trained on.

    python experiments/training_fit.py WORKDIR [WORKDIR ...] [--grid=PNG]

Scores each run's final model on its own training split (the images as they
are, without --augment; the validation split and the test set are not
touched) and prints its errors and the model's confidence in its wrong
answers: a recipe whose models leave many training images wrong with low
confidence may underfit (search_clean.py tried a closer fit: 20 fewer wrong
training images, the same validation accuracy). --grid draws the first run's
wrong images with label -> prediction, to see how many look mislabelled.
"""

import argparse
import sys

import numpy as np

from mnist_flax import data, workdir
from mnist_flax.errors import UserError
from mnist_flax.predict import Predictor

BATCH = 2000


def training_errors(run: str) -> dict:
  """The run's final model on its training split: the indices it gets wrong,
  the label and prediction there, and its probability for that prediction."""
  ds = data.load(workdir.read_config(run))
  predictor = Predictor.from_workdir(run)
  images, labels = ds.train_images, ds.train_labels
  probs = np.concatenate([predictor.predict_proba(images[i:i + BATCH, ..., 0])
                          for i in range(0, len(labels), BATCH)])
  predicted = probs.argmax(-1)
  wrong = np.flatnonzero(predicted != labels)
  return {'examples': len(labels), 'indices': wrong,
          'labels': labels[wrong], 'predicted': predicted[wrong],
          'confidence': probs[wrong, predicted[wrong]],
          'images': images[wrong, ..., 0]}


def draw_grid(errors: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = max(len(errors['indices']), 1)
  cols = min(n, 13)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.3 * rows),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, image, label, pred, conf in zip(
      axes.flat, errors['images'], errors['labels'], errors['predicted'],
      errors['confidence']):
    ax.imshow(image, cmap='gray_r')
    ax.set_title(f'{label}->{pred} {conf:.2f}', fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=70)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--grid', default='',
                      help="PNG of the first run's wrong training images")
  args = parser.parse_args()
  try:
    for i, run in enumerate(args.workdirs):
      errors = training_errors(run)
      n, k = errors['examples'], len(errors['indices'])
      quartiles = (np.quantile(errors['confidence'], [0.25, 0.5, 0.75])
                   if k else [])
      print(f'{run}: {k} of {n} training images wrong '
            f'({100 * (1 - k / n):.2f}% right); confidence in the wrong '
            'answer, quartiles: ' + ', '.join(f'{q:.2f}' for q in quartiles))
      if args.grid and i == 0:
        draw_grid(errors, args.grid)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  main()
