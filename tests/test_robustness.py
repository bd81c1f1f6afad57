import numpy as np
import pytest

from conftest import synthetic_digits
from mnist_flax import robustness


@pytest.mark.slow
def test_robustness_sets_are_deterministic_uint8_and_transformed():
  images, _ = synthetic_digits(32, seed=3)
  images = images[..., None]
  first, again = robustness.build(images), robustness.build(images)
  assert list(first) == ['rotated', 'shifted', 'scaled', 'noisy']
  for name, transformed in first.items():
    assert transformed.dtype == np.uint8 and transformed.shape == images.shape
    np.testing.assert_array_equal(transformed, again[name])
    # Most images change (a few draws may be near the identity).
    changed = (transformed != images).reshape(32, -1).any(axis=1)
    assert changed.mean() > 0.8, name
  # Each set differs from the others: its own op and its own key.
  assert not np.array_equal(first['rotated'], first['shifted'])
