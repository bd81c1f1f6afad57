"""Inference from a finished (or running) workdir, as an API and a CLI.

    from mnist_flax.predict import Predictor
    p = Predictor.from_workdir("runs/base")
    probs = p.predict_proba(images)   # uint8 [N, 28, 28] -> float [N, classes]

    python -m mnist_flax.predict --workdir=runs/base digit.png photo.jpg

The CLI converts any PNG or JPEG the way MNIST was made: grayscale, white ink on
black, the ink's bounding box fitted in 20x20, then placed in 28x28 so that its
centre of mass is at the centre.
"""

import functools
import os
import sys
import warnings

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from mnist_flax import data
from mnist_flax import flagging
from mnist_flax import steps
from mnist_flax import workdir as workdir_lib
from mnist_flax.errors import UserError

IMAGE_SHAPE = workdir_lib.IMAGE_SHAPE
MAX_IMAGE_PIXELS = 64_000_000  # Larger files are refused as decompression bombs.
MAX_FILE_BYTES = 64 << 20


class ImageError(UserError):
  """An image file that cannot be classified."""


class Predictor:
  """A trained model restored from a workdir's checkpoint; a workdir of
  --num_models=K predicts with the K models' ensemble (their mean softmax)."""

  def __init__(self, model, variables, class_names, batch_size: int = 1000,
               num_models: int = 1):
    self.model = model
    self.variables = variables
    self.class_names = tuple(class_names)
    self.batch_size = batch_size
    self.num_models = num_models

  @classmethod
  def from_workdir(cls, workdir: str, checkpoint: str = 'latest',
                   member: int | None = None):
    """Loads the latest (or 'best', or an epoch number's) checkpoint;
    `member=k` keeps the k-th model of a --num_models run alone."""
    run = workdir_lib.load_run(workdir, checkpoint)
    predictor = cls(run.model, run.state.inference_variables(),
                    run.class_names, num_models=run.config.num_models)
    return predictor if member is None else predictor.member(member)

  def member(self, k: int) -> 'Predictor':
    """The k-th model of an ensemble as a Predictor of its own: model k of a
    --num_models run trained as the run --seed=SEED+k would have."""
    n = self.num_models
    if n == 1:
      raise UserError(f'--member={k}: the run has one model; leave --member out')
    if not 0 <= k < n:
      raise UserError(f'--member={k}: choose 0..{n - 1} of the run\'s {n} models')
    return Predictor(self.model, jax.tree.map(lambda a: a[k], self.variables),
                     self.class_names, self.batch_size)

  @functools.cached_property
  def _proba(self):
    def proba(variables, images):
      logits = self.model.apply(variables, steps.normalize(images), train=False)
      return jax.nn.softmax(logits)
    if self.num_models > 1:
      return jax.jit(lambda v, x: jax.vmap(proba, (0, None))(v, x).mean(0))
    return jax.jit(proba)

  def predict_proba(self, images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] (white digit on black) -> probabilities [N, classes]."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
      images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
      raise ValueError(f'images must be [N, 28, 28], got {images.shape}')
    if images.dtype != np.uint8:
      raise ValueError(f'images must be uint8 in [0, 255], got {images.dtype}')
    out = []
    for start in range(0, len(images), self.batch_size):
      batch = images[start:start + self.batch_size]
      n = len(batch)
      if len(images) > self.batch_size:  # One compiled shape for every batch.
        batch = data.pad_to_multiple(batch, self.batch_size)
      probs = self._proba(self.variables, jnp.asarray(batch[..., None]))
      out.append(np.asarray(probs)[:n])
    if not out:
      return np.zeros((0, len(self.class_names)), np.float32)
    return np.concatenate(out)

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.predict_proba(images).argmax(-1)


def _to_grayscale(img) -> np.ndarray:
  """Any PIL mode -> float32 [H, W] in [0, 255], transparency as white."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if img.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    a = np.asarray(img, np.float32)
    if not np.isfinite(a).all():
      raise ImageError('pixels that are not finite numbers (NaN or Inf)')
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
  if img.mode in ('RGBA', 'LA', 'PA') or (
      img.mode == 'P' and 'transparency' in img.info):
    rgba = img.convert('RGBA')
    background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(background, rgba)
  return np.asarray(img.convert('L'), np.float32)


def mnist_like(gray: np.ndarray) -> np.ndarray:
  """[H, W] grayscale (either polarity) -> uint8 [28, 28] the MNIST way."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
  if np.median(border) > 127:  # Dark ink on a light background.
    gray, border = 255.0 - gray, 255.0 - border
  gray = np.clip(gray - np.median(border), 0, 255)  # Background to black.
  if gray.max() < 32:
    raise ImageError('no digit found: the image is blank or has no contrast')
  rows = np.flatnonzero(gray.max(axis=1) > 0.2 * gray.max())
  cols = np.flatnonzero(gray.max(axis=0) > 0.2 * gray.max())
  crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  ch, cw = crop.shape
  scale = 20.0 / max(ch, cw)
  size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
  small = np.asarray(Image.fromarray(crop.astype(np.float32), mode='F')
                     .resize(size, Image.Resampling.LANCZOS))
  small = np.clip(small, 0, 255) * (255.0 / max(small.max(), 1e-6))
  canvas = np.zeros(IMAGE_SHAPE, np.float32)
  ys, xs = np.indices(small.shape)
  mass = small.sum()
  cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
  top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
  left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
  canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
  return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def load_image(path: str) -> np.ndarray:
  """Reads an image file and converts it MNIST-style; ImageError if bad."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    size = os.path.getsize(path)
  except OSError as e:
    raise ImageError(f'{path}: {e.strerror}') from None
  if size == 0:
    raise ImageError(f'{path}: empty file')
  if size > MAX_FILE_BYTES:
    raise ImageError(f'{path}: {size} bytes, over the {MAX_FILE_BYTES} limit')
  Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(path) as img:
        if img.width * img.height > MAX_IMAGE_PIXELS:
          raise ImageError(f'{path}: {img.width}x{img.height} pixels is over '
                           f'the {MAX_IMAGE_PIXELS} limit')
        img.load()
        gray = _to_grayscale(img)
  except ImageError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise ImageError(f'{path}: refused as a decompression bomb ({e})') from None
  except Image.UnidentifiedImageError:
    raise ImageError(f'{path}: not an image PIL can read') from None
  except (OSError, ValueError, SyntaxError, MemoryError) as e:
    raise ImageError(f'{path}: cannot decode ({type(e).__name__}: {e})') from None
  if gray.ndim != 2 or min(gray.shape) < 1:
    raise ImageError(f'{path}: unsupported image shape {gray.shape}')
  try:
    return mnist_like(gray)
  except ImageError as e:
    raise ImageError(f'{path}: {e}') from None


def _define_flags() -> None:
  """CLI flags, defined only when run as a program so importing the API
  never collides with a caller's own flags."""
  flags.DEFINE_string('workdir', None, 'Run directory to load.')
  flags.DEFINE_string('checkpoint', 'latest',
                      "'latest', 'best' or an epoch number.")
  flags.DEFINE_integer('member', None, 'Of a --num_models run, use model K '
                       'alone (default: the ensemble).')


def main(argv) -> int:
  # Library chatter (orbax, XLA) would bury the result and error lines.
  logging.set_verbosity(logging.WARNING)
  paths = argv[1:]
  workdir, checkpoint = flags.FLAGS.workdir, flags.FLAGS.checkpoint
  if not workdir or not paths:
    print('usage: python -m mnist_flax.predict --workdir=RUN IMAGE [IMAGE ...]',
          file=sys.stderr)
    return 2
  try:
    predictor = Predictor.from_workdir(workdir, checkpoint,
                                       flags.FLAGS.member)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return e.exit_code
  failed = 0
  for path in paths:
    try:
      image = load_image(path)
    except ImageError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
      continue
    probs = predictor.predict_proba(image[None])[0]
    label = int(probs.argmax())
    print(f'{path}\t{predictor.class_names[label]}\t{probs[label]:.4f}',
          flush=True)
  return 2 if failed else 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=flagging.parse_flags_or_exit)
