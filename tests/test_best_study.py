"""experiments/best.py: best.json in its documented shape, from real runs."""

import json
import sys

import pytest

from conftest import REPO, SMALL_MODEL

sys.path.insert(0, str(REPO / 'experiments'))
import best  # pylint: disable=g-import-not-at-top,wrong-import-position
import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

KEYS = {'seeds', 'test_accuracy', 'ensemble_size', 'ensemble_test_accuracy',
        'robustness_mean', 'train_seconds_per_run'}


def test_dataset_entry_has_the_documented_keys_and_means():
  results = [{'final_test_accuracy': a, 'train_seconds': t,
              'robustness_accuracy': {'rotated': r, 'noisy': n}}
             for a, t, r, n in ((0.99, 60.0, 0.9, 0.8), (0.98, 80.0, 0.7, 0.6))]
  entry = best.dataset_entry([0, 1], results, {'test': 0.995, 'rotated': 0.9})
  assert set(entry) == KEYS
  assert entry['test_accuracy'] == [0.99, 0.98]
  assert entry['ensemble_size'] == 2 and entry['ensemble_test_accuracy'] == 0.995
  assert entry['robustness_mean'] == pytest.approx({'rotated': 0.8,
                                                    'noisy': 0.7})
  assert entry['train_seconds_per_run'] == 70.0


@pytest.mark.slow
def test_the_study_writes_best_json_for_both_datasets(tmp_path, idx_folder):
  # The synthetic IDX folder stands in for both datasets' files.
  overrides = {'manual_dir': str(idx_folder), 'verify_checksums': False,
               'epochs': 1, 'batch_size': 16, 'eval_batch_size': 8,
               'robustness_examples': 8, 'log_every_s': 1000.0,
               **SMALL_MODEL}
  runner.run_study(str(REPO / 'experiments' / 'best.py'), str(tmp_path),
                   overrides)
  out = tmp_path / 'best'
  summary = json.loads((out / 'best.json').read_text())
  assert set(summary) == {'recipe', 'protocol', 'mnist', 'fashion_mnist'}
  assert summary['recipe'] == best.presets.PRESETS['best']
  for name in best.DATASETS:
    entry = summary[name]
    assert set(entry) == KEYS
    assert entry['seeds'] == best.SEEDS
    assert len(entry['test_accuracy']) == entry['ensemble_size'] == 3
    for seed, acc in zip(best.SEEDS, entry['test_accuracy']):
      res = json.loads((out / name / f'seed{seed}' / 'results.json')
                       .read_text())
      assert acc == res['final_test_accuracy']
    assert set(entry['robustness_mean']) == {'rotated', 'shifted', 'scaled',
                                             'noisy'}
    assert 0.0 <= entry['ensemble_test_accuracy'] <= 1.0
  table = (out / 'best.md').read_text()
  assert '| mnist | 3 |' in table and '| fashion_mnist | 3 |' in table
