"""experiments/validation_ensemble.py on two real (tiny) runs."""

import dataclasses
import json
import sys

import pytest

from conftest import REPO, tiny_config, write_idx_folder
from mnist_flax import train
from mnist_flax.errors import UserError

sys.path.insert(0, str(REPO / 'experiments'))
import validation_ensemble  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  """Two seeds of a tiny run holding out 40 validation images."""
  root = tmp_path_factory.mktemp('runs')
  folder = write_idx_folder(root / 'idx', n_train=160, n_test=40)
  workdirs = []
  for seed in (0, 1):
    config = dataclasses.replace(tiny_config(folder, epochs=2),
                                 validation_examples=40, seed=seed)
    train.train_and_evaluate(config, str(root / f'seed{seed}'))
    workdirs.append(str(root / f'seed{seed}'))
  return workdirs


def test_counts_agree_with_each_runs_validation_accuracy(two_runs):
  workdirs = two_runs
  out = validation_ensemble.overlap(workdirs)
  assert out['examples'] == 40
  for w, errors in zip(workdirs, out['errors']):
    accuracy = json.loads(open(f'{w}/results.json').read())[
        'final_val_accuracy']
    assert errors == round(40 * (1 - accuracy))
  assert out['shared_errors'] <= min(out['errors'])
  assert max(out['errors']) <= out['any_errors'] <= sum(out['errors'])
  # The mean softmax can only be wrong where at least one member is.
  assert out['ensemble_errors'] <= out['any_errors']


def test_a_run_without_a_validation_split_is_refused(tmp_path):
  folder = write_idx_folder(tmp_path / 'idx', n_train=96, n_test=40)
  train.train_and_evaluate(tiny_config(folder, epochs=1),
                           str(tmp_path / 'run'))
  with pytest.raises(UserError, match='without --validation_examples'):
    validation_ensemble.overlap([str(tmp_path / 'run')])


def test_report_test_scores_the_same_members_on_the_test_set(two_runs):
  workdirs = two_runs
  out = validation_ensemble.test_accuracy(workdirs)
  assert out['examples'] == 40
  for w, accuracy in zip(workdirs, out['accuracy']):
    results = json.loads(open(f'{w}/results.json').read())
    assert accuracy == pytest.approx(results['final_test_accuracy'])
  # A run twice over is that run.
  twice = validation_ensemble.test_accuracy([workdirs[1], workdirs[1]])
  assert twice['ensemble_accuracy'] == out['accuracy'][1]
