"""main.py end to end, as a user runs it, on a tiny IDX dataset."""

import json
import os
import subprocess
import sys
import time

from absl import flags
import pytest

from conftest import REPO, SMALL_MODEL, tiny_config
from mnist_flax import flagging
from mnist_flax import train
from mnist_flax import workdir
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError, DataError

SMALL = [f'--{k}={v}' for k, v in SMALL_MODEL.items()]

ARTIFACTS = ('config.json', 'metrics.jsonl', 'results.json', 'curves.png',
             'confusion.png', 'misclassified.png')


def run_main(*args, timeout=300, python_options=(), extra_env=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu', **(extra_env or {}))
  return subprocess.run([sys.executable, *python_options, str(REPO / 'main.py'),
                         *args],
                        capture_output=True, text=True, timeout=timeout,
                        env=env, cwd=REPO)


def test_main_end_to_end_writes_every_artifact(tmp_path, idx_folder):
  """Parent folders are created, as `mkdir -p` would; the console shows the
  project's lines, not other libraries' INFO chatter."""
  workdir = tmp_path / 'runs' / 'new' / 'run'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--epochs=2', '--eval_batch_size=16',
                  '--log_every_s=0', *SMALL)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stderr.splitlines()
  assert lines[0].startswith('config: --manual_dir=')
  assert lines[-1].startswith('final test accuracy')
  assert not [l for l in lines if 'xla_bridge' in l or 'oneDNN' in l or
              'InitializeLog' in l or 'Constructing tf.data' in l], lines
  for name in ARTIFACTS:
    assert (workdir / name).stat().st_size > 0, name
  assert list(workdir.glob('events.out.tfevents.*'))
  assert sorted(os.listdir(workdir / 'checkpoints')) >= ['1', '2']
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').open()]
  assert [r['epoch'] for r in rows] == [1, 2]
  assert set(rows[0]) >= {'train_loss', 'train_accuracy', 'test_loss',
                          'test_accuracy', 'seconds', 'train_images_per_s'}
  results = json.loads((workdir / 'results.json').read_text())
  assert set(results['robustness_accuracy']) == {
      'rotated', 'shifted', 'scaled', 'noisy'}
  assert all(0 <= a <= 1 for a in results['robustness_accuracy'].values())
  assert len(results['confusion_matrix']) == 10
  assert sum(map(sum, results['confusion_matrix'])) == 40
  assert set(results['per_class_accuracy']) == {str(i) for i in range(10)}
  config = json.loads((workdir / 'config.json').read_text())
  assert config['epochs'] == 2 and config['learning_rate'] == 0.05
  # Progress inside each epoch, not silence.
  assert 'img/s  ETA epoch' in proc.stderr


def test_speedrun_preset_runs_without_plots_and_caches_its_programs(
    tmp_path, idx_folder):
  workdir, cache = tmp_path / 'run', tmp_path / 'xla'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--preset=speedrun',
                  '--batch_size=16', '--eval_batch_size=8',
                  f'--compilation_cache={cache}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr.splitlines()[-1].startswith('final test accuracy')
  assert 'tracked_metric' not in proc.stderr  # An expected orbax warning.
  results = json.loads((workdir / 'results.json').read_text())
  assert results['epochs'] == 2
  assert not list(workdir.glob('*.png'))
  assert json.loads((workdir / 'config.json').read_text())['arch'] == (
      'space_to_depth')
  assert len(list(cache.iterdir())) >= 3  # Init, the scans, evaluation.


@pytest.mark.slow
def test_notensorboard_run_never_imports_tensorflow(tmp_path, idx_folder):
  workdir = tmp_path / 'run'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--epochs=1', '--eval_batch_size=16',
                  '--robustness_examples=0', '--notensorboard', *SMALL,
                  '--keep_freed_memory', python_options=('-X', 'importtime'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  imported = [line.rsplit('|', 1)[-1].strip() for line in
              proc.stderr.splitlines() if line.startswith('import time:')]
  assert 'jax' in imported  # The importtime listing is there...
  assert 'tensorflow' not in imported  # ...and TensorFlow is not in it.
  assert not list(workdir.glob('events.out.tfevents.*'))
  assert (workdir / 'results.json').exists()


def _parse(*argv):
  """main.py's config flags parsed in-process, as config_from_flags sees them."""
  flag_values = flags.FlagValues()
  flagging.define_config_flags(flag_values)
  flag_values(['main.py', *argv])
  return flagging.config_from_flags(flag_values)


@pytest.mark.parametrize('flag, message', [
    ('--arch=resnet9000', "--arch='resnet9000' is not valid; choose one of: blocks, se_blocks, seed, space_to_depth"),
    ('--padding=FULL', "--padding='FULL' is not valid; choose one of: VALID, SAME"),
    ('--epochs=0', '--epochs must be a positive integer'),
    ('--batch_size=-4', '--batch_size must be a positive integer'),
    ('--dataset=cifar10', 'choose one of: mnist, fashion_mnist, kmnist'),
    ('--preset=fastest', "--preset='fastest' is not valid; choose one of: "
     'seed, speedrun'),
    ('--conv_impl=fft', "--conv_impl='fft' is not valid"),
    ('--eval_every=0', '--eval_every must be a positive integer'),
    ('--blocks=64,,64', "--blocks='64,,64' is not valid"),
    ('--blocks=8|8|8|8|8|8', 'has 6 blocks; at most 5 fit a 28x28 image'),
    ('--width=nan', '--width=nan must be a finite number'),
    ('--learning_rate=inf', '--learning_rate=inf must be a finite number'),
    ('--augment=shift(nan)', 'non-negative finite parameters'),
])
def test_bad_flags_are_refused_naming_the_flag(flag, message):
  with pytest.raises(ConfigError) as e:
    _parse(flag)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_a_bad_flag_gets_one_error_line_and_exit_2(tmp_path):
  proc = run_main(f'--workdir={tmp_path / "run"}', '--epochs=0')
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last == 'error: --epochs must be a positive integer, got 0'
  assert 'Traceback' not in proc.stderr
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('argv, message', [
    (['--learning_rate=abc'], "flag --learning_rate=abc: could not convert"),
    (['--nosuchflag'], "Unknown command line flag 'nosuchflag'"),
    (['extra'], 'unexpected arguments: extra'),
])
def test_flags_absl_cannot_parse_get_one_error_line_and_exit_2(
    tmp_path, argv, message):
  proc = run_main(f'--workdir={tmp_path / "run"}', *argv)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      line for line in proc.stderr.strip().splitlines() if message in line]
  assert proc.stderr.strip().startswith('error: ')
  assert not (tmp_path / 'run').exists()


def test_a_workdir_blocked_by_a_file_is_refused_and_the_file_kept(tmp_path):
  (tmp_path / 'runs').write_text('notes')
  with pytest.raises(ConfigError, match='cannot create it'):
    workdir.prepare_workdir(Config(), str(tmp_path / 'runs' / 'base'), False)
  assert (tmp_path / 'runs').read_text() == 'notes'


def test_bad_data_is_refused_naming_the_file(tmp_path, idx_folder):
  (idx_folder / 'train-images-idx3-ubyte.gz').write_bytes(b'\x1f\x8b\x08junk')
  with pytest.raises(DataError, match='train-images-idx3-ubyte.gz'):
    train.train_and_evaluate(tiny_config(idx_folder), str(tmp_path / 'run'))


def test_offline_without_manual_dir_fails_fast_with_one_line(tmp_path):
  """No network (every request goes to a proxy that refuses) and an empty
  tfds data_dir: one error line naming the dataset and --manual_dir."""
  env = dict(HTTPS_PROXY='http://127.0.0.1:9', HTTP_PROXY='http://127.0.0.1:9',
             https_proxy='http://127.0.0.1:9', http_proxy='http://127.0.0.1:9',
             NO_PROXY='', no_proxy='', TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  start = time.monotonic()
  proc = run_main(f'--workdir={tmp_path / "offline"}', '--epochs=1',
                  extra_env=env, timeout=120)
  assert time.monotonic() - start < 60
  assert proc.returncode == 2, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'mnist' in last, proc.stderr[-2000:]
  assert '--manual_dir=FOLDER' in last and 'Traceback' not in proc.stderr


def test_a_preset_sets_defaults_that_explicit_flags_override():
  config = _parse('--preset=speedrun', '--epochs=1', '--batch_size=16')
  assert (config.arch, config.optimizer, config.adam_b1) == (
      'space_to_depth', 'adam', 0.7)
  assert (config.epochs, config.batch_size) == (1, 16)
