"""Width multiplier, depth and the global-average-pool head."""

STUDY = {
    'name': 'width_depth',
    'base': {'epochs': 3},
    'variants': {
        'width 0.25': {'width': 0.25},
        'width 0.5': {'width': 0.5},
        'width 1 (seed)': {},
        'depth 3': {'depth': 3},
        'depth 4': {'depth': 4},
        'depth 6': {'depth': 6},
        'gap head': {'head': 'gap'},
    },
    'seeds': [0, 1, 2],
}
