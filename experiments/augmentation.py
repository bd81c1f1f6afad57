"""Each augmentation op alone, and a combination."""

from budget import CPU_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'augmentation',
    'base': CPU_BUDGET,
    'variants': {
        'none': {},
        'shift(2)': {'augment': 'shift(2)'},
        'rotate(12)': {'augment': 'rotate(12)'},
        'scale(0.1)': {'augment': 'scale(0.1)'},
        'elastic(34,4)': {'augment': 'elastic(34,4)'},
        'cutout(8)': {'augment': 'cutout(8)'},
        'noise(0.1)': {'augment': 'noise(0.1)'},
        # The geometric ops in one resampling: the combination to beat.
        'affine(2,12,0.1)': {'augment': 'affine(2,12,0.1)'},
        # The two best single ops of the first 24 runs, together.
        'shift(2),elastic(34,4)': {'augment': 'shift(2),elastic(34,4)'},
    },
    'seeds': [0, 1, 2],
}
