"""Recomputes a finished run's test accuracy through the public Predictor API.

    python experiments/verify_run.py --workdir=runs/base [--manual_dir=DIR]

Loads the run's own config (dataset, classes), predicts the whole test split
with `Predictor.from_workdir(W).predict_proba`, and compares the accuracy with
results.json. Exits 1 if they disagree.
"""

import dataclasses
import sys

from absl import app
from absl import flags

from mnist_flax import data
from mnist_flax import workdir
from mnist_flax.predict import Predictor

_WORKDIR = flags.DEFINE_string('workdir', None, 'Finished run.', required=True)
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'As for main.py.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'As for main.py.')


def main(argv):
  del argv
  config = workdir.read_config(_WORKDIR.value)
  config = dataclasses.replace(
      config, manual_dir=_MANUAL_DIR.value or config.manual_dir,
      data_dir=_DATA_DIR.value or config.data_dir)
  ds = data.load(config)
  results = workdir.read_results(_WORKDIR.value)
  probs = Predictor.from_workdir(_WORKDIR.value).predict_proba(
      ds.test_images[..., 0])
  accuracy = float((probs.argmax(-1) == ds.test_labels).mean())
  print(f'Predictor accuracy on {len(ds.test_labels)} test images: '
        f'{accuracy:.4%}; results.json final_test_accuracy: '
        f'{results["final_test_accuracy"]:.4%}')
  sys.exit(0 if accuracy == results['final_test_accuracy'] else 1)


if __name__ == '__main__':
  app.run(main)
