"""The recipe search's thirteenth round: the literature's recipe, on validation.

    python experiments/runner.py experiments/search_literature.py \
        --root=runs/studies --set=manual_dir=../shared/data/mnist \
        --keep_freed_memory

Sized for an accelerator: `--preset=literature` (Matuzas77/MNIST-0.17's
network and training, models.SEBlocksCNN) costs hours a run on a 2-core CPU
(BENCHMARKS.md). Its 'literature' runs have the preset's flags, with no
weight decay (the original has none), under FULL_SEARCH_BUDGET's split
(55,000 training images, 5,000 held-out validation images; the test set is
not shown) but the literature's 20 epochs. The 'preset best' runs have the
flags of search_elastic's 'elastic' runs; their rows come from that study's
runs.csv.

Decided before the runs: the literature's recipe becomes `--preset=best` if
its mean validation accuracy is higher, it is lower on neither seed, and the
noisy robustness set stays at or above 90%.
"""

from mnist_flax import presets  # pylint: disable=g-bad-import-order
# The preset the ninth round chose (its 'elastic' variant), as the tenth
# round started from it.
from search_smoothing import STARTING_POINT  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'search_literature',
    'base': STARTING_POINT,
    'variants': {
        'preset best': {},
        'literature': {**presets.PRESETS['literature'], 'weight_decay': 0.0},
    },
    'seeds': [0, 1],
}
