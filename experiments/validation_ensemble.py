"""How much an ensemble of finished runs gains on their validation split.

    python experiments/validation_ensemble.py WORKDIR [WORKDIR ...]

For runs trained with --validation_examples (the same split for all; the
first run's config says which), prints each run's validation errors, the
errors every run shares and any run makes, and the errors of the mean of the
runs' softmaxes: where the members' errors are mostly the same images an
ensemble cannot gain much. The test set is not touched, unless --report_test
asks for the same ensemble's test accuracy: for reporting a committee whose
members were chosen on validation, once.
"""

import argparse
import sys

import numpy as np

from mnist_flax import data, workdir
from mnist_flax.errors import UserError
from mnist_flax.predict import Predictor


def overlap(workdirs: list[str]) -> dict:
  """Validation errors of each run, their intersection and union, and the
  ensemble's (the mean softmax), as counts out of the split's size."""
  config = workdir.read_config(workdirs[0])
  if not config.validation_examples:
    raise UserError(f'{workdirs[0]} was trained without '
                    '--validation_examples: it has no validation split')
  for w in workdirs[1:]:
    other = workdir.read_config(w)
    if (other.validation_examples, other.dataset, other.classes) != (
        config.validation_examples, config.dataset, config.classes):
      raise UserError(f'{w} holds out a different validation split than '
                      f'{workdirs[0]}')
  ds = data.load(config)
  labels = ds.val_labels
  probs = [Predictor.from_workdir(w).predict_proba(ds.val_images)
           for w in workdirs]
  wrong = [set(np.flatnonzero(p.argmax(-1) != labels).tolist())
           for p in probs]
  ensemble = np.mean(probs, axis=0).argmax(-1)
  return {'examples': len(labels),
          'errors': [len(e) for e in wrong],
          'shared_errors': len(set.intersection(*wrong)),
          'any_errors': len(set.union(*wrong)),
          'ensemble_errors': int((ensemble != labels).sum())}


def test_accuracy(workdirs: list[str]) -> dict:
  """Each run's test accuracy and that of the mean of their softmaxes."""
  ds = data.load(workdir.read_config(workdirs[0]))
  probs = [Predictor.from_workdir(w).predict_proba(ds.test_images)
           for w in workdirs]
  correct = lambda p: float(np.mean(p.argmax(-1) == ds.test_labels))
  return {'examples': len(ds.test_labels),
          'accuracy': [correct(p) for p in probs],
          'ensemble_accuracy': correct(np.mean(probs, axis=0))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument(
      '--report_test', action='store_true',
      help='Also print the ensemble\'s test accuracy (choose the members on '
      'validation first).')
  args = parser.parse_args()
  try:
    out = overlap(args.workdirs)
    test = test_accuracy(args.workdirs) if args.report_test else None
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  n = out['examples']
  for w, errors in zip(args.workdirs, out['errors']):
    print(f'{w}: {errors} errors ({100 * (1 - errors / n):.2f}%)')
  print(f"shared by all: {out['shared_errors']}; made by any: "
        f"{out['any_errors']}")
  print(f"ensemble (mean softmax): {out['ensemble_errors']} errors "
        f"({100 * (1 - out['ensemble_errors'] / n):.2f}%) of {n}")
  if test:
    members = ', '.join(f'{100 * a:.2f}' for a in test['accuracy'])
    print(f"test: members {members}%; ensemble "
          f"{100 * test['ensemble_accuracy']:.2f}% of {test['examples']}")


if __name__ == '__main__':
  main()
