"""Width multiplier, depth and the global-average-pool head."""

# Budget that fits the 2-core CPU (about a minute a run): the first 10,000
# training images for 2 epochs, one test evaluation at the end, 2,000 images in
# each robustness set. Rerun with e.g. --set=train_examples=0 --set=epochs=30
# for the full recipe.
BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
          'robustness_examples': 2000}

STUDY = {
    'name': 'width_depth',
    'base': BUDGET,
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
