"""Accuracy cost of --dtype=bfloat16 (compute in bf16, params in fp32)."""

from budget import CPU_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'precision',
    'base': CPU_BUDGET,
    'variants': {
        'float32 (seed)': {},
        'bfloat16': {'dtype': 'bfloat16'},
    },
    'seeds': [0, 1, 2],
}
