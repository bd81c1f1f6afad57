"""main.py end to end, as a user runs it, on a tiny IDX dataset."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

ARTIFACTS = ('config.json', 'metrics.jsonl', 'results.json', 'curves.png',
             'confusion.png', 'misclassified.png')


def run_main(*args, timeout=300, python_options=()):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, *python_options, str(REPO / 'main.py'),
                         *args],
                        capture_output=True, text=True, timeout=timeout,
                        env=env, cwd=REPO)


def test_main_end_to_end_writes_every_artifact(tmp_path, idx_folder):
  workdir = tmp_path / 'run'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--epochs=2', '--eval_batch_size=16',
                  '--log_every_s=0')
  assert proc.returncode == 0, proc.stderr[-3000:]
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


def test_notensorboard_run_never_imports_tensorflow(tmp_path, idx_folder):
  workdir = tmp_path / 'run'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--epochs=1', '--eval_batch_size=16',
                  '--robustness_examples=0', '--notensorboard',
                  '--keep_freed_memory', python_options=('-X', 'importtime'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  imported = [line.rsplit('|', 1)[-1].strip() for line in
              proc.stderr.splitlines() if line.startswith('import time:')]
  assert 'jax' in imported  # The importtime listing is there...
  assert 'tensorflow' not in imported  # ...and TensorFlow is not in it.
  assert not list(workdir.glob('events.out.tfevents.*'))
  assert (workdir / 'results.json').exists()


@pytest.mark.parametrize('flag, message', [
    ('--arch=resnet9000', "--arch='resnet9000' is not valid; choose one of: seed"),
    ('--padding=FULL', "--padding='FULL' is not valid; choose one of: VALID, SAME"),
    ('--epochs=0', '--epochs must be a positive integer'),
    ('--batch_size=-4', '--batch_size must be a positive integer'),
    ('--dataset=cifar10', 'choose one of: mnist, fashion_mnist, kmnist'),
    ('--preset=fastest', "--preset='fastest' is not valid; choose one of: "
     'seed, speedrun'),
    ('--conv_impl=fft', "--conv_impl='fft' is not valid"),
    ('--eval_every=0', '--eval_every must be a positive integer'),
])
def test_bad_flags_get_one_line_and_exit_2(tmp_path, flag, message):
  proc = run_main(f'--workdir={tmp_path / "run"}', flag)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr


def test_missing_workdir_parent_is_refused(tmp_path):
  proc = run_main(f'--workdir={tmp_path / "no" / "such" / "run"}')
  assert proc.returncode == 2
  assert 'parent folder' in proc.stderr.strip().splitlines()[-1]


def test_bad_data_exits_2_naming_the_file(tmp_path, idx_folder):
  (idx_folder / 'train-images-idx3-ubyte.gz').write_bytes(b'\x1f\x8b\x08junk')
  proc = run_main(f'--workdir={tmp_path / "run"}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums')
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'train-images-idx3-ubyte.gz' in last
  assert 'Traceback' not in proc.stderr


def test_a_preset_sets_defaults_that_explicit_flags_override(tmp_path,
                                                              idx_folder):
  workdir = tmp_path / 'run'
  proc = run_main(f'--workdir={workdir}', f'--manual_dir={idx_folder}',
                  '--noverify_checksums', '--preset=speedrun', '--epochs=1',
                  '--batch_size=16', '--eval_batch_size=8')
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = json.loads((workdir / 'config.json').read_text())
  assert (config['width'], config['depth'], config['optimizer']) == (
      0.25, 3, 'nesterov')
  assert (config['epochs'], config['batch_size']) == (1, 16)
