"""The compute budget of the committed studies, shared by their files.

About a minute a run on the 2-core CPU: the first 10,000 training images for 2
epochs, one test evaluation at the end, 2,000 images in each robustness set.
Rerun a study at full size with e.g. --set=train_examples=0 --set=epochs=30.
"""

CPU_BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
              'robustness_examples': 2000}
