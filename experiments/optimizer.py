"""Optimizer and learning-rate schedule."""

# Budget that fits the 2-core CPU (about a minute a run): the first 10,000
# training images for 2 epochs, one test evaluation at the end, 2,000 images in
# each robustness set. Rerun with e.g. --set=train_examples=0 --set=epochs=30
# for the full recipe.
BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
          'robustness_examples': 2000}

STUDY = {
    'name': 'optimizer',
    'base': BUDGET,
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
