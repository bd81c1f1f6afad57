"""The committed pretrained model: loads on a clean clone and scores what its
results.json says; `workdir.copy_run` makes such a folder from a run."""

import json
import pathlib

import numpy as np
import pytest

from conftest import REPO, SHARED_MNIST, tiny_config
from mnist_flax import idx
from mnist_flax import train
from mnist_flax import workdir
from mnist_flax.config import Config
from mnist_flax.config import semantic_diff
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError
from mnist_flax.predict import Predictor

SHIPPED = REPO / 'results' / 'models' / 'best-mnist'


def test_the_shipped_model_is_small_and_complete():
  checkpoints = list((SHIPPED / 'checkpoints').iterdir())
  assert len(checkpoints) == 1
  files = [SHIPPED / 'config.json', SHIPPED / 'results.json',
           *(p for p in checkpoints[0].rglob('*') if p.is_file())]
  assert sum(p.stat().st_size for p in files) < 10 * 2**20


@pytest.mark.skipif(not SHARED_MNIST.is_dir(),
                    reason=f'real MNIST files not found at {SHARED_MNIST}')
def test_the_shipped_model_scores_its_results_json_on_the_test_set():
  images = idx.read_idx(str(SHARED_MNIST / 't10k-images-idx3-ubyte.gz'))
  labels = idx.read_idx(str(SHARED_MNIST / 't10k-labels-idx1-ubyte.gz'))
  predictor = Predictor.from_workdir(str(SHIPPED))
  accuracy = float((predictor.predict(images) == labels).mean())
  results = json.loads((SHIPPED / 'results.json').read_text())
  assert results['num_test_examples'] == len(labels) == 10_000
  assert accuracy == pytest.approx(results['final_test_accuracy'], abs=1e-4)


def test_copy_run_keeps_what_a_predictor_needs_and_nothing_else(
    tmp_path, idx_folder):
  run = tmp_path / 'run'
  train.train_and_evaluate(tiny_config(idx_folder, epochs=2), str(run))
  shipped = pathlib.Path(workdir.copy_run(str(run), str(tmp_path / 'ship')))
  assert sorted(p.name for p in shipped.iterdir()) == [
      'checkpoints', 'config.json', 'results.json']
  assert [p.name for p in (shipped / 'checkpoints').iterdir()] == ['2']
  config = workdir.read_config(str(shipped))
  assert config.manual_dir == '' and config.data_dir == Config().data_dir
  assert not semantic_diff(config, workdir.read_config(str(run)))
  images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), np.uint8)
  np.testing.assert_array_equal(
      Predictor.from_workdir(str(shipped)).predict_proba(images),
      Predictor.from_workdir(str(run)).predict_proba(images))
  with pytest.raises(ConfigError, match='exists'):
    workdir.copy_run(str(run), str(shipped))


@pytest.mark.parametrize('results', [
    '{"final_test_accuracy": 0.9', '[1]', '{"class_names": 5}'])
def test_a_corrupt_results_json_is_refused_with_its_path(tmp_path, results):
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text((SHIPPED / 'config.json').read_text())
  (run / 'results.json').write_text(results)
  with pytest.raises(CheckpointError, match=r'results\.json: unreadable'):
    Predictor.from_workdir(str(run))


@pytest.mark.parametrize('change, message', [
    ({'arch': 'nosuch'}, "--arch='nosuch' is not valid"),
    ({'depth': 'four'}, "--depth='four' must be an integer"),
])
def test_a_config_json_with_bad_values_is_refused_naming_them(
    tmp_path, change, message):
  run = tmp_path / 'run'
  run.mkdir()
  config = json.loads((SHIPPED / 'config.json').read_text())
  (run / 'config.json').write_text(json.dumps({**config, **change}))
  with pytest.raises(CheckpointError, match=rf'config\.json: unreadable .*{message}'):
    Predictor.from_workdir(str(run))
  (run / 'config.json').write_text('[1, 2]')
  with pytest.raises(CheckpointError, match='not a JSON object'):
    Predictor.from_workdir(str(run))
