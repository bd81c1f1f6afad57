"""mnist-flax: the seed CNN study on MNIST in JAX/Flax, and its follow-ups.

The model is in models.py, the step in train.py, the data path in data.py.
"""
