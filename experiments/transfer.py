"""Transfer learning: from scratch vs fine-tuned from a pretrained run.

Three transfers, each at 1%, 10% and 100% of the target's training labels:
MNIST -> Fashion-MNIST, Fashion-MNIST -> MNIST, and digits 0-4 -> digits 5-9.
The sources train once (the study's 'pretrain' runs); a transfer run starts
from its source's checkpoint with a fresh head (--reinit_head) and trains
everything (--finetune=full), at the same budget as the run from scratch.

Budget for the 2-core CPU: sources 1 epoch; targets 10 epochs at 1%, 2 at 10%
and 1 at 100% (6,000, 12,000 and 60,000 images seen; about 29,000 for digits
5-9 at 100%), one test evaluation at the end.

    python experiments/runner.py experiments/transfer.py --root=runs/studies \
        --set=manual_dir=../shared/data/{dataset}

Writes summary.{md,csv,png}, transfer.md (scratch vs transfer side by side,
with the gain) and transfer.png (test accuracy against the label fraction, one
line per method, one panel per transfer).
"""

import math
import os

TRANSFERS = {  # name: (source pretrain run, target flags)
    'mnist to fashion': ('mnist', {'dataset': 'fashion_mnist'}),
    'fashion to mnist': ('fashion', {'dataset': 'mnist'}),
    'digits 0-4 to 5-9': ('digits0-4', {'dataset': 'mnist',
                                      'classes': '5,6,7,8,9'}),
}
# Label fraction (%) -> (training examples of a 60,000 / ~29,400 set, epochs).
FRACTIONS = {1: (600, 294, 10), 10: (6000, 2940, 2), 100: (0, 0, 1)}
METHODS = {
    'scratch': {},
    'transfer': {'init_from': '@{source}', 'reinit_head': True,
                 'finetune': 'full'},
}

VARIANTS = {}
for transfer, (source, target) in TRANSFERS.items():
  for fraction, (full, half, epochs) in FRACTIONS.items():
    for method, flags in METHODS.items():
      label = f'{transfer} {fraction}% {method}'
      VARIANTS[label] = {
          **target, **{k: v.format(source=source) if isinstance(v, str) else v
                       for k, v in flags.items()},
          'train_examples': half if 'classes' in target else full,
          'epochs': epochs, 'eval_every': epochs}


def report(rows, out_dir):
  """transfer.md and transfer.png: where transfer helps, and by how much."""
  by_label = {r['variant']: r for r in rows}

  def cell(label):
    r = by_label[label]
    if not r['runs']:
      return 'not run'
    half = ('n/a' if math.isnan(r['ci95_test_accuracy'])
            else f'{100 * r["ci95_test_accuracy"]:.2f}')
    return (f'{100 * r["mean_test_accuracy"]:.2f} ± '
            f'{100 * r["std_test_accuracy"]:.2f} ({r["runs"]}; ± {half})')

  lines = ['# Transfer: test accuracy (%), mean ± std (runs; half-width of '
           'the 95% confidence interval of the mean)', '',
           '| transfer | labels | scratch | transfer | gain (points) |',
           '|---|---|---|---|---|']
  for transfer in TRANSFERS:
    for fraction in FRACTIONS:
      scratch, tuned = (f'{transfer} {fraction}% {m}' for m in METHODS)
      gain = ''
      if by_label[scratch]['runs'] and by_label[tuned]['runs']:
        gain = 100 * (by_label[tuned]['mean_test_accuracy'] -
                      by_label[scratch]['mean_test_accuracy'])
        gain = f'{gain:+.2f}'
      lines.append(f'| {transfer} | {fraction}% | {cell(scratch)} | '
                   f'{cell(tuned)} | {gain} |')
  with open(os.path.join(out_dir, 'transfer.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  plot(by_label, out_dir)


def plot(by_label, out_dir):
  """transfer.png: accuracy against label fraction, a line per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(TRANSFERS), figsize=(5 * len(TRANSFERS), 4))
  for ax, transfer in zip(axes, TRANSFERS):
    for method in METHODS:
      points = [(f, by_label[f'{transfer} {f}% {method}']) for f in FRACTIONS]
      points = [(f, r) for f, r in points if r['runs']]
      if not points:
        continue
      ax.errorbar([f for f, _ in points],
                  [100 * r['mean_test_accuracy'] for _, r in points],
                  yerr=[100 * r['std_test_accuracy'] for _, r in points],
                  marker='o', capsize=4, label=method)
    ax.set_xscale('log')
    ax.set_xticks(list(FRACTIONS), [f'{f}%' for f in FRACTIONS])
    ax.set(title=transfer, xlabel='target training labels',
           ylabel='test accuracy (%)')
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'transfer.png'), dpi=100)
  plt.close(fig)


STUDY = {
    'name': 'transfer',
    'base': {'robustness_examples': 0},
    'pretrain': {
        'mnist': {'dataset': 'mnist', 'epochs': 1},
        'fashion': {'dataset': 'fashion_mnist', 'epochs': 1},
        'digits0-4': {'dataset': 'mnist', 'classes': '0,1,2,3,4',
                      'epochs': 1},
    },
    'variants': VARIANTS,
    'seeds': [0, 1, 2],
    'report': report,
}
