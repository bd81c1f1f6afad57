"""Each augmentation op alone, and combinations, ranked on a validation split."""

from budget import ABLATION_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'augmentation',
    'base': ABLATION_BUDGET,
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
        # Zoom and shear added: the best preset's geometric op, then with its
        # low-rate noise.
        'affine(2,12,0.2,10)': {'augment': 'affine(2,12,0.2,10)'},
        'affine(2,12,0.2,10),noise(0.3,0.25)': {
            'augment': 'affine(2,12,0.2,10),noise(0.3,0.25)'},
    },
    'seeds': [0, 1, 2],
}
