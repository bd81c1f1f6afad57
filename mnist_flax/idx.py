"""A strict reader for (gzipped) IDX files, the format MNIST ships in.

tfds prepares the canonical files itself; this reader is for folders tfds has no
checksums for (a user's own IDX data, or test fixtures) and for telling the user
exactly what is wrong with a local file.
"""

import gzip
import os
import zlib

import numpy as np

from mnist_flax.errors import DataError

_UBYTE = 0x08
MAX_BYTES = 1 << 31  # A larger MNIST-style file is a corrupt header, not data.


def parse_idx(raw: bytes, name: str = '<bytes>') -> np.ndarray:
  """Parses uncompressed IDX bytes of unsigned bytes into an ndarray."""
  if len(raw) < 4:
    raise DataError(f'{name}: too short for an IDX header ({len(raw)} bytes)')
  if raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or not 1 <= raw[3] <= 4:
    raise DataError(
        f'{name}: bad IDX magic {raw[:4].hex()} (want 000008 then 01..04)')
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f'{name}: truncated IDX header')
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  size = int(np.prod(shape, dtype=np.int64))
  if size > MAX_BYTES:
    raise DataError(f'{name}: IDX header claims shape {shape}, too large')
  if len(raw) - header != size:
    raise DataError(
        f'{name}: IDX header says shape {shape} ({size} bytes) but the file '
        f'holds {len(raw) - header} bytes of data')
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file, gunzipping it if its name ends in .gz."""
  name = os.fspath(path)
  try:
    with open(name, 'rb') as f:
      raw = f.read(MAX_BYTES + 1)
    if name.endswith('.gz'):
      # Bounded decompression: a gzip bomb must not exhaust memory.
      d = zlib.decompressobj(16 + zlib.MAX_WBITS)
      out = d.decompress(raw, MAX_BYTES + 1)
      if len(out) > MAX_BYTES:
        raise DataError(f'{name}: decompresses to more than {MAX_BYTES} bytes')
      if not d.eof:
        raise DataError(f'{name}: truncated gzip stream')
      raw = out
  except FileNotFoundError:
    raise DataError(f'{name}: file not found') from None
  except (OSError, zlib.error, gzip.BadGzipFile, EOFError) as e:
    raise DataError(f'{name}: cannot read: {e}') from None
  return parse_idx(raw, name)


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as an IDX file (gzipped if path ends in .gz)."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = bytes([0, 0, _UBYTE, array.ndim]) + b''.join(
      int(d).to_bytes(4, 'big') for d in array.shape)
  data = header + array.tobytes()
  opener = gzip.open if os.fspath(path).endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(data)
