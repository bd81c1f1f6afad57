"""benchmarks/device_check.py's opt-in study part, without a device."""

import argparse
import csv
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / 'benchmarks'))
import device_check  # pylint: disable=g-import-not-at-top,wrong-import-position


def _parts(tmp_path, dry_run=False):
  args = argparse.Namespace(dry_run=dry_run, idx_dir=str(tmp_path / 'idx'),
                            work_root=str(tmp_path / 'work'))
  return {p['name']: p for p in device_check.plan(args)}


def test_the_literature_round_is_opt_in_and_packs_its_seeds(tmp_path):
  for dry_run in (False, True):
    part = _parts(tmp_path, dry_run)['search_literature']
    assert part['opt_in']
    assert part['argv'][1:3] == ['experiments/runner.py',
                                 'experiments/search_literature.py']
    assert '--pack_seeds' in part['argv']
    assert ('--set=epochs=1' in part['argv']) == dry_run
  # No IDX files there: the part fails with the reason, not a traceback.
  assert 'no MNIST IDX files' in part['fail']
  others = [p for name, p in _parts(tmp_path).items()
            if name != 'search_literature']
  assert not any(p.get('opt_in') for p in others)


def test_the_literature_rounds_figures_leave_the_test_column_out(tmp_path):
  part = _parts(tmp_path)['search_literature']
  assert device_check.study_validation('', '', part) == {}
  (tmp_path / 'work' / 'search_literature').mkdir(parents=True)
  with open(part['study'] + '/runs.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['variant', 'seed', 'final_val_accuracy',
                     'final_test_accuracy', 'noisy_accuracy'])
    writer.writerow(['literature', '0', '0.998', '0.997', '0.99'])
  assert device_check.study_validation('', '', part) == {'runs': [
      {'variant': 'literature', 'seed': '0', 'final_val_accuracy': '0.998',
       'noisy_accuracy': '0.99'}]}
