"""Kills, and fuzzing of the parsers that read files from users."""

import gzip
import io
import pathlib
import sys

from hypothesis import given, strategies as st
import numpy as np
from PIL import Image
import pytest

from mnist_flax import idx
from mnist_flax import predict
from mnist_flax.errors import DataError

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import kill_resume  # pylint: disable=g-import-not-at-top,wrong-import-position

# Examples per property come from the tier's hypothesis profile (conftest).
FUZZ = pytest.mark.fuzz


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(tmp_path):
  result = kill_resume.kill_loop(kills=3, seed=1, root=tmp_path)
  assert result['kills_tried'] >= 1
  assert result['identical_to_uninterrupted'], result


def _valid_idx() -> bytes:
  buf = io.BytesIO()
  a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  buf.write(bytes([0, 0, 8, 3]) + b''.join(
      int(d).to_bytes(4, 'big') for d in a.shape) + a.tobytes())
  return buf.getvalue()


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_parse_idx_arbitrary_bytes(raw):
  try:
    out = idx.parse_idx(raw)
  except DataError:
    return
  assert out.dtype == np.uint8 and out.size == len(raw) - 4 - 4 * raw[3]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 255)),
                max_size=6), st.integers(0, 40))
def test_fuzz_parse_idx_mutated_valid_file(edits, cut):
  raw = bytearray(_valid_idx())
  for pos, value in edits:
    raw[pos % len(raw)] = value
  raw = bytes(raw[:len(raw) - cut])
  try:
    idx.parse_idx(raw)
  except DataError:
    pass


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_read_idx_gz_files(tmp_path, payload):
  path = tmp_path / 'x-idx3-ubyte.gz'
  for raw in (payload, gzip.compress(payload)):
    path.write_bytes(raw)
    try:
      idx.read_idx(str(path))
    except DataError:
      pass


def _image_bytes(fmt: str) -> bytes:
  buf = io.BytesIO()
  img = Image.new('L', (40, 30), 255)
  img.paste(0, (10, 5, 25, 25))
  img.save(buf, format=fmt)
  return buf.getvalue()


@FUZZ
@given(st.sampled_from(['PNG', 'JPEG', 'BMP', 'GIF']),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                max_size=8), st.integers(0, 200))
def test_fuzz_load_image_mutated_files(tmp_path, fmt, edits, cut):
  raw = bytearray(_image_bytes(fmt))
  for pos, value in edits:
    raw[pos % len(raw)] = value
  path = tmp_path / 'img'
  path.write_bytes(bytes(raw[:max(0, len(raw) - cut)]))
  try:
    out = predict.load_image(str(path))
  except predict.ImageError:
    return
  assert out.shape == (28, 28) and out.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=500))
def test_fuzz_load_image_arbitrary_bytes(tmp_path, raw):
  path = tmp_path / 'img'
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + raw)
  try:
    predict.load_image(str(path))
  except predict.ImageError:
    pass
