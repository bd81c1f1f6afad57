import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_digits, tiny_config
from mnist_flax import augment
from mnist_flax import train
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError

ALL_OPS = ['shift(3)', 'rotate(15)', 'scale(0.1)', 'shear(10)',
           'affine(2,10,0.1)', 'affine(2,10,0.2,10)', 'affine(2,10,0.2,10,1)',
           'elastic(34,4)', 'elastic(36,6)', 'elastic(34,12)',
           'cutout(8)', 'noise(0.1)', 'noise(0.3,0.5)', 'flip(0.5)']


def _batch(n=6):
  images, labels = synthetic_digits(n, seed=3)
  return jnp.asarray(images[..., None], jnp.float32) / 255, labels


@pytest.mark.parametrize('spec', ALL_OPS + ['shift(3),rotate(15),noise(0.05)'])
def test_ops_keep_shape_range_and_are_deterministic_given_a_key(spec):
  x, _ = _batch()
  a = augment.apply(spec, jax.random.PRNGKey(0), x)
  b = augment.apply(spec, jax.random.PRNGKey(0), x)
  c = augment.apply(spec, jax.random.PRNGKey(1), x)
  assert a.shape == x.shape and a.dtype == x.dtype
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-6
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert not np.allclose(a, x)


@pytest.mark.parametrize('spec', ['shift(0)', 'rotate(0)', 'scale(0)',
                                  'shear(0)', 'affine(0,0,0)',
                                  'affine(0,0,0,0)', 'noise(0)',
                                  'noise(0.3,0)', 'flip(0)', 'elastic(0,4)',
                                  'elastic(0,0)', 'none'])
def test_zero_strength_is_the_identity(spec):
  x, _ = _batch()
  np.testing.assert_allclose(augment.apply(spec, jax.random.PRNGKey(0), x), x,
                             atol=1e-5)


def test_noise_at_a_rate_noises_that_fraction_of_images_and_no_other():
  x = jnp.full((2000, 28, 28, 1), 0.5)
  y = augment.apply('noise(0.1,0.25)', jax.random.PRNGKey(0), x)
  changed = np.asarray(jnp.abs(y - x).reshape(len(x), -1).max(1) > 0)
  assert 0.22 < changed.mean() < 0.28  # 0.25 +- 3.5 binomial std.
  noised = np.asarray(y - x)[changed]
  assert abs(noised.std() - 0.1) < 0.002  # 0.5 +- 5 std: never clipped.
  # rate 1 is the plain op, draw for draw.
  np.testing.assert_array_equal(
      augment.apply('noise(0.3,1)', jax.random.PRNGKey(0), x[:4]),
      augment.apply('noise(0.3)', jax.random.PRNGKey(0), x[:4]))


def test_flip_mirrors_that_fraction_of_images_left_right_and_no_other():
  x, _ = _batch(1000)
  y = np.asarray(augment.apply('flip(0.5)', jax.random.PRNGKey(0), x))
  x = np.asarray(x)
  mirrored = (y == x[:, :, ::-1]).all(axis=(1, 2, 3))
  unchanged = (y == x).all(axis=(1, 2, 3))
  assert (mirrored | unchanged).all()
  assert 0.45 < mirrored.mean() < 0.55  # 0.5 +- 3 binomial std.
  np.testing.assert_array_equal(
      augment.apply('flip(1)', jax.random.PRNGKey(0), x), x[:, :, ::-1])


def test_elastic_smooths_its_field_as_a_same_gaussian_convolution():
  # Against numpy's zero-padded 'same' convolution, for a kernel narrower
  # than the image (sigma 2: 13 taps) and one wider (sigma 6: 37 taps > 28).
  field = np.random.default_rng(0).uniform(-1, 1, (28, 28))
  for sigma in (2.0, 6.0):
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1)**2 / (2 * sigma**2))
    taps /= taps.sum()
    full = np.apply_along_axis(np.convolve, 0, field, taps, 'full')
    full = np.apply_along_axis(np.convolve, 1, full, taps, 'full')
    expected = full[radius:radius + 28, radius:radius + 28]
    smoother = augment._gaussian_smoother(28, sigma)  # pylint: disable=protected-access
    np.testing.assert_allclose(smoother @ field @ smoother.T, expected,
                               atol=1e-5)


def test_elastic_displaces_pixels_by_alpha_times_the_smoothed_field():
  # A horizontal ramp image turns the x displacement into a pixel change:
  # sampled at x + dx, the ramp reads x + dx, so image - ramp is dx.
  ramp = jnp.tile(jnp.arange(28, dtype=jnp.float32)[None, :, None] / 27,
                  (28, 1, 1))
  key = jax.random.PRNGKey(5)
  out = augment.elastic(key, ramp, alpha=2.0, sigma=6.0)
  field = jax.random.uniform(key, (2, 28, 28), minval=-1.0, maxval=1.0)
  smoother = augment._gaussian_smoother(28, 6.0)  # pylint: disable=protected-access
  dx = 2.0 * (smoother @ field[1] @ smoother.T)
  inner = (slice(4, 24), slice(4, 24))  # Away from the zero border.
  np.testing.assert_allclose((out[..., 0] - ramp[..., 0])[inner] * 27,
                             dx[inner], atol=1e-4)


def test_geometric_ops_keep_the_digit_where_a_classifier_finds_it():
  # Label preservation, measured: the block that encodes the label moves by
  # at most the shift and keeps most of its ink.
  x, _ = _batch(20)
  y = augment.apply('shift(2)', jax.random.PRNGKey(0), x)
  ys, xs = np.indices(x.shape[1:3])
  for before, after in zip(np.asarray(x[..., 0]), np.asarray(y[..., 0])):
    mass = [(ys * i).sum() / i.sum() for i in (before, after)]
    assert abs(mass[0] - mass[1]) <= 2.01
    assert after.sum() > 0.6 * before.sum()


def test_shear_moves_rows_sideways_in_proportion_to_their_height():
  # A vertical bar through the centre leans: its ink shifts right above the
  # centre row and left below it (or the reverse), by the same amount.
  bar = np.zeros((1, 28, 28, 1), np.float32)
  bar[0, 4:24, 13:15] = 1.0
  out = np.asarray(augment.apply('shear(20)', jax.random.PRNGKey(5), bar))[0, ..., 0]
  xs = np.arange(28)
  centre_x = lambda row: (out[row] * xs).sum() / out[row].sum()
  top, bottom = centre_x(7) - 13.5, centre_x(20) - 13.5
  assert abs(top) > 0.5 and np.sign(top) == -np.sign(bottom)
  assert abs(abs(top) - abs(bottom)) < 1.0


def test_a_shear_in_affine_leaves_its_other_draws_unchanged():
  # Adding a shear draws from its own key: shift, rotation and scale of a
  # given key are those of the three-parameter affine.
  x, _ = _batch()
  key = jax.random.PRNGKey(2)
  np.testing.assert_array_equal(augment.apply('affine(2,10,0.1)', key, x),
                                augment.apply('affine(2,10,0.1,0)', key, x))
  assert not np.allclose(augment.apply('affine(2,10,0.1,10)', key, x),
                         augment.apply('affine(2,10,0.1)', key, x))


def test_per_axis_zoom_stretches_height_and_width_apart():
  square = np.zeros((28, 28, 1), np.float32)
  square[9:19, 9:19] = 1.0
  images = jnp.asarray(np.repeat(square[None], 32, axis=0))
  key = jax.random.PRNGKey(3)

  def height_minus_width(spec):
    out = np.asarray(augment.apply(spec, key, images))[..., 0] > 0.5
    return out.any(axis=2).sum(axis=1) - out.any(axis=1).sum(axis=1)

  # One factor for both axes keeps the square square, give or take a pixel.
  assert np.abs(height_minus_width('affine(0,0,0.3,0)')).max() <= 1
  # Independent factors (up to 30% each) make tall and wide rectangles.
  stretched = height_minus_width('affine(0,0,0.3,0,1)')
  assert stretched.max() >= 2 and stretched.min() <= -2
  # Off, the fifth parameter leaves every draw as the four-parameter op's.
  x, _ = _batch()
  np.testing.assert_array_equal(augment.apply('affine(2,10,0.2,10)', key, x),
                                augment.apply('affine(2,10,0.2,10,0)', key, x))


def test_unknown_ops_and_bad_parameters_are_refused_with_the_valid_list():
  with pytest.raises(ConfigError, match=r'valid ops: none, shift\(x\)'):
    Config(augment='mixup(1)').validate()
  with pytest.raises(ConfigError, match='non-numeric'):
    Config(augment='shift(a)').validate()
  with pytest.raises(ConfigError, match='at most 1'):
    Config(augment='rotate(1,2)').validate()
  for spec in ('affine(1,2', 'shift(1))', 'shift(1,noise(1)'):
    with pytest.raises(ConfigError, match='unbalanced parentheses'):
      Config(augment=spec).validate()
  assert augment.parse('affine(2,10,0.1), noise(0.1)') == (
      ('affine', (2.0, 10.0, 0.1)), ('noise', (0.1,)))


@pytest.mark.slow
def test_training_with_augmentation_writes_a_preview(tmp_path, idx_folder):
  train.train_and_evaluate(
      tiny_config(idx_folder, epochs=1, augment='shift(2),rotate(10)'),
      str(tmp_path / 'run'))
  assert (tmp_path / 'run' / 'augment_preview.png').stat().st_size > 0
