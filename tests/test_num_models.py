"""--num_models: K models in one vmapped program."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, tiny_config
from mnist_flax import checkpointing
from mnist_flax import models
from mnist_flax import report
from mnist_flax import train
from mnist_flax import state as state_lib
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError
from mnist_flax.predict import Predictor


def _restore(workdir, config):
  target = state_lib.init_state(config, models.create_model(config, 10),
                            (28, 28, 1))
  ckpt = checkpointing.Checkpointer(str(workdir))
  _, state, _ = ckpt.restore_latest(target)
  ckpt.close()
  return state


def _assert_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4,
                               atol=2e-5)


@pytest.mark.slow
def test_each_model_trains_as_its_own_run(tmp_path, idx_folder):
  # Model k of --num_models=2 --learning_rates=a,b is the single run with
  # --seed=k --learning_rate=(a or b): same init, shuffle, dropout and rate.
  both = tiny_config(idx_folder, num_models=2, learning_rates='0.05,0.02')
  res = train.train_and_evaluate(both, str(tmp_path / 'both'))
  stacked = _restore(tmp_path / 'both', both)
  for k, lr in enumerate((0.05, 0.02)):
    one = tiny_config(idx_folder, seed=k, learning_rate=lr)
    alone = train.train_and_evaluate(one, str(tmp_path / f'alone{k}'))
    _assert_close(jax.tree.map(lambda x, k=k: x[k], stacked.params),
                  _restore(tmp_path / f'alone{k}', one).params)
    assert res['model_final_test_accuracy'][k] == pytest.approx(
        alone['final_test_accuracy'])
  # The two models did differ.
  assert not np.allclose(stacked.params['head']['kernel'][0],
                         stacked.params['head']['kernel'][1])


@pytest.mark.slow
def test_writes_per_model_metrics_and_the_ensemble(tmp_path, idx_folder):
  config = tiny_config(idx_folder, num_models=3, epochs=2, loop='scan',
                       scan_steps=4)  # 6 steps an epoch: scans of 4 and 2.
  workdir = tmp_path / 'run'
  res = train.train_and_evaluate(config, str(workdir))
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').open()]
  assert [len(r['model_test_accuracy']) for r in rows] == [3, 3]
  assert [len(r['model_train_loss']) for r in rows] == [3, 3]
  assert res['num_models'] == 3
  assert len(res['model_final_test_accuracy']) == 3
  assert res['model_mean_test_accuracy'] == pytest.approx(
      np.mean(res['model_final_test_accuracy']))
  # final_test_accuracy is the ensemble's; the Predictor predicts with it too.
  from mnist_flax import data  # pylint: disable=g-import-not-at-top
  ds = data.load(config)
  probs = Predictor.from_workdir(str(workdir)).predict_proba(
      ds.test_images[..., 0])
  assert float((probs.argmax(-1) == ds.test_labels).mean()) == (
      res['final_test_accuracy'])
  # Each model alone, as `--member=k` exports and predicts it.
  predictor = Predictor.from_workdir(str(workdir))
  for k in range(3):
    probs = predictor.member(k).predict_proba(ds.test_images[..., 0])
    assert float((probs.argmax(-1) == ds.test_labels).mean()) == (
        res['model_final_test_accuracy'][k])
  # experiments/verify_run.py recomputes all four and prints the seed table.
  done = subprocess.run(
      [sys.executable, str(REPO / 'experiments' / 'verify_run.py'),
       f'--workdir={workdir}'], capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout + done.stderr[-2000:]
  seed_rows = [l for l in done.stdout.splitlines() if l[:4] in
               ('| 0 ', '| 1 ', '| 2 ')]
  assert len(seed_rows) == 3, done.stdout
  assert 'over 3 seeds' in done.stdout
  # Rerunning the command finds the run finished: resume works on the stack.
  again = train.train_and_evaluate(config, str(workdir))
  assert again['model_final_test_accuracy'] == res['model_final_test_accuracy']


@pytest.mark.parametrize('overrides, message', [
    (dict(num_models=0), 'num_models must be a positive integer'),
    (dict(num_models=2, learning_rates='0.1'), 'one rate per model'),
    (dict(learning_rates='0.1'), 'one rate per model'),
    (dict(num_models=2, learning_rates='0.1,x'), 'comma list of numbers'),
    (dict(num_models=2, learning_rates='0.1,-1'), 'must be positive'),
    (dict(num_models=2, init_from='runs/x'), 'init_from works with one'),
])
def test_bad_num_models_flags_are_refused(overrides, message):
  with pytest.raises(ConfigError, match=message):
    Config(**overrides).validate()


def test_model_summary_gives_each_model_its_last_epochs_and_best_epoch():
  history = [
      {'epoch': 1, 'model_test_accuracy': [0.90, 0.80]},
      {'epoch': 2, 'model_test_accuracy': [0.95, 0.70]},
      {'epoch': 3},  # Not evaluated (--eval_every).
      {'epoch': 4, 'model_test_accuracy': [0.93, 0.85]},
  ]
  summary = report.model_summary(history)
  assert summary['model_best_epoch'] == [2, 4]
  assert summary['model_best_test_accuracy'] == [0.95, 0.85]
  np.testing.assert_allclose(summary['model_last5_mean_test_accuracy'],
                             [(0.90 + 0.95 + 0.93) / 3, (0.80 + 0.70 + 0.85) / 3])
  # With a validation split, the best epoch follows it.
  for row, val in zip([history[0], history[1], history[3]],
                      ([0.99, 0.5], [0.5, 0.99], [0.5, 0.5])):
    row['model_val_accuracy'] = val
  summary = report.model_summary(history)
  assert summary['model_best_epoch'] == [1, 2]
  assert summary['model_best_test_accuracy'] == [0.90, 0.70]
  assert summary['model_final_val_accuracy'] == [0.5, 0.5]
