"""experiments/training_fit.py on a real (tiny) run."""

import dataclasses
import sys

import numpy as np

from conftest import REPO, tiny_config, write_idx_folder
from mnist_flax import idx, train
from mnist_flax.predict import Predictor

sys.path.insert(0, str(REPO / 'experiments'))
import training_fit  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_errors_are_the_training_split_images_the_model_gets_wrong(tmp_path):
  folder = write_idx_folder(tmp_path / 'idx', n_train=160, n_test=40)
  config = dataclasses.replace(tiny_config(folder, epochs=1),
                               validation_examples=40)
  run = str(tmp_path / 'run')
  train.train_and_evaluate(config, run)
  out = training_fit.training_errors(run)
  # The first 120 images trained; the last 40 are the validation split.
  assert out['examples'] == 120
  images = idx.read_idx(str(folder / 'train-images-idx3-ubyte.gz'))[:120]
  labels = idx.read_idx(str(folder / 'train-labels-idx1-ubyte.gz'))[:120]
  probs = Predictor.from_workdir(run).predict_proba(images)
  wrong = np.flatnonzero(probs.argmax(-1) != labels)
  assert 0 < len(wrong) < 120  # One epoch leaves some wrong.
  np.testing.assert_array_equal(out['indices'], wrong)
  np.testing.assert_array_equal(out['labels'], labels[wrong])
  np.testing.assert_array_equal(out['predicted'], probs.argmax(-1)[wrong])
  np.testing.assert_allclose(out['confidence'], probs.max(-1)[wrong],
                             rtol=1e-5)
  grid = tmp_path / 'grid.png'
  training_fit.draw_grid(out, str(grid))
  assert grid.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
