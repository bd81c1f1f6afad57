"""Recomputes a finished run's test accuracy through the public Predictor API.

    python experiments/verify_run.py --workdir=runs/base [--manual_dir=DIR]

Loads the run's own config (dataset, classes), predicts the whole test split
with `Predictor.from_workdir(W).predict_proba`, and compares the accuracy with
results.json. A --num_models=K run is checked as its ensemble and as each
model alone (`Predictor.member`), and its per-seed table is printed: final
test accuracy, the mean of the last epochs, the best epoch (and the split it
was chosen on), then the mean ± std over the seeds. Exits 1 on any
disagreement.
"""

import dataclasses
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from mnist_flax import data
from mnist_flax import flagging
from mnist_flax import report
from mnist_flax import workdir
from mnist_flax.errors import UserError
from mnist_flax.predict import Predictor

_WORKDIR = flags.DEFINE_string('workdir', None, 'Finished run.', required=True)
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'As for main.py.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'As for main.py.')


def _accuracy(predictor, images, labels) -> float:
  return float((predictor.predict_proba(images).argmax(-1) == labels).mean())


def _seed_table(config, results, recomputed) -> None:
  """The per-seed headline of a --num_models run, as a Markdown table."""
  if 'model_best_epoch' not in results:
    print('(results.json predates the per-model summary: no seed table)')
    return
  n_last = report.LAST_EPOCHS
  last = f'model_last{n_last}_mean_test_accuracy'
  print(f'| seed | final test accuracy | mean of the last {n_last} epochs '
        f'| best epoch '
        f'(chosen on {results["best_chosen_on"]}) | its test accuracy |')
  print('|---|---|---|---|---|')
  for k, accuracy in enumerate(recomputed):
    print(f'| {config.seed + k} | {accuracy:.2%} | {results[last][k]:.2%} | '
          f'{results["model_best_epoch"][k]} | '
          f'{results["model_best_test_accuracy"][k]:.2%} |')
  final = np.array(recomputed)
  print(f'final test accuracy over {len(final)} seeds: {final.mean():.2%} '
        f'± {final.std(ddof=1):.2%} (sample std); last-{n_last} mean '
        f'{np.mean(results[last]):.2%}; ensemble (mean softmax) '
        f'{results["final_test_accuracy"]:.2%}; training and evaluation '
        f'{results["train_seconds"] / 60:.1f} min (sum of the epochs)')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Keep the table readable.
  try:
    verify(_WORKDIR.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)


def verify(run: str) -> None:
  """Prints the checks; exits 1 where the Predictor disagrees."""
  config = workdir.read_config(run)
  results = workdir.read_results(run)
  if results is None:
    raise UserError(f'{run}: no results.json; the run has not finished')
  config = dataclasses.replace(
      config, manual_dir=_MANUAL_DIR.value or config.manual_dir,
      data_dir=_DATA_DIR.value or config.data_dir)
  ds = data.load(config)
  images, labels = ds.test_images[..., 0], ds.test_labels
  predictor = Predictor.from_workdir(run)
  accuracy = _accuracy(predictor, images, labels)
  print(f'Predictor accuracy on {len(labels)} test images: {accuracy:.4%}; '
        f'results.json final_test_accuracy: '
        f'{results["final_test_accuracy"]:.4%}')
  agree = accuracy == results['final_test_accuracy']
  if predictor.num_models > 1:
    members = [_accuracy(predictor.member(k), images, labels)
               for k in range(predictor.num_models)]
    print(f'each model alone: {", ".join(f"{a:.4%}" for a in members)}; '
          'results.json model_final_test_accuracy: '
          f'{", ".join(f"{a:.4%}" for a in results["model_final_test_accuracy"])}')
    agree &= members == results['model_final_test_accuracy']
    _seed_table(config, results, members)
  sys.exit(0 if agree else 1)


if __name__ == '__main__':
  app.run(main, flags_parser=flagging.parse_flags_or_exit)
