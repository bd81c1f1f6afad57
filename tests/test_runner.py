import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / 'experiments'))
import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

STUDY = '''
STUDY = {
    'name': 'tiny',
    'base': {'epochs': 1, 'width': 0.25, 'eval_batch_size': 8,
             'log_every_s': 1000.0},
    'variants': {'seed': {}, 'no BN': {'batchnorm': 'none'}},
    'seeds': [0, 1],
}
'''


def _runner(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, str(REPO / 'experiments' / 'runner.py'),
                         *map(str, args)], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=600)


def test_summary_only_without_finished_runs_keeps_the_tables(tmp_path):
  study = tmp_path / 'tiny.py'
  study.write_text(STUDY)
  out = tmp_path / 'runs' / 'tiny'
  out.mkdir(parents=True)
  (out / 'summary.md').write_text('the committed table')
  result = _runner(study, f'--root={tmp_path / "runs"}', '--summary_only')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      'error: no finished runs of tiny')
  assert (out / 'summary.md').read_text() == 'the committed table'


@pytest.mark.slow
def test_runner_runs_skips_and_tabulates_a_tiny_grid(tmp_path, idx_folder):
  study = tmp_path / 'tiny.py'
  study.write_text(STUDY)
  common = [study, f'--root={tmp_path / "runs"}', f'--set=manual_dir={idx_folder}',
            '--set=verify_checksums=false']
  overrides = {'manual_dir': str(idx_folder), 'verify_checksums': False}
  runner.run_study(str(study), str(tmp_path / 'runs'), overrides)  # In-process.
  out = tmp_path / 'runs' / 'tiny'
  table = (out / 'summary.md').read_text()
  assert '| seed |' in table and '| no BN |' in table and ' ± ' in table
  csv_lines = (out / 'summary.csv').read_text().splitlines()
  assert csv_lines[0] == ('variant,runs,mean_test_accuracy,std_test_accuracy,'
                          'ci95_test_accuracy,mean_rotated_accuracy,mean_shifted_accuracy,'
                          'mean_scaled_accuracy,mean_noisy_accuracy')
  assert '| rotated (%) |' in table
  assert all(line.split(',')[1] == '2' for line in csv_lines[1:])
  assert (out / 'summary.png').stat().st_size > 0
  assert len((out / 'runs.csv').read_text().splitlines()) == 1 + 4
  results = out / 'no_BN' / 'seed1' / 'results.json'
  mtime = results.stat().st_mtime
  again = _runner(*common)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count('[skip]') == 4
  assert results.stat().st_mtime == mtime
  commands = _runner(*common, '--print_commands').stdout.splitlines()
  assert len(commands) == 4
  assert all(c.startswith('python main.py --workdir=') for c in commands)
  # Seed by seed: every variant at seed 0, then at seed 1.
  assert '--batchnorm=none' in commands[1] and '--seed=1' in commands[2]


def test_runner_refuses_a_bad_flag_in_one_line(tmp_path):
  study = tmp_path / 'bad.py'
  study.write_text(STUDY.replace("{'batchnorm': 'none'}",
                                 "{'batchnorm': 'sideways'}"))
  proc = _runner(study, f'--root={tmp_path}')
  assert proc.returncode == 2
  assert "--batchnorm='sideways' is not valid" in proc.stderr.splitlines()[-1]


def test_from_runs_csv_tabulates_a_committed_study_and_refuses_a_missing_one(
    tmp_path):
  study = tmp_path / 'tiny.py'
  study.write_text(STUDY)
  out = tmp_path / 'tiny'
  out.mkdir()
  (out / 'runs.csv').write_text(
      'variant,seed,final_test_accuracy,train_seconds,noisy_accuracy\n'
      'seed,0,0.95,10.0,0.9\nseed,1,0.97,11.0,0.8\nno BN,0,0.96,9.0,0.7\n')
  proc = _runner(study, f'--root={tmp_path}', '--from_runs_csv')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'seed: test 96.00 ± 1.41, 95% CI ± 12.71 (2 runs)' in proc.stdout
  table = (out / 'summary.md').read_text()
  assert '| seed | `{}` | 2 | 96.00 ± 1.41 | 83.29 - 100.00 | 85.00 |' in table
  proc = _runner(study, f'--root={tmp_path / "elsewhere"}', '--from_runs_csv')
  assert proc.returncode == 2
  assert proc.stderr.splitlines()[-1].startswith('error: --from_runs_csv: ')


@pytest.mark.slow
def test_pretrain_runs_first_and_variants_start_from_them(tmp_path,
                                                          idx_folder):
  study = tmp_path / 'pre.py'
  study.write_text('''
STUDY = {
    'name': 'pre',
    'base': {'epochs': 1, 'width': 0.25, 'eval_batch_size': 8,
             'log_every_s': 1000.0, 'robustness_examples': 0},
    'pretrain': {'source': {'classes': '0,1,2,3,4'}},
    'variants': {'scratch': {'classes': '5,6,7,8,9'},
                 'transfer': {'classes': '5,6,7,8,9', 'init_from': '@source',
                              'finetune': 'linear'}},
    'seeds': [0],
}
''')
  root = tmp_path / 'runs'
  runner.run_study(str(study), str(root), {
      'manual_dir': str(idx_folder), 'verify_checksums': False})
  source = root / 'pre' / 'pretrain' / 'source'
  assert (source / 'results.json').exists()
  report = json.loads(
      (root / 'pre' / 'transfer' / 'seed0' / 'init_from.json').read_text())
  assert report['source'] == str(source.resolve())
  assert not (root / 'pre' / 'scratch' / 'seed0' / 'init_from.json').exists()


@pytest.mark.slow
def test_pack_seeds_trains_a_variant_as_one_num_models_run(tmp_path,
                                                           idx_folder):
  study = tmp_path / 'tiny.py'
  study.write_text(STUDY)
  root = tmp_path / 'runs'
  rows = runner.run_study(str(study), str(root), {
      'manual_dir': str(idx_folder), 'verify_checksums': False,
      'robustness_examples': 8}, pack_seeds=True)
  packed = root / 'tiny' / 'no_BN' / 'seeds0-1'
  config = json.loads((packed / 'config.json').read_text())
  assert (config['num_models'], config['seed']) == (2, 0)
  assert not (root / 'tiny' / 'no_BN' / 'seed0').exists()
  res = json.loads((packed / 'results.json').read_text())
  # Each model counts as its seed's run, with its own accuracies.
  row = {r['variant']: r for r in rows}['no BN']
  assert row['runs'] == 2
  assert row['mean_test_accuracy'] == (
      sum(res['model_final_test_accuracy']) / 2)
  assert row['mean_rotated_accuracy'] == (
      sum(res['model_robustness_accuracy']['rotated']) / 2)
