"""The recipe search's twelfth round: squeeze-excitation, on validation.

    python experiments/runner.py experiments/search_se.py \
        --root=runs/studies --set=manual_dir=../shared/data/mnist \
        --keep_freed_memory

Matuzas77/MNIST-0.17, the best final-epoch single network in the literature
(99.75%), gates every conv's channels with squeeze-excitation (Hu et al.
2018: each channel rescaled by a gate computed from the whole feature map).
Its three blocks of 128-channel convs cost hours a run on the 2-core CPU; the
gates themselves cost little. This round adds `--squeeze_excite=8` to
`--preset=best` under FULL_SEARCH_BUDGET's split (55,000 training images,
5,000 held-out validation images; the test set is not shown). The 'preset
best' runs have the flags of search_elastic's 'elastic' runs; their rows come
from that study's runs.csv.

Decided before the runs: squeeze-excitation is adopted if the mean validation
accuracy is higher, it is lower on neither seed, and the noisy robustness set
stays at or above 90%. It scored 99.62% and 99.66% against the preset's
99.72% and 99.74%, so the preset keeps the plain convs (BENCHMARKS.md has the
table).
"""

# The preset the ninth round chose (its 'elastic' variant), as the tenth
# round started from it.
from search_smoothing import STARTING_POINT  # pylint: disable=g-bad-import-order

STUDY = {
    'name': 'search_se',
    'base': STARTING_POINT,
    'variants': {
        'preset best': {},
        'squeeze-excitation 8': {'squeeze_excite': 8},
    },
    'seeds': [0, 1],
}
