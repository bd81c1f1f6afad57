"""Shared fixtures: tiny datasets the tests write themselves, tiny configs,
and the two tiers.

`python -m pytest -q` runs the fast tier: everything not marked slow, with
fuzz tests at a few examples each. `python -m pytest -q -m slow` runs the
slow tier: multi-process runs, kill loops, real MNIST, and the fuzz tests at
1,000 examples each.
"""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from hypothesis import HealthCheck, settings  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

from mnist_flax import idx  # pylint: disable=g-import-not-at-top
from mnist_flax.config import Config  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / 'shared' / 'data' / 'mnist'

_FUZZ = dict(deadline=None,
             suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile('fast', max_examples=40, **_FUZZ)
settings.register_profile('thorough', max_examples=1000, **_FUZZ)


def _slow_tier(config) -> bool:
  expr = config.option.markexpr or ''
  return 'slow' in expr and 'not slow' not in expr


def pytest_configure(config):
  settings.load_profile('thorough' if _slow_tier(config) else 'fast')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Fuzz tests belong to both tiers, at their tier's number of examples."""
  if _slow_tier(config):
    for item in items:
      if item.get_closest_marker('fuzz'):
        item.add_marker(pytest.mark.slow)


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


# A small network of the seed family (2 convs of 8 and 16 filters): it compiles
# and trains in a fraction of the seed model's time. Tests about the seed
# model itself say so with width=1.0, depth=5.
SMALL_MODEL = dict(width=0.25, depth=2)


@pytest.fixture
def mock_tfds(monkeypatch):
  """tfds.testing.mock_data, as a function of num_examples. Its builders
  download nothing, so the reachability check of the real download hosts
  (data._check_downloadable) is off for them."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mnist_flax import data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(data, '_check_downloadable', lambda *args: None)
  return tfds.testing.mock_data


def tiny_config(manual_dir, **overrides) -> Config:
  """A config that trains in seconds on a write_idx_folder dataset."""
  defaults = dict(manual_dir=str(manual_dir), verify_checksums=False,
                  **SMALL_MODEL,
                  epochs=2, batch_size=16, eval_batch_size=16,
                  log_every_s=1000.0, tensorboard=False,
                  # Scored by main.py's end-to-end test; skipped elsewhere.
                  robustness_examples=0)
  defaults.update(overrides)
  return Config(**defaults)
