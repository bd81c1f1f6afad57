"""Each augmentation op alone, and a combination."""

# Budget that fits the 2-core CPU (about a minute a run): the first 10,000
# training images for 2 epochs, one test evaluation at the end, 2,000 images in
# each robustness set. Rerun with e.g. --set=train_examples=0 --set=epochs=30
# for the full recipe.
BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
          'robustness_examples': 2000}

STUDY = {
    'name': 'augmentation',
    'base': BUDGET,
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
    },
    'seeds': [0, 1, 2],
}
