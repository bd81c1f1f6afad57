"""Width multiplier, depth and the global-average-pool head."""

from budget import ABLATION_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'width_depth',
    'base': ABLATION_BUDGET,
    'variants': {
        'width 0.25': {'width': 0.25},
        'width 0.5': {'width': 0.5},
        'width 1 (seed)': {},
        'depth 3': {'depth': 3},
        'depth 4': {'depth': 4},
        'gap head': {'head': 'gap'},
    },
    'seeds': [0, 1, 2],
}
