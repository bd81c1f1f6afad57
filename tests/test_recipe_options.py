"""The options the best recipes use: the weights' moving average
(--ema_decay), unaugmented final epochs (--clean_epochs) and the exponential
schedule."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SMALL_MODEL, synthetic_digits, tiny_config
from mnist_flax import data
from mnist_flax import models
from mnist_flax import predict
from mnist_flax import state as state_lib
from mnist_flax import steps
from mnist_flax import train
from mnist_flax import workdir
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError


def _state(config):
  model = models.create_model(config, 10)
  create = functools.partial(state_lib.create_train_state, config, model,
                             image_shape=(28, 28, 1), total_steps=20)
  return jax.jit(create)(jax.random.PRNGKey(0))


def _batch():
  images, labels = synthetic_digits(16, seed=0)
  return jnp.asarray(images[..., None]), jnp.asarray(labels.astype(np.int32))


def test_ema_follows_its_formula_with_the_warm_up():
  config = Config(**SMALL_MODEL, ema_decay=0.9)
  state = _state(config)
  assert isinstance(state, state_lib.EmaTrainState)
  ones = jax.tree.map(jnp.ones_like, state.params)
  zeros = jax.tree.map(jnp.zeros_like, state.ema)
  # At step 1 the warm-up caps the decay at 2/11; at step 1000, 0.9 holds.
  for step, decay in ((1, 2 / 11), (1000, 0.9)):
    moved = state_lib.update_ema(
        state.replace(params=ones, ema=zeros, step=jnp.asarray(step)), 0.9)
    for leaf in jax.tree.leaves(moved.ema['params']):
      np.testing.assert_allclose(leaf, 1 - decay, rtol=1e-6)


def test_train_step_moves_the_average_and_eval_uses_it():
  state = _state(Config(**SMALL_MODEL, ema_decay=0.99))
  x, y = _batch()
  step = jax.jit(functools.partial(steps.train_step, ema_decay=0.99))
  for _ in range(5):
    state, _ = step(state, x, y)
  params, averaged = state.params['head']['kernel'], state.ema['params'][
      'head']['kernel']
  assert not np.allclose(params, averaged)
  logits = steps.eval_step(state, x, y)['logits']
  want = state.apply_fn(state.ema, steps.normalize(x), train=False)
  np.testing.assert_array_equal(logits, want)
  plain = state.apply_fn({'params': state.params,
                          'batch_stats': state.batch_stats},
                         steps.normalize(x), train=False)
  assert not np.allclose(logits, plain)


def test_without_ema_the_state_and_its_checkpoint_layout_are_unchanged():
  state = _state(Config(**SMALL_MODEL))
  assert type(state) is state_lib.TrainState
  assert not hasattr(state, 'ema')
  assert state.inference_variables().keys() == {'params', 'batch_stats'}


def test_clean_epochs_switch_augmentation_off_for_the_last_epochs():
  config = Config(augment='shift(2)', epochs=5, clean_epochs=2)
  augments = [steps.StepOptions.from_config(config, e).augment
              for e in range(1, 6)]
  assert augments == ['shift(2)'] * 3 + ['none'] * 2


@pytest.mark.parametrize('overrides, message', [
    (dict(adam_b1=1.0), '--adam_b1'),
    (dict(ema_decay=1.0), '--ema_decay'),
    (dict(ema_decay=-0.1), '--ema_decay'),
    (dict(clean_epochs=31), '--clean_epochs'),
    (dict(final_lr_fraction=0.0), '--final_lr_fraction'),
])
def test_bad_values_are_refused(overrides, message):
  with pytest.raises(ConfigError, match=message):
    Config(**overrides).validate()


def test_adam_betas_reach_the_optimizer():
  grads = {'w': jnp.ones(3)}
  params = {'w': jnp.zeros(3)}
  def second_update(**betas):
    tx = state_lib.make_optimizer(Config(optimizer='adam', learning_rate=1.0,
                                         **betas))
    opt = tx.init(params)
    _, opt = tx.update(grads, opt, params)
    update, _ = tx.update({'w': -jnp.ones(3)}, opt, params)
    return float(update['w'][0])
  # Gradients +1 then -1: Adam's bias-corrected moments after the second.
  for b1, b2 in ((0.9, 0.999), (0.7, 0.9)):
    m = (b1 * (1 - b1) - (1 - b1)) / (1 - b1**2)
    v = (b2 * (1 - b2) + (1 - b2)) / (1 - b2**2)
    want = -m / (np.sqrt(v) + 1e-8)
    assert second_update(adam_b1=b1, adam_b2=b2) == pytest.approx(want,
                                                                 rel=1e-5)


def test_exponential_schedule_ends_at_its_fraction():
  lr = state_lib.make_schedule(Config(schedule='exponential'), 100)
  assert float(lr(0)) == pytest.approx(0.05)
  assert float(lr(50)) == pytest.approx(0.05 * 1e-5 ** 0.5, rel=1e-4)
  assert float(lr(100)) == pytest.approx(0.05 * 1e-5, rel=1e-4)


@pytest.mark.slow
def test_an_all_clean_run_is_the_unaugmented_run(tmp_path, idx_folder):
  # Augmentation draws from keys folded off the step's key, so switching it
  # off for every epoch gives exactly the run without it.
  clean = train.train_and_evaluate(
      tiny_config(idx_folder, augment='noise(0.5)', clean_epochs=2),
      str(tmp_path / 'clean'))
  plain = train.train_and_evaluate(tiny_config(idx_folder),
                                   str(tmp_path / 'plain'))
  augmented = train.train_and_evaluate(
      tiny_config(idx_folder, augment='noise(0.5)', clean_epochs=1),
      str(tmp_path / 'augmented'))
  assert clean['final_test_loss'] == plain['final_test_loss']
  assert augmented['final_test_loss'] != plain['final_test_loss']


@pytest.mark.slow
def test_an_ema_run_serves_and_checkpoints_the_average(tmp_path, idx_folder):
  config = tiny_config(idx_folder, ema_decay=0.9)
  run_dir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, run_dir)
  run = workdir.load_run(run_dir)
  assert isinstance(run.state, state_lib.EmaTrainState)
  predictor = predict.Predictor.from_workdir(run_dir)
  for got, want in zip(jax.tree.leaves(predictor.variables),
                       jax.tree.leaves(run.state.ema)):
    np.testing.assert_array_equal(got, want)
  with open(tmp_path / 'run' / 'results.json') as f:
    assert json.load(f)['final_test_accuracy'] == results['final_test_accuracy']
  # The Predictor scores the test split as the run's evaluation did.
  ds = data.load(config)
  accuracy = float(np.mean(
      predictor.predict_proba(ds.test_images[..., 0]).argmax(-1)
      == ds.test_labels))
  assert accuracy == pytest.approx(results['final_test_accuracy'])
