"""The search for the best recipe, on MNIST's validation split.

    python experiments/runner.py experiments/search.py --root=runs/studies \
        --set=manual_dir=../shared/data/mnist

Each variant changes one thing of `--preset=best` (5 epochs here; see
budget.SEARCH_BUDGET) and is scored on 5,000 validation images held out of the
training set, so the table never shows the test set; settings that help
together become the preset. Candidates from the final-epoch results in the
literature: a moving average of the weights, zoom and shear, a last epoch on
clean images, Adam with a rate that decays to 1e-5 of its start, global
max+avg pooling and squeeze-excitation; noise augmentation is for the noisy
robustness set, which geometric augmentation alone leaves at about 45%.
About 27 runs of 5-8 minutes on the 2-core CPU.
"""

from budget import SEARCH_BUDGET  # pylint: disable=g-bad-import-order
from mnist_flax import config as config_lib

STUDY = {
    'name': 'search',
    'base': {**config_lib.PRESETS['best'], **SEARCH_BUDGET},
    'variants': {
        'preset best': {},
        'ema 0.999': {'ema_decay': 0.999},
        'zoom 0.2, shear 10': {'augment': 'affine(2,12,0.2,10)'},
        'clean last epoch': {'clean_epochs': 1},
        'noise 0.1 added': {'augment': 'affine(2,12,0.1),noise(0.1)'},
        'max+avg head': {'head': 'maxavg'},
        'squeeze-excite 4': {'squeeze_excite': 4},
        'width 1': {'width': 1.0},
        'adam 1e-3 exponential': {'optimizer': 'adam', 'learning_rate': 1e-3,
                                  'schedule': 'exponential'},
    },
    'seeds': [0, 1, 2],
}
