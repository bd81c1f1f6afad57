"""The listing's ambiguities: activation placement, BatchNorm and dropout."""

# Budget that fits the 2-core CPU (about a minute a run): the first 10,000
# training images for 2 epochs, one test evaluation at the end, 2,000 images in
# each robustness set. Rerun with e.g. --set=train_examples=0 --set=epochs=30
# for the full recipe.
BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
          'robustness_examples': 2000}

STUDY = {
    'name': 'listing',
    'base': BUDGET,
    'variants': {
        'seed (ReLU all, BN+dropout in head)': {},
        'ReLU after conv1 only (as listed)': {'conv_activation': 'first'},
        'BN after every conv': {'batchnorm': 'conv'},
        'no BN': {'batchnorm': 'none'},
        'no dropout': {'dropout': 0.0},
        'SAME padding': {'padding': 'SAME'},
    },
    'seeds': [0, 1, 2],
}
