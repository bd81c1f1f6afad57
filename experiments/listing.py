"""The listing's ambiguities: activation placement, BatchNorm and dropout."""

from budget import CPU_BUDGET  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'listing',
    'base': CPU_BUDGET,
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
