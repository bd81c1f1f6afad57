"""Accuracy cost of --dtype=bfloat16 (compute in bf16, params in fp32).

Twice: with the seed recipe's constant rate, whose last-iterate noise (about
1.4 points over seeds at this budget, see the optimizer study) can hide a
small cost, and with the same SGD under cosine decay, which is steady to
about 0.05 points.
"""

from budget import CPU_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'precision',
    'base': CPU_BUDGET,
    'variants': {
        'float32 (seed)': {},
        'bfloat16': {'dtype': 'bfloat16'},
        'float32, cosine': {'schedule': 'cosine'},
        'bfloat16, cosine': {'dtype': 'bfloat16', 'schedule': 'cosine'},
    },
    'seeds': [0, 1, 2],
}
