"""Shared fixtures: tiny datasets the tests write themselves, and tiny configs."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from mnist_flax import idx  # pylint: disable=g-import-not-at-top
from mnist_flax.config import Config  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / 'shared' / 'data' / 'mnist'


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Easily learnable 28x28 'digits': label k is a bright 6x6 block at a
  label-specific place, on faint noise.

  No two pixels of an image are meant to tie: with flat plateaus, max-pool's
  gradient may go to either of two equal inputs, and different (equally
  right) XLA programs pick differently, which the multi-device tests would
  read as a mismatch.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n).astype(np.uint8)
  images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
  for i, k in enumerate(labels):
    r, c = 2 + 5 * (k % 5), 4 + 12 * (k // 5)
    images[i, r:r + 6, c:c + 6] = rng.integers(180, 256, (6, 6))
  return images, labels


def write_idx_folder(folder: pathlib.Path, n_train: int = 96, n_test: int = 40,
                     seed: int = 0) -> pathlib.Path:
  """The four MNIST IDX .gz files, with synthetic content."""
  folder.mkdir(parents=True, exist_ok=True)
  for split, n, s in (('train', n_train, seed), ('t10k', n_test, seed + 1)):
    images, labels = synthetic_digits(n, s)
    idx.write_idx(folder / f'{split}-images-idx3-ubyte.gz', images)
    idx.write_idx(folder / f'{split}-labels-idx1-ubyte.gz', labels)
  return folder


@pytest.fixture
def idx_folder(tmp_path) -> pathlib.Path:
  return write_idx_folder(tmp_path / 'idx')


def tiny_config(manual_dir, **overrides) -> Config:
  """A config that trains in seconds on a write_idx_folder dataset."""
  defaults = dict(manual_dir=str(manual_dir), verify_checksums=False,
                  epochs=2, batch_size=16, eval_batch_size=16,
                  log_every_s=1000.0,
                  # Scored by main.py's end-to-end test; skipped elsewhere.
                  robustness_examples=0)
  defaults.update(overrides)
  return Config(**defaults)
