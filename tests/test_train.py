import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SMALL_MODEL, synthetic_digits, tiny_config
from mnist_flax import checkpointing
from mnist_flax import data
from mnist_flax import models
from mnist_flax import evaluation
from mnist_flax import state as state_lib
from mnist_flax import steps
from mnist_flax import train
from mnist_flax import workdir
from mnist_flax.config import Config
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError
from mnist_flax.errors import DivergenceError


def _state(config=Config(**SMALL_MODEL), num_classes=10, seed=0):
  model = models.create_model(config, num_classes)
  create = functools.partial(state_lib.create_train_state, config, model,
                             image_shape=(28, 28, 1))
  return jax.jit(create)(jax.random.PRNGKey(seed))  # One compile, not eager.


def test_train_step_lowers_the_loss_on_a_fixed_batch():
  images, labels = synthetic_digits(16, seed=0)
  x, y = jnp.asarray(images[..., None]), jnp.asarray(labels.astype(np.int32))
  state = _state()
  step = jax.jit(steps.train_step)
  state, first = step(state, x, y)
  for _ in range(10):
    state, last = step(state, x, y)
  assert float(last['loss']) < 0.5 * float(first['loss'])
  assert int(state.step) == 11


def test_evaluate_counts_a_hand_made_case_exactly():
  # 5 examples, batch 2: the last batch is padded and the padding ignored.
  labels = jnp.array([0, 1, 2, 1, 0], jnp.int32)
  preds = np.array([0, 1, 1, 1, 2])  # 3 of 5 right.
  logits = jnp.asarray(np.eye(3)[preds] * 5.0, jnp.float32)
  images = jnp.arange(5, dtype=jnp.uint8)[:, None, None, None] * jnp.ones(
      (5, 28, 28, 1), jnp.uint8)

  def apply_fn(variables, x, train):  # Image i (normalised) -> logits[i].
    del variables, train
    return logits[jnp.round(x[:, 0, 0, 0] * 255).astype(jnp.int32)]

  state = _state().replace(apply_fn=apply_fn)
  result = evaluation.evaluate(state, images, labels, batch_size=2)
  assert result.accuracy == pytest.approx(0.6)
  np.testing.assert_array_equal(result.preds, preds)
  want_loss = np.mean([
      -jax.nn.log_softmax(logits[i])[labels[i]] for i in range(5)])
  assert result.loss == pytest.approx(float(want_loss), rel=1e-5)


@pytest.mark.slow
def test_whole_loop_under_tfds_mock_data(tmp_path, mock_tfds):
  config = Config(epochs=1, batch_size=8, eval_batch_size=8, log_every_s=1e3,
                  robustness_examples=0, **SMALL_MODEL)
  with mock_tfds(num_examples=24):
    results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['num_test_examples'] == 24
  assert 0.0 <= results['final_test_accuracy'] <= 1.0
  rows = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert [r['epoch'] for r in rows] == [1]


def _final_params(workdir, config):
  state = _state(config)
  ckpt = checkpointing.Checkpointer(str(workdir))
  epoch, state, history = ckpt.restore_latest(state)
  ckpt.close()
  return epoch, state, history


_TIMING = ('seconds', 'train_images_per_s')


def _without_timing(history):
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in history]


def test_resume_from_an_earlier_checkpoint_is_bitwise_identical(
    tmp_path, idx_folder):
  config = tiny_config(idx_folder, epochs=3)
  full = tmp_path / 'full'
  train.train_and_evaluate(config, str(full))

  # Make a run that was interrupted after epoch 2: drop epoch 3's checkpoint.
  resumed = tmp_path / 'resumed'
  shutil.copytree(full, resumed)
  shutil.rmtree(resumed / 'checkpoints' / '3')
  (resumed / 'results.json').unlink()
  train.train_and_evaluate(config, str(resumed))

  e1, s1, h1 = _final_params(full, config)
  e2, s2, h2 = _final_params(resumed, config)
  assert e1 == e2 == 3
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _without_timing(h1) == _without_timing(h2)
  rows = [json.loads(l) for l in (resumed / 'metrics.jsonl').open()]
  assert _without_timing(rows) == _without_timing(h1)
  r1 = json.loads((full / 'results.json').read_text())
  r2 = json.loads((resumed / 'results.json').read_text())
  assert r1['confusion_matrix'] == r2['confusion_matrix']


@pytest.mark.slow
def test_rerunning_a_finished_run_trains_nothing_more(tmp_path, idx_folder):
  config = tiny_config(idx_folder, epochs=1)
  first = train.train_and_evaluate(config, str(tmp_path / 'run'))
  again = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert again['final_test_accuracy'] == first['final_test_accuracy']
  assert again['epochs'] == 1


def test_a_run_refused_for_its_flags_leaves_no_config_to_refuse_the_rerun(
    tmp_path, idx_folder):
  run = tmp_path / 'run'
  with pytest.raises(ConfigError, match='exceeds the 96 training examples'):
    train.train_and_evaluate(tiny_config(idx_folder, batch_size=128), str(run))
  assert not (run / 'config.json').exists()
  train.train_and_evaluate(tiny_config(idx_folder, epochs=1), str(run))
  assert (run / 'results.json').exists()


def test_checkpoints_without_a_config_are_refused_unless_restart(tmp_path):
  run = tmp_path / 'run'
  (run / 'checkpoints' / '2').mkdir(parents=True)
  with pytest.raises(CheckpointError, match='holds checkpoints but no config'):
    workdir.prepare_workdir(Config(), str(run), restart=False)
  assert not (run / 'config.json').exists()
  workdir.prepare_workdir(Config(), str(run), restart=True)
  assert list(tmp_path.glob('run.old-*/checkpoints/2'))  # Moved, not lost.
  assert run.is_dir() and not list(run.iterdir())


@pytest.mark.slow
def test_a_different_config_is_refused_unless_restart(tmp_path, idx_folder):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(idx_folder, epochs=1), workdir)
  with pytest.raises(CheckpointError, match=r'learning_rate: 0.05 -> 0.1'):
    train.train_and_evaluate(
        tiny_config(idx_folder, epochs=1, learning_rate=0.1), workdir)
  res = train.train_and_evaluate(
      tiny_config(idx_folder, epochs=1, learning_rate=0.1), workdir,
      restart=True)
  assert res['epochs'] == 1
  assert list(tmp_path.glob('run.old-*/metrics.jsonl'))  # Moved, not lost.


@pytest.mark.slow
def test_divergence_stops_with_epoch_and_step(tmp_path, idx_folder):
  with pytest.raises(DivergenceError,
                     match=r'at epoch 1, step \d+; no checkpoint was written'):
    train.train_and_evaluate(
        tiny_config(idx_folder, epochs=2, learning_rate=1e6, batchnorm='none'),
        str(tmp_path / 'run'))
  assert not list((tmp_path / 'run' / 'checkpoints').glob('[0-9]*'))


@pytest.mark.slow
def test_skip_nonfinite_keeps_the_run_alive_and_counts(tmp_path, idx_folder):
  results = train.train_and_evaluate(
      tiny_config(idx_folder, epochs=1, learning_rate=1e6, batchnorm='none',
                  skip_nonfinite=True), str(tmp_path / 'run'))
  rows = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert rows[0]['skipped_steps'] >= 1
  _, state, _ = _final_params(tmp_path / 'run', tiny_config(
      idx_folder, batchnorm='none'))
  assert all(np.isfinite(np.asarray(x)).all()
             for x in jax.tree.leaves(state.params))
  assert results['epochs'] == 1


def _garble(path):
  raw = bytearray(path.read_bytes())
  for i in range(0, len(raw), 7):
    raw[i] ^= 0x5A
  path.write_bytes(bytes(raw))


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['truncate', 'garble'])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(
    tmp_path, idx_folder, damage, caplog):
  config = tiny_config(idx_folder, epochs=2)
  full = tmp_path / 'full'
  train.train_and_evaluate(config, str(full))
  broken = tmp_path / 'broken'
  shutil.copytree(full, broken)
  files = sorted(p for p in (broken / 'checkpoints' / '2' / 'state').rglob('*')
                 if p.is_file() and p.stat().st_size > 1000)
  assert files
  for path in files:
    if damage == 'truncate':
      path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 3])
    else:
      _garble(path)
  train.train_and_evaluate(config, str(broken))  # Retrains epoch 2.
  assert 'checkpoint of epoch 2 is unreadable' in caplog.text
  _, s1, h1 = _final_params(full, config)
  _, s2, h2 = _final_params(broken, config)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _without_timing(h1) == _without_timing(h2)


@pytest.mark.slow
def test_all_checkpoints_corrupt_is_refused_not_trained_over(
    tmp_path, idx_folder):
  config = tiny_config(idx_folder, epochs=1)
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  for path in (tmp_path / 'run' / 'checkpoints').rglob('*'):
    if path.is_file() and path.stat().st_size > 1000:
      _garble(path)
  with pytest.raises(CheckpointError,
                     match='none of the checkpoints .* move that folder aside'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


@pytest.mark.slow
def test_scan_loop_matches_the_step_loop(tmp_path, idx_folder):
  # 96 examples / 16 = 6 steps per epoch: scans of 4 then 2 steps.
  step = train.train_and_evaluate(
      tiny_config(idx_folder, epochs=1, loop='step'), str(tmp_path / 'step'))
  scan = train.train_and_evaluate(
      tiny_config(idx_folder, epochs=1, loop='scan', scan_steps=4),
      str(tmp_path / 'scan'))
  assert scan['final_test_loss'] == pytest.approx(step['final_test_loss'],
                                                  rel=1e-4)
  rows = [json.loads(l) for l in (tmp_path / 'scan' / 'metrics.jsonl').open()]
  ref = [json.loads(l) for l in (tmp_path / 'step' / 'metrics.jsonl').open()]
  assert rows[0]['train_loss'] == pytest.approx(ref[0]['train_loss'], rel=1e-4)
  assert steps.resolve_loop('auto') == 'step'  # On CPU.


@pytest.mark.parametrize('overrides', [
    pytest.param(dict(optimizer='momentum', schedule='cosine'),
                 marks=pytest.mark.slow),
    pytest.param(dict(optimizer='nesterov', schedule='step',
                      weight_decay=5e-4), marks=pytest.mark.slow),
    pytest.param(dict(optimizer='adam', learning_rate=1e-3,
                      schedule='one-cycle', label_smoothing=0.1),
                 marks=pytest.mark.slow),
])
def test_optimizer_and_schedule_variants_train(overrides):
  config = Config(width=0.25, **overrides).validate()
  images, labels = synthetic_digits(16, seed=0)
  x, y = jnp.asarray(images[..., None]), jnp.asarray(labels.astype(np.int32))
  state = state_lib.create_train_state(
      config, models.create_model(config, 10), jax.random.PRNGKey(0),
      (28, 28, 1), total_steps=8)
  step = jax.jit(functools.partial(
      steps.train_step, label_smoothing=config.label_smoothing))
  state, first = step(state, x, y)
  for _ in range(6):
    state, last = step(state, x, y)
  assert float(last['loss']) < float(first['loss'])


def test_schedules_follow_their_shape():
  lr = lambda **kw: state_lib.make_schedule(Config(**kw), 100)
  assert lr(schedule='constant') == 0.05
  assert float(lr(schedule='cosine')(100)) == pytest.approx(0.0, abs=1e-9)
  assert float(lr(schedule='step')(80)) == pytest.approx(0.05 * 0.01)
  one_cycle = lr(schedule='one-cycle')
  assert float(one_cycle(30)) == pytest.approx(0.05, rel=1e-3)
  assert float(one_cycle(0)) < 0.01


@pytest.mark.slow
def test_eval_every_skips_test_evaluations_but_not_the_last(tmp_path,
                                                            idx_folder):
  config = tiny_config(idx_folder, epochs=3, eval_every=2, width=0.25,
                       robustness_examples=0)
  results = train.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').open()]
  assert ['test_accuracy' in r for r in rows] == [False, True, True]
  assert results['best_epoch'] in (2, 3)
  assert 'robustness_accuracy' not in results
  assert (tmp_path / 'curves.png').stat().st_size > 0


def test_best_checkpoint_follows_validation_not_test_accuracy(tmp_path):
  """Epoch 1 is best on validation, epoch 2 on test; `best` must be 1."""
  config = tiny_config(tmp_path, validation_examples=8, checkpoints_to_keep=1)
  state = _state(config)
  ckpt = workdir.checkpointer(str(tmp_path / 'run'), config)
  history = []
  for epoch, val, test in ((1, 0.9, 0.5), (2, 0.5, 0.9), (3, 0.4, 0.4)):
    history.append({'epoch': epoch, 'val_accuracy': val, 'test_accuracy': test})
    ckpt.save(epoch, state, history)
  ckpt.wait()
  assert ckpt.best_epoch() == 1
  assert ckpt.epochs() == [1, 3]  # The latest one, and the best.
  ckpt.close()
  test_chosen = workdir.checkpointer(str(tmp_path / 'run2'),
                                     tiny_config(tmp_path,
                                                 checkpoints_to_keep=1))
  for epoch in (1, 2, 3):
    test_chosen.save(epoch, state, history[:epoch])
  test_chosen.wait()
  assert test_chosen.best_epoch() == 2
  test_chosen.close()


@pytest.mark.slow
def test_validation_split_is_held_out_scored_and_chooses_best(tmp_path,
                                                               idx_folder):
  config = tiny_config(idx_folder, epochs=3, validation_examples=32)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  rows = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert all(0 <= r['val_accuracy'] <= 1 for r in rows)
  best = max(rows, key=lambda r: r['val_accuracy'])
  assert results['best_chosen_on'] == 'validation'
  assert results['best_epoch'] == best['epoch']
  assert results['best_test_accuracy'] == best['test_accuracy']
  assert results['final_val_accuracy'] == rows[-1]['val_accuracy']
  assert results['last5_mean_test_accuracy'] == pytest.approx(
      np.mean([r['test_accuracy'] for r in rows]))
  assert 'best_note' not in results
  ds = data.load(config)
  assert len(ds.train_labels) == 96 - 32 and len(ds.val_labels) == 32
  full = data.load(tiny_config(idx_folder))
  np.testing.assert_array_equal(ds.val_images, full.train_images[-32:])


@pytest.mark.slow
def test_without_validation_results_say_best_is_a_test_set_choice(
    tmp_path, idx_folder):
  results = train.train_and_evaluate(tiny_config(idx_folder, epochs=1),
                                     str(tmp_path / 'run'))
  assert results['best_chosen_on'] == 'test'
  assert 'not a fair estimate' in results['best_note']
