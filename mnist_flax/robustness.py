"""Robustness test sets: the test set rotated, shifted, scaled and noisy.

Each set is the first N test images passed once through an augment op with a
fixed key, then stored as uint8 like MNIST itself, so every run of a study is
scored on the same images. results.json reports the accuracy on each
(`robustness_accuracy`), which shows what an augmentation buys beyond the clean
test set. The sets are deterministic for a given backend (the draws come from
jax.random with a fixed key; resampling may round differently elsewhere).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mnist_flax import augment
from mnist_flax import steps

# Set name -> augment spec; magnitudes are drawn uniformly up to the parameter.
SETS = {
    'rotated': 'rotate(30)',   # up to +-30 degrees
    'shifted': 'shift(4)',     # up to 4 pixels in x and y
    'scaled': 'scale(0.3)',    # zoom by 0.7x to 1.3x
    'noisy': 'noise(0.3)',     # Gaussian noise, std 0.3 of the pixel range
}
_KEY = 20261124


@functools.partial(jax.jit, static_argnums=0)
def _transform(spec: str, key, images):
  x = augment.apply(spec, key, steps.normalize(images))
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def build(test_images: np.ndarray) -> dict[str, np.ndarray]:
  """{set name: uint8 images shaped like test_images}, deterministic."""
  key = jax.random.PRNGKey(_KEY)
  return {name: np.asarray(_transform(spec, jax.random.fold_in(key, i),
                                      test_images))
          for i, (name, spec) in enumerate(SETS.items())}
