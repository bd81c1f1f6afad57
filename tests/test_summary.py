"""Study tables: means with their 95% confidence intervals, on validation
where the runs hold it out."""

import csv
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / 'experiments'))
import summary  # pylint: disable=g-import-not-at-top,wrong-import-position

STUDY = {'name': 'toy', 'seeds': [0, 1, 2],
         'variants': {'a': {'width': 0.5}, 'b': {}, 'single': {'depth': 3}}}


def _res(test, val=None, seconds=10.0):
  res = {'final_test_accuracy': test, 'train_seconds': seconds}
  if val is not None:
    res['final_val_accuracy'] = val
  return res


def test_ci95_is_students_t_interval():
  # n = 3: t(0.975, 2) = 4.3027; std 0.002 -> 4.3027 * 0.002 / sqrt(3).
  assert summary.ci95([0.990, 0.992, 0.994]) == pytest.approx(0.0049683,
                                                              rel=1e-4)
  assert summary.ci95([0.5, 0.7]) == pytest.approx(12.7062 * 0.1414214 / 2**0.5,
                                                  rel=1e-4)
  assert summary.ci95([0.99]) != summary.ci95([0.99])  # NaN


def test_test_split_table_has_mean_std_and_interval(tmp_path):
  found = {'a': [(0, _res(0.990)), (1, _res(0.992)), (2, _res(0.994))],
           'b': [(0, _res(0.980)), (1, _res(0.990))],
           'single': [(0, _res(0.970))]}
  rows = summary.write(STUDY, str(tmp_path), found, {'epochs': 2})
  assert rows[0]['ci95_test_accuracy'] == pytest.approx(0.0049683, rel=1e-4)
  table = (tmp_path / 'summary.md').read_text()
  assert '| test accuracy (%) | 95% CI (%) |' in table
  assert '| 99.20 ± 0.20 | 98.70 - 99.70 |' in table
  assert '| 97.00 ± 0.00 | n/a |' in table
  assert (tmp_path / 'summary.png').stat().st_size > 0


def test_with_validation_the_table_reports_it_and_hides_the_test_set(tmp_path):
  found = {'a': [(0, _res(0.990, 0.995)), (1, _res(0.992, 0.997))],
           'b': [(0, _res(0.980, 0.985)), (1, _res(0.990, 0.987))],
           'single': []}
  rows = summary.write(STUDY, str(tmp_path), found, {})
  table = (tmp_path / 'summary.md').read_text()
  assert '| validation accuracy (%) |' in table
  assert '| 99.60 ± 0.14 |' in table
  assert '99.10' not in table  # Variant a's test mean.
  assert rows[0]['mean_val_accuracy'] == pytest.approx(0.996)
  with open(tmp_path / 'runs.csv', newline='') as f:
    runs = list(csv.DictReader(f))
  assert [float(r['final_test_accuracy']) for r in runs] == [
      0.990, 0.992, 0.980, 0.990]


def test_a_study_is_tabulated_again_from_its_runs_csv(tmp_path):
  found = {'a': [(0, _res(0.990, 0.995)), (1, _res(0.992, 0.997))],
           'b': [(0, _res(0.980, 0.985))], 'single': []}
  for seeds in found.values():
    for _, res in seeds:
      res['robustness_accuracy'] = {'rotated': 0.9, 'noisy': 0.8}
  summary.write(STUDY, str(tmp_path), found, {'epochs': 2})
  before = {name: (tmp_path / name).read_text()
            for name in ('summary.md', 'summary.csv', 'runs.csv')}
  again = summary.read_runs_csv(str(tmp_path), STUDY['variants'])
  assert again == {label: [(seed, {**res, 'train_seconds': 10.0})
                           for seed, res in seeds]
                   for label, seeds in found.items()}
  summary.write(STUDY, str(tmp_path), again, {'epochs': 2})
  assert before == {name: (tmp_path / name).read_text() for name in before}
  with pytest.raises(FileNotFoundError):
    summary.read_runs_csv(str(tmp_path / 'none'), STUDY['variants'])


def test_without_matplotlib_the_tables_are_written_and_no_plot(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import fails
  found = {'a': [(0, _res(0.990))], 'b': [(0, _res(0.980))], 'single': []}
  summary.write(STUDY, str(tmp_path), found, {})
  assert (tmp_path / 'summary.md').exists()
  assert (tmp_path / 'runs.csv').exists()
  assert not (tmp_path / 'summary.png').exists()
  assert 'no summary.png' in capsys.readouterr().err
