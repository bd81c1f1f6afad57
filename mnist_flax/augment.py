"""Data augmentation as small named ops, run on the device inside the jitted step.

`--augment` is a comma list of ops with parameters, applied in order:

    shift(3)         translate by up to 3 pixels in x and y
    rotate(15)       rotate by up to 15 degrees
    scale(0.1)       zoom by a factor in [0.9, 1.1]
    shear(10)        shear along x by up to 10 degrees
    affine(3,15,0.1) shift, rotate and scale in one resampling; a fourth
                     parameter, affine(3,15,0.1,10), also shears; a fifth,
                     affine(3,15,0.1,10,1), zooms height and width by
                     independent factors (as Keras's zoom_range does)
    elastic(34,4)    elastic distortion (Simard et al. 2003): alpha, sigma
    cutout(8)        zero one 8x8 square at a random place
    noise(0.1)       add Gaussian noise of std 0.1 (pixels in [0, 1]); a
                     second parameter, noise(0.3,0.25), noises only that
                     fraction of the images (the rest pass unchanged)
    flip(0.5)        mirror left-right, each image with probability 0.5
                     (garments, not digits: a mirrored 2 is no digit)
    none             no augmentation

Each op maps (key, image [H, W, C] float in [0, 1]) -> image of the same shape;
`apply` vmaps the chain over the batch with one key per image, so a step does no
host work. Labels are never touched: every op but flip keeps a digit's
identity, and flip keeps a garment's.
"""

import functools
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mnist_flax.errors import ConfigError


def _resample(image, matrix, offset):
  """Bilinear resampling of `image` at matrix @ (y, x) + offset, zero outside."""
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing='ij')
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
  coords = jnp.stack([ys - centre[0], xs - centre[1]])
  src = jnp.tensordot(matrix, coords, axes=1) + (centre + offset)[:, None, None]
  return _sample(image, src)


def _sample(image, src):
  return jnp.stack([
      jax.scipy.ndimage.map_coordinates(image[..., c], list(src), order=1,
                                        mode='constant', cval=0.0)
      for c in range(image.shape[-1])], axis=-1)


def _affine(key, image, max_shift=0.0, max_degrees=0.0, max_scale=0.0,
            max_shear=0.0, per_axis_zoom=0.0):
  k_shift, k_rot, k_scale = jax.random.split(key, 3)
  shift = jax.random.uniform(k_shift, (2,), minval=-max_shift, maxval=max_shift)
  angle = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-max_degrees,
                                         maxval=max_degrees))
  scale = 1.0 + jax.random.uniform(k_scale, (), minval=-max_scale,
                                   maxval=max_scale)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Inverse map: output pixel -> source pixel. Every draw is symmetric about
  # the identity, so the inverse of a random map is as random as the map.
  matrix = jnp.array([[cos, -sin], [sin, cos]]) / scale
  if per_axis_zoom:  # Height gets a draw of its own; width keeps `scale`'s.
    scale_y = 1.0 + jax.random.uniform(
        jax.random.fold_in(key, 4), (), minval=-max_scale, maxval=max_scale)
    matrix = matrix @ jnp.diag(jnp.array([scale / scale_y, 1.0]))
  if max_shear:  # Its own key, so the other ops' draws stay as they were.
    shear_angle = jnp.deg2rad(jax.random.uniform(
        jax.random.fold_in(key, 3), (), minval=-max_shear, maxval=max_shear))
    # (y, x) -> (y, x + tan(angle) * y).
    matrix = matrix @ jnp.array([[1.0, 0.0], [jnp.tan(shear_angle), 1.0]])
  return _resample(image, matrix, -shift)


def shift(key, image, pixels=2.0):
  return _affine(key, image, max_shift=pixels)


def rotate(key, image, degrees=15.0):
  return _affine(key, image, max_degrees=degrees)


def scale(key, image, amount=0.1):
  return _affine(key, image, max_scale=amount)


def shear(key, image, degrees=10.0):
  return _affine(key, image, max_shear=degrees)


def affine(key, image, pixels=2.0, degrees=15.0, amount=0.1, shear_degrees=0.0,
           per_axis_zoom=0.0):
  return _affine(key, image, pixels, degrees, amount, shear_degrees,
                 per_axis_zoom)


def _gaussian_smoother(n: int, sigma: float) -> np.ndarray:
  """[n, n] matrix of a 'same' Gaussian blur (truncated at 3 sigma, zeros
  outside the image); a matrix, unlike a convolution, takes any sigma."""
  if sigma == 0:  # No blur: the raw field.
    return np.eye(n, dtype=np.float32)
  radius = int(math.ceil(3 * sigma))
  taps = np.exp(-np.arange(-radius, radius + 1)**2 / (2 * sigma**2))
  offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
  weights = np.exp(-offsets**2 / (2 * sigma**2)) / taps.sum()
  return np.where(np.abs(offsets) <= radius, weights, 0.0).astype(np.float32)


def elastic(key, image, alpha=34.0, sigma=4.0):
  h, w = image.shape[:2]
  field = jax.random.uniform(key, (2, h, w), minval=-1.0, maxval=1.0)
  smooth = (_gaussian_smoother(h, sigma) @ field
            @ _gaussian_smoother(w, sigma).T)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing='ij')
  return _sample(image, jnp.stack([ys, xs]) + alpha * smooth)


def cutout(key, image, size=8.0):
  h, w = image.shape[:2]
  size = int(size)
  top_left = jax.random.randint(key, (2,), -(size // 2),
                                jnp.array([h, w]) - size // 2)
  ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing='ij')
  inside = ((ys >= top_left[0]) & (ys < top_left[0] + size) &
            (xs >= top_left[1]) & (xs < top_left[1] + size))
  return jnp.where(inside[..., None], 0.0, image)


def noise(key, image, std=0.1, rate=1.0):
  def noised(key):
    return jnp.clip(image + std * jax.random.normal(key, image.shape), 0.0, 1.0)
  if rate >= 1.0:  # Every image, from the key itself as before rates existed.
    return noised(key)
  key, pick = jax.random.split(key)
  return jnp.where(jax.random.uniform(pick) < rate, noised(key), image)


def flip(key, image, rate=0.5):
  return jnp.where(jax.random.uniform(key) < rate, image[:, ::-1], image)


OPS: dict[str, Callable] = {
    'shift': shift, 'rotate': rotate, 'scale': scale, 'shear': shear,
    'affine': affine,
    'elastic': elastic, 'cutout': cutout, 'noise': noise, 'flip': flip,
}
_ARITY = {'shift': 1, 'rotate': 1, 'scale': 1, 'shear': 1, 'affine': 5,
          'elastic': 2, 'cutout': 1, 'noise': 2, 'flip': 1}
_OP = re.compile(r'^([a-z_]+)(?:\(([^()]*)\))?$')


@functools.lru_cache
def parse(spec: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
  """'shift(3),rotate(15)' -> (('shift', (3.0,)), ('rotate', (15.0,)))."""
  ops = []
  outside = re.sub(r'\([^()]*\)', '', spec)  # What is left of each op.
  if '(' in outside or ')' in outside:
    raise ConfigError(f'--augment={spec!r}: unbalanced parentheses')
  for part in re.split(r',(?![^()]*\))', spec.replace(' ', '')):
    m = _OP.match(part)
    name = m.group(1) if m else part
    if name == 'none' and not (m and m.group(2)):
      continue
    if not m or name not in OPS:
      raise ConfigError(f'--augment: unknown op {part!r}; valid ops: none, '
                        + ', '.join(f'{n}({",".join(["x"] * _ARITY[n])})'
                                    for n in OPS))
    try:
      args = tuple(float(a) for a in m.group(2).split(',')) if m.group(2) else ()
    except ValueError:
      raise ConfigError(f'--augment: {part!r} has a non-numeric parameter'
                        ) from None
    if len(args) > _ARITY[name] or not all(0 <= a < math.inf for a in args):
      raise ConfigError(f'--augment: {part!r} takes at most {_ARITY[name]} '
                        'non-negative finite parameters')
    ops.append((name, args))
  return tuple(ops)


def apply(spec: str, key: jax.Array, images: jax.Array) -> jax.Array:
  """Applies the ops of `spec` to a batch [N, H, W, C] of float images."""
  ops = parse(spec)
  if not ops:
    return images

  def one(key, image):
    for (name, args), k in zip(ops, jax.random.split(key, len(ops))):
      image = OPS[name](k, image, *args)
    return image

  return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
