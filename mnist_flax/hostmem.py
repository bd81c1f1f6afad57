"""Keeps freed host memory in the process, so XLA:CPU's buffers stop faulting.

XLA:CPU allocates an executable's temporaries as one buffer per call, through
malloc. glibc serves any block above its mmap threshold (32 MiB at most) with
a fresh mmap and unmaps it on free, so every call touches brand-new pages: the
`best` preset's step (83 MiB of temporaries at batch 128) took 21,000 page
faults a step and ran 1.54x faster without them (BENCHMARKS.md,
`python benchmarks/host_malloc.py`). Serving every block from one heap that is
never trimmed turns the faults into plain reuse. The costs: the process keeps
its peak heap until it exits, and every thread shares one malloc lock, which
made the seed step at batch 16 (28 MiB, no faults to save) 8% slower. Hence
main.py's --keep_freed_memory is off by default.
"""

import ctypes
import sys

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
  """Sets glibc malloc to reuse freed blocks; False where it does not apply.

  Call it first thing in a process, before JAX starts its thread pool (the
  threads that exist by then keep their own arenas).
  """
  if not sys.platform.startswith('linux'):
    return False
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):  # Not glibc (e.g. musl).
    return False
  return all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1),  # One heap for every thread...
      (_M_MMAP_MAX, 0),  # No block gets an mmap of its own...
      (_M_TRIM_THRESHOLD, 2**31 - 1),  # ...and freed heap stays mapped.
  ))
