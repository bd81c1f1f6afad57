"""hostmem.keep_freed_memory: a freed big block is reused, not faulted in again."""

import subprocess
import sys

import pytest

from conftest import REPO

# Allocates, touches and frees a 64 MiB block (twice XLA:CPU's largest
# temporaries at the default settings would be enough) ten times, through
# malloc as XLA does, and prints the page faults that took.
_CYCLES = '''
import ctypes, resource, sys
from mnist_flax import hostmem
if sys.argv[1] == 'keep':
  assert hostmem.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def cycle(n=64 << 20):
  p = libc.malloc(n)
  ctypes.memset(p, 1, n)
  libc.free(p)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def _faults(mode: str) -> int:
  out = subprocess.run([sys.executable, '-c', _CYCLES, mode], cwd=REPO,
                       check=True, capture_output=True, text=True).stdout
  return int(out)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc malloc tuning applies to Linux only')
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
  default, kept = _faults('default'), _faults('keep')
  # glibc's default: each 64 MiB block is a fresh mmap, 16,384 4-KiB pages.
  assert default > 10 * 16_384 // 2, default
  assert kept < 1_000, kept

