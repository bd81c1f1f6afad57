"""The best recipe (`--preset=best`) on MNIST and Fashion-MNIST, three seeds each.

    python experiments/runner.py experiments/best.py --root=runs/studies \
        '--set=manual_dir=../shared/data/{dataset}'

The recipe is presets.PRESETS['best'], its settings chosen on MNIST's
validation split only (experiments/search.py, search_capacity.py,
search_capacity_full.py, search_elastic.py); Fashion-MNIST, trained with the
same flags, shows whether it generalises. Each run trains on all 60,000
training images and is scored once, at its final epoch, on the test set.
Besides the runner's summary, writes in the study folder:

  best.json  {"recipe": {flags}, "protocol": "...", "mnist": {...},
             "fashion_mnist": {...}}, each dataset with "seeds",
             "test_accuracy" (per seed), "ensemble_size",
             "ensemble_test_accuracy" (the mean of the seeds' softmaxes,
             through the Predictor API), "robustness_mean" (each robustness
             set's accuracy, mean over seeds) and "train_seconds_per_run";
             accuracies as fractions.
  best.md    the same as a table.

and copies MNIST's seed-0 run (config, results, final checkpoint) to
results/models/best-mnist, the pretrained model the README loads, unless that
folder exists.
"""

import json
import math
import os
import statistics

import summary as summary_lib  # pylint: disable=g-bad-import-order
from mnist_flax import presets

SEEDS = [0, 1, 2]
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                             'results', 'models', 'best-mnist')
DATASETS = ('mnist', 'fashion_mnist')
PROTOCOL = (
    'Every setting was chosen on 5,000 validation images held out of '
    "MNIST's training set; each run then trains on all 60,000 training "
    'images and is scored once on the test set at its final epoch (no epoch '
    'or checkpoint is picked on the test set); the ensemble is the mean '
    'softmax of the seeds\' models.')


def ensemble(workdirs: list[str]) -> dict[str, float]:
  """Accuracy of the runs' mean softmax on the test set and robustness sets."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mnist_flax import data, robustness  # pylint: disable=g-import-not-at-top
  from mnist_flax.predict import Predictor  # pylint: disable=g-import-not-at-top
  from mnist_flax import workdir  # pylint: disable=g-import-not-at-top
  config = workdir.read_config(workdirs[0])
  ds = data.load(config)
  n = config.robustness_examples
  sets = {'test': ds.test_images}
  sets.update(robustness.build(ds.test_images[:n]))
  predictors = [Predictor.from_workdir(w) for w in workdirs]
  out = {}
  for name, x in sets.items():
    probs = np.mean([p.predict_proba(x[..., 0]) for p in predictors], axis=0)
    out[name] = float((probs.argmax(-1) == ds.test_labels[:len(x)]).mean())
  return out


def dataset_entry(seeds: list[int], results: list[dict],
                  together: dict[str, float]) -> dict:
  """best.json's entry for one dataset: its runs' results.json and the
  ensemble's accuracies (`ensemble`)."""
  robust = results[0].get('robustness_accuracy', {})
  return {
      'seeds': list(seeds),
      'test_accuracy': [r['final_test_accuracy'] for r in results],
      'ensemble_size': len(results),
      'ensemble_test_accuracy': together['test'],
      'robustness_mean': {
          name: statistics.mean(r['robustness_accuracy'][name]
                                for r in results) for name in robust},
      'train_seconds_per_run': statistics.mean(r['train_seconds']
                                               for r in results),
  }


def _half_width(accuracies: list[float]) -> str:
  half = summary_lib.ci95(accuracies)
  return 'n/a' if math.isnan(half) else f'± {100 * half:.2f}'


def _table(summary: dict) -> list[str]:
  names = [n for n in DATASETS if n in summary]
  sets = list(summary[names[0]]['robustness_mean'])
  lines = ['| dataset | seeds | test | 95% CI | '
           + ''.join(f'{s} | ' for s in sets)
           + 'ensemble test | train time per run |',
           '|---|---|---|---|' + '---|' * len(sets) + '---|---|']
  for name in names:
    e = summary[name]
    tests = [100 * a for a in e['test_accuracy']]
    std = statistics.stdev(tests) if len(tests) > 1 else 0.0
    lines.append(
        f'| {name} | {len(tests)} | {statistics.mean(tests):.2f} ± {std:.2f} | '
        f'{_half_width(e["test_accuracy"])} | '
        + ''.join(f'{100 * e["robustness_mean"][s]:.2f} | ' for s in sets)
        + f'{100 * e["ensemble_test_accuracy"]:.2f} | '
        f'{e["train_seconds_per_run"] / 60:.1f} min |')
  lines += ['', 'Per seed (test %): ' + '; '.join(
      f'{name} ' + ', '.join(f'{100 * a:.2f}' for a in summary[name]
                             ['test_accuracy']) for name in names) + '.']
  return lines


def report(rows, out_dir):
  """best.json and best.md for the finished seeds of each dataset."""
  del rows
  summary = {'recipe': presets.PRESETS['best'], 'protocol': PROTOCOL}
  for name in DATASETS:
    workdirs = [os.path.join(out_dir, name, f'seed{s}') for s in SEEDS]
    done = [(s, w) for s, w in zip(SEEDS, workdirs)
            if os.path.exists(os.path.join(w, 'results.json'))]
    if not done:
      continue
    results = []
    for _, w in done:
      with open(os.path.join(w, 'results.json')) as f:
        results.append(json.load(f))
    summary[name] = dataset_entry([s for s, _ in done], results,
                                  ensemble([w for _, w in done]))
  if not any(name in summary for name in DATASETS):
    return
  if 'mnist' in summary and 0 in summary['mnist']['seeds'] and (
      not os.path.exists(SHIPPED_MODEL)):
    from mnist_flax import workdir  # pylint: disable=g-import-not-at-top
    workdir.copy_run(os.path.join(out_dir, 'mnist', 'seed0'), SHIPPED_MODEL)
  with open(os.path.join(out_dir, 'best.json'), 'w') as f:
    json.dump(summary, f, indent=2)
    f.write('\n')
  lines = ['# Best recipe: `--preset=best`', '',
           f'`{json.dumps(summary["recipe"], sort_keys=True)}`', '',
           PROTOCOL, '',
           'Final-epoch accuracy (%) on the clean test set (mean ± std over '
           'seeds), the mean over seeds on each robustness set '
           '(mnist_flax/robustness.py), and the ensemble of the seeds.', '']
  with open(os.path.join(out_dir, 'best.md'), 'w') as f:
    f.write('\n'.join(lines + _table(summary)) + '\n')


STUDY = {
    'name': 'best',
    'base': presets.PRESETS['best'],
    'variants': {name: {'dataset': name} for name in DATASETS},
    'seeds': SEEDS,
    'report': report,
}
