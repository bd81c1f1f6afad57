"""The seed recipe after one epoch, over five seeds.

    python experiments/runner.py experiments/one_epoch.py --root=runs/studies \
        '--set=manual_dir=../shared/data/{dataset}'

The last-iterate accuracy of plain SGD at a constant 0.05 and batch 16 moves by
points from seed to seed, so one run says little; compare the spread with
Keras's (benchmarks/keras_seed_accuracy.py). Full data, 1 epoch a run.
"""

STUDY = {
    'name': 'one_epoch',
    'base': {'epochs': 1, 'robustness_examples': 0},
    'variants': {'seed recipe, 1 epoch': {}},
    'seeds': [0, 1, 2, 3, 4],
}
