"""Data parallelism: 8 virtual CPU devices, and 2 processes over jax.distributed,
both against single-device training of the same config."""

import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO
from mnist_flax import checkpointing
from mnist_flax import models
from mnist_flax import state as state_lib
from mnist_flax.config import Config

pytestmark = pytest.mark.slow  # Subprocesses with 8 devices, or 2 processes.

# A few steps (2 epochs of 1, with evaluation and a checkpoint between), as
# float differences grow with training.
FLAGS = ['--epochs=2', '--train_examples=16', '--width=0.25', '--batch_size=16', '--eval_batch_size=8',
         '--noverify_checksums', '--log_every_s=1000']


def _env(devices: int):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


def _main(workdir, data, devices=1, extra=()):
  return subprocess.Popen(
      [sys.executable, str(REPO / 'main.py'), f'--workdir={workdir}',
       f'--manual_dir={data}', *FLAGS, *extra], env=_env(devices), cwd=REPO,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  return err


def _params(workdir, data, num_models=1):
  config = Config(manual_dir=str(data), width=0.25, num_models=num_models)
  model = models.create_model(config, 10)
  target = state_lib.init_state(config, model, (28, 28, 1))
  ckpt = checkpointing.Checkpointer(str(workdir))
  epoch, state, history = ckpt.restore_latest(target)
  ckpt.close()
  return epoch, state, history


def _assert_close(a, b):
  ea, sa, ha = a
  eb, sb, hb = b
  assert ea == eb == 2
  for x, y in zip(jax.tree.leaves(sa.params), jax.tree.leaves(sb.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4,
                               atol=1e-6)
  for x, y in zip(jax.tree.leaves(sa.batch_stats),
                  jax.tree.leaves(sb.batch_stats)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4,
                               atol=1e-6)
  for ra, rb in zip(ha, hb):
    assert ra['train_loss'] == pytest.approx(rb['train_loss'], rel=1e-5)
    assert ra['test_loss'] == pytest.approx(rb['test_loss'], rel=1e-5)


@pytest.fixture(scope='module')
def single_device(tmp_path_factory):
  from conftest import write_idx_folder  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('dp')
  data = write_idx_folder(root / 'idx')
  _finish(_main(root / 'one', data))
  return root, data, _params(root / 'one', data)


def test_eight_virtual_devices_match_one_device(single_device):
  root, data, reference = single_device
  err = _finish(_main(root / 'eight', data, devices=8))
  assert '8 devices, 2 per step each' in err
  _assert_close(_params(root / 'eight', data), reference)


def test_num_models_over_devices_matches_one_model_on_one(single_device):
  # vmap over models inside the data-parallel step: model 0 of K=2 on two
  # devices is the one-model run on one device.
  root, data, reference = single_device
  err = _finish(_main(root / 'models', data, devices=2,
                      extra=['--num_models=2']))
  assert '(2 models); 2 devices, 8 per step each' in err
  epoch, state, history = _params(root / 'models', data, num_models=2)
  first = jax.tree.map(lambda x: x[0], state)
  rows = [{**r, 'train_loss': r['model_train_loss'][0],
           'test_loss': r['model_test_loss'][0]} for r in history]
  _assert_close((epoch, first, rows), reference)


def test_batch_that_does_not_divide_the_devices_is_refused(single_device):
  root, data, _ = single_device
  proc = _main(root / 'bad', data, devices=8, extra=['--batch_size=12'])
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2
  assert 'does not divide evenly over 8 devices' in err.strip().splitlines()[-1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_over_jax_distributed_match_one(single_device):
  root, data, reference = single_device
  address = f'localhost:{_free_port()}'
  procs = [_main(root / 'two', data, extra=[
      f'--coordinator_address={address}', '--num_processes=2',
      f'--process_id={i}']) for i in range(2)]
  logs = [_finish(p) for p in procs]
  fingerprints = [re.findall(r'final state fingerprint (\w+)', log)
                  for log in logs]
  assert fingerprints[0] and fingerprints[0] == fingerprints[1]
  assert '2 devices, 8 per step each' in logs[0]
  # Only process 0 writes metrics and results.
  assert (root / 'two' / 'results.json').exists()
  _assert_close(_params(root / 'two', data), reference)
