"""Optimizer and learning-rate schedule."""

from budget import CPU_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'optimizer',
    'base': CPU_BUDGET,
    'variants': {
        'sgd 0.05 constant (seed)': {},
        'sgd 0.05 cosine': {'schedule': 'cosine'},
        'momentum 0.01 cosine': {'optimizer': 'momentum',
                                 'learning_rate': 0.01, 'schedule': 'cosine'},
        'nesterov 0.01 one-cycle': {'optimizer': 'nesterov',
                                    'learning_rate': 0.01,
                                    'schedule': 'one-cycle'},
        'adam 1e-3 cosine': {'optimizer': 'adam', 'learning_rate': 1e-3,
                             'schedule': 'cosine'},
    },
    'seeds': [0, 1, 2],
}
