import dataclasses
import json

import jax
import numpy as np
import pytest

from conftest import REPO, tiny_config
from mnist_flax import checkpointing
from mnist_flax import models
from mnist_flax import train
from mnist_flax import transfer
from mnist_flax import workdir
from mnist_flax import state as state_lib
from mnist_flax.errors import CheckpointError


def _state(workdir, config, num_classes):
  target = state_lib.create_train_state(
      config, models.create_model(config, num_classes), jax.random.PRNGKey(0),
      (28, 28, 1))
  ckpt = checkpointing.Checkpointer(str(workdir))
  _, state, _ = ckpt.restore_latest(target)
  ckpt.close()
  return state


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  from conftest import write_idx_folder  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('transfer')
  folder = write_idx_folder(root / 'idx')
  config = tiny_config(folder, epochs=1, width=0.25, depth=5)
  train.train_and_evaluate(config, str(root / 'source'))
  return root, folder, _state(root / 'source', config, 10)


def _equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize('finetune, frozen', [
    ('linear', ['conv1', 'conv5', 'dense1', 'bn_head']),
    ('head+last', ['conv1', 'conv2', 'conv5']),
])
def test_frozen_layers_stay_bit_identical(source, finetune, frozen):
  root, folder, src = source
  config = tiny_config(folder, epochs=2, width=0.25, depth=5, finetune=finetune,
                       init_from=str(root / 'source'))
  workdir = root / f'ft-{finetune}'
  train.train_and_evaluate(config, str(workdir))
  got = _state(workdir, config, 10)
  for name in frozen:
    assert _equal(got.params[name], src.params[name]), name
  assert _equal(got.batch_stats, src.batch_stats) == (finetune == 'linear')
  assert not _equal(got.params['head'], src.params['head'])
  if finetune == 'head+last':
    assert not _equal(got.params['dense1'], src.params['dense1'])


@pytest.mark.slow
def test_head_is_replaced_when_the_class_count_differs(source):
  root, folder, src = source
  config = tiny_config(folder, epochs=1, width=0.25, depth=5, classes='5,6,7,8,9',
                       init_from=str(root / 'source'), trunk_lr_scale=0.1)
  workdir = root / 'five'
  results = train.train_and_evaluate(config, str(workdir))
  report = json.loads((workdir / 'init_from.json').read_text())
  assert report['reinitialized'] == ['head']
  assert 'conv1' in report['loaded'] and 'dense1' in report['loaded']
  assert len(results['per_class_accuracy']) == 5
  got = _state(workdir, config, 5)
  assert got.params['head']['kernel'].shape == (16, 5)


def test_the_moving_average_starts_from_the_loaded_weights():
  shipped = REPO / 'results' / 'models' / 'best-mnist'
  config = dataclasses.replace(workdir.read_config(str(shipped)),
                               ema_decay=0.999, init_from=str(shipped))
  fresh = state_lib.create_train_state(
      config, models.create_model(config, 10), jax.random.PRNGKey(0),
      (28, 28, 1))
  state = transfer.init_from(fresh, str(shipped))
  source = workdir.load_run(str(shipped)).state.inference_variables()
  for got in (state.params, state.ema['params']):
    assert _equal(got, source['params'])
  for got in (state.batch_stats, state.ema['batch_stats']):
    assert _equal(got, source['batch_stats'])
  assert not _equal(fresh.ema['params'], source['params'])


def test_init_from_a_folder_without_a_run_is_refused(tmp_path):
  with pytest.raises(CheckpointError, match='no config.json'):
    transfer.init_from(None, str(tmp_path))


@pytest.mark.slow
def test_reinit_head_keeps_a_fresh_head_of_the_same_shape(source):
  root, folder, src = source
  config = tiny_config(folder, epochs=1, width=0.25, depth=5, reinit_head=True,
                       finetune='linear', init_from=str(root / 'source'))
  workdir = root / 'reinit'
  train.train_and_evaluate(config, str(workdir))
  report = json.loads((workdir / 'init_from.json').read_text())
  assert report['reinitialized'] == ['head']
  got = _state(workdir, config, 10)
  assert _equal(got.params['conv1'], src.params['conv1'])  # Loaded, frozen.
