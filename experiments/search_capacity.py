"""The recipe search's second round: capacity, on MNIST's validation split.

    python experiments/runner.py experiments/search_capacity.py \
        --root=runs/studies --set=manual_dir=../shared/data/mnist \
        --keep_freed_memory

The first round (experiments/search.py) changed the training of a 0.30M-
parameter network; the final-epoch results above 99.7% in the literature come
from networks of 1.2M parameters and more, trained at batch 32. Each variant
changes one of those things of STARTING_POINT, the `--preset=best` that the
first round chose, under the same budget (budget.SEARCH_BUDGET: 5 epochs, 5,000
held-out validation images; the test set is not shown). Width scales every
layer: width 1 (1.2M parameters) has 4x the conv FLOPs of width 0.5 and took
1.9x its time a run on the 2-core CPU (BENCHMARKS.md).
"""

from budget import SEARCH_BUDGET  # pylint: disable=g-bad-import-order
import search  # pylint: disable=g-bad-import-order

# `--preset=best` as the first round left it: its starting point with what it
# chose, written out so that the study stays the same when the preset takes
# this round's result.
STARTING_POINT = {**search.STARTING_POINT, **search.CHOSEN}

STUDY = {
    'name': 'search_capacity',
    'base': {**STARTING_POINT, **SEARCH_BUDGET},
    'variants': {
        'preset best': {},
        'width 1': {'width': 1.0},
        # Four times the steps; the peak rate halved (square-root scaling).
        'batch 32': {'batch_size': 32, 'learning_rate': 0.05},
    },
    'seeds': [0, 1],
}
