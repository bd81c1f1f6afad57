"""A study's tables and plot: per variant, the mean over seeds with its spread.

Each variant's final accuracy is given as mean ± std over its seeds and with
the 95% confidence interval of the mean (Student's t, n - 1 degrees of
freedom), so that a reader sees which differences the seeds can resolve.
Where every run holds out a validation split (--validation_examples), the
table reports validation accuracy, the split settings are chosen on; the test
set's figures stay in runs.csv. Otherwise it reports test accuracy.

Files in the study's folder: summary.md (the table), summary.csv (its rows),
runs.csv (every finished run) and summary.png (means with 95% intervals).
"""

import csv
import json
import math
import os
import statistics
import sys


def ci95(values: list[float]) -> float:
  """Half-width of the 95% confidence interval of the mean; NaN below 2."""
  if len(values) < 2:
    return float('nan')
  from scipy import stats  # pylint: disable=g-import-not-at-top
  t = stats.t.ppf(0.975, len(values) - 1)
  return float(t * statistics.stdev(values) / math.sqrt(len(values)))


def _stats(split: str, values: list[float]) -> dict[str, float]:
  return {
      f'mean_{split}_accuracy': statistics.mean(values) if values
                                else float('nan'),
      f'std_{split}_accuracy': statistics.stdev(values) if len(values) > 1
                               else 0.0,
      f'ci95_{split}_accuracy': ci95(values),
  }


def read_runs_csv(out: str, labels) -> dict[str, list[tuple[int, dict]]]:
  """`write`'s input rebuilt from the runs.csv it wrote in `out`, for the
  variants `labels` (in that order), so a committed study can be tabulated
  again without its workdirs."""
  path = os.path.join(out, 'runs.csv')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist')
  found = {label: [] for label in labels}
  with open(path, newline='') as f:
    for row in csv.DictReader(f):
      if row['variant'] not in found:
        continue
      res = {'train_seconds': float(row['train_seconds']),
             'robustness_accuracy': {}}
      for key, value in row.items():
        if not key.endswith('_accuracy') or value in ('', None):
          continue
        if key.startswith('final_'):
          res[key] = float(value)
        else:
          res['robustness_accuracy'][key[:-len('_accuracy')]] = float(value)
      found[row['variant']].append((int(row['seed']), res))
  return found


def _percent(x: float) -> str:
  return 'n/a' if math.isnan(x) else f'{100 * x:.2f}'


def write(study: dict, out: str, found: dict[str, list[tuple[int, dict]]],
          base: dict) -> list[dict]:
  """Writes the summary files for `found` (variant label -> [(seed,
  results.json)]); returns one row per variant."""
  results = [res for seeds in found.values() for _, res in seeds]
  split = ('val' if results and all('final_val_accuracy' in r for r in results)
           else 'test')
  rows, per_run, robust_sets = [], [], []
  for label, seeds in found.items():
    robust = {}
    for seed, res in seeds:
      per_run.append({'variant': label, 'seed': seed,
                      **{f'final_{s}_accuracy': res[f'final_{s}_accuracy']
                         for s in ('val', 'test')
                         if f'final_{s}_accuracy' in res},
                      'train_seconds': round(res['train_seconds'], 1),
                      **{f'{n}_accuracy': a for n, a in
                         res.get('robustness_accuracy', {}).items()}})
      for name, acc in res.get('robustness_accuracy', {}).items():
        robust.setdefault(name, []).append(acc)
        if name not in robust_sets:
          robust_sets.append(name)
    row = {'variant': label, 'runs': len(seeds)}
    if split == 'val':
      row.update(_stats('val', [r['final_val_accuracy'] for _, r in seeds]))
    row.update(_stats('test', [r['final_test_accuracy'] for _, r in seeds]))
    row.update({f'mean_{n}_accuracy': statistics.mean(v)
                for n, v in robust.items()})
    rows.append(row)
  for row in rows:  # Same columns in every row, for the CSV.
    for name in robust_sets:
      row.setdefault(f'mean_{name}_accuracy', float('nan'))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'summary.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out, 'runs.csv'), 'w', newline='') as f:
    fields = list(dict.fromkeys(k for r in per_run for k in r)) or ['variant']
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(per_run)
  _write_table(study, out, rows, split, robust_sets, base)
  try:
    _plot(study, out, rows, split)
  except ImportError as e:  # A bare accelerator host without matplotlib.
    print(f'no summary.png: {e}', file=sys.stderr)
  if 'report' in study:
    study['report'](rows, out)
  return rows


def _write_table(study, out, rows, split, robust_sets, base):
  name = 'validation' if split == 'val' else 'test'
  lines = [f'# Study: {study["name"]}', '',
           f'Base flags: `{json.dumps(base, sort_keys=True)}`; seeds '
           f'{study["seeds"]}; final-epoch {name} accuracy, mean ± std over '
           'seeds and the 95% confidence interval of the mean (t-based)'
           + ('; the test set is not shown, so that nothing is chosen on it '
              '(runs.csv has it)' if split == 'val' else '')
           + ('; then the mean accuracy on each robustness set '
              '(mnist_flax/robustness.py).' if robust_sets else '.'), '',
           f'| variant | flags | runs | {name} accuracy (%) | 95% CI (%) |'
           + ''.join(f' {n} (%) |' for n in robust_sets),
           '|---|---|---|---|---|' + '---|' * len(robust_sets)]
  for row in rows:
    flags = json.dumps(study['variants'][row['variant']], sort_keys=True)
    mean, half = row[f'mean_{split}_accuracy'], row[f'ci95_{split}_accuracy']
    interval = ('n/a' if math.isnan(half) else  # Clipped to [0, 100]%.
                f'{_percent(max(mean - half, 0.0))} - '
                f'{_percent(min(mean + half, 1.0))}')
    lines.append(f'| {row["variant"]} | `{flags}` | {row["runs"]} | '
                 f'{_percent(mean)} ± '
                 f'{_percent(row[f"std_{split}_accuracy"])} | {interval} |'
                 + ''.join(f' {_percent(row[f"mean_{n}_accuracy"])} |'
                           for n in robust_sets))
  with open(os.path.join(out, 'summary.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _plot(study, out, rows, split):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  means = [100 * r[f'mean_{split}_accuracy'] for r in rows]
  halves = [0.0 if math.isnan(r[f'ci95_{split}_accuracy'])
            else 100 * r[f'ci95_{split}_accuracy'] for r in rows]
  fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(rows), 4))
  ax.bar(range(len(rows)), means, yerr=halves, capsize=4)
  ax.set_xticks(range(len(rows)), [r['variant'] for r in rows], rotation=30,
                ha='right')
  lo = min((m for m, r in zip(means, rows) if r['runs']), default=0)
  ax.set_ylim(max(0, lo - 1), 100)
  name = 'validation' if split == 'val' else 'test'
  ax.set(ylabel=f'{name} accuracy (%), 95% CI',
         title=f'study: {study["name"]}')
  fig.tight_layout()
  fig.savefig(os.path.join(out, 'summary.png'), dpi=100)
  plt.close(fig)
