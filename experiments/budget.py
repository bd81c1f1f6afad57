"""The compute budgets of the committed studies, shared by their files.

CPU_BUDGET: about a minute a run on the 2-core CPU: the first 10,000 training
images for 2 epochs, one test evaluation at the end, 2,000 images in each
robustness set. Rerun a study at full size with e.g. --set=train_examples=0
--set=epochs=30.

ABLATION_BUDGET: CPU_BUDGET with the last 5,000 training images held out as a
validation split (the table reports it) and a cosine rate, for studies that
rank variants: with the constant rate of the seed recipe the same variant's
seeds spread over points, with cosine over about 0.05 points, so real
differences show.

SEARCH_BUDGET: for choosing a recipe without the test set: the last 5,000
training images held out as a validation split (the table reports it), the
other 55,000 trained on for 5 epochs of the recipe under search, with its
decaying rate.

FULL_SEARCH_BUDGET: SEARCH_BUDGET at the recipe's full length (15 epochs,
the `--preset=best` schedule unshortened), for the differences that 5 epochs
cannot tell apart.
"""

CPU_BUDGET = {'train_examples': 10000, 'epochs': 2, 'eval_every': 2,
              'robustness_examples': 2000}

ABLATION_BUDGET = {**CPU_BUDGET, 'validation_examples': 5000,
                   'schedule': 'cosine'}

SEARCH_BUDGET = {'validation_examples': 5000, 'epochs': 5, 'eval_every': 5,
                 'robustness_examples': 2000}

FULL_SEARCH_BUDGET = {**SEARCH_BUDGET, 'epochs': 15}
