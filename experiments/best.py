"""The best recipe (`--preset=best`): five seeds, each alone and as an ensemble.

    python experiments/runner.py experiments/best.py --root=runs/studies \
        '--set=manual_dir=../shared/data/{dataset}'

The goal: at least 99.7% test accuracy for a single model (mean of 3 seeds)
and at least 99.8% for an ensemble of 5. The recipe is config.PRESETS['best'];
its budget is in the preset's comment. Besides the runner's summary (each seed
alone, clean and robustness sets), writes best.md: the mean of seeds 0-2 and of
all five, and the ensemble of the five (the mean of their softmaxes, through
the Predictor API) on the clean test set and on each robustness set.
"""

import json
import os
import statistics

from mnist_flax import config as config_lib

SEEDS = [0, 1, 2, 3, 4]
VARIANT = 'best recipe'


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


def report(rows, out_dir):
  """best.md: single models (3 and 5 seeds) and the 5-seed ensemble."""
  del rows
  folder = os.path.join(out_dir, VARIANT.replace(' ', '_'))
  workdirs = [os.path.join(folder, f'seed{s}') for s in SEEDS]
  done = [w for w in workdirs if os.path.exists(os.path.join(w, 'results.json'))]
  if not done:
    return
  results = []
  for w in done:
    with open(os.path.join(w, 'results.json')) as f:
      results.append(json.load(f))
  sets = ['test'] + list(results[0].get('robustness_accuracy', {}))

  def accuracy(res, name):
    return (res['final_test_accuracy'] if name == 'test'
            else res['robustness_accuracy'][name])

  def mean_std(rs, name):
    values = [100 * accuracy(r, name) for r in rs]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2f} ± {std:.2f}'

  together = ensemble(done)
  lines = [f'# Best recipe: `--preset=best`', '',
           f'`{json.dumps(config_lib.PRESETS["best"], sort_keys=True)}`', '',
           'Accuracy (%) on the clean test set and the robustness sets '
           '(mnist_flax/robustness.py).', '',
           '| | ' + ' | '.join(sets) + ' |', '|---|' + '---|' * len(sets)]
  for label, rs in ((f'single model, seeds 0-{min(3, len(results)) - 1} '
                     '(mean ± std)', results[:3]),
                    (f'single model, all {len(results)} seeds (mean ± std)',
                     results)):
    lines.append(f'| {label} | ' + ' | '.join(mean_std(rs, n) for n in sets)
                 + ' |')
  lines.append(f'| ensemble of the {len(done)} (mean softmax) | '
               + ' | '.join(f'{100 * together[n]:.2f}' for n in sets) + ' |')
  lines += ['', 'Per seed (test %): ' + ', '.join(
      f'{100 * r["final_test_accuracy"]:.2f}' for r in results)
            + f'; training time per run {statistics.mean(r["train_seconds"] for r in results) / 60:.1f} min.']
  with open(os.path.join(out_dir, 'best.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


STUDY = {
    'name': 'best',
    'base': config_lib.PRESETS['best'],
    'variants': {VARIANT: {}},
    'seeds': SEEDS,
    'report': report,
}
