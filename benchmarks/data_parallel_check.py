"""How far data-parallel training lands from single-device training.

    python benchmarks/data_parallel_check.py

Trains the same tiny config (tests/test_distributed.py's) on one CPU device,
on 8 virtual CPU devices, and in 2 processes over jax.distributed (gloo), then
prints the largest parameter and loss differences against the single device.
"""

import pathlib
import re
import socket
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'tests'))
from conftest import write_idx_folder  # pylint: disable=wrong-import-position
import test_distributed as td  # pylint: disable=wrong-import-position


def _max_diff(a, b):
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main():
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    data = write_idx_folder(root / 'idx')
    td._finish(td._main(root / 'one', data))
    td._finish(td._main(root / 'eight', data, devices=8))
    with socket.socket() as s:
      s.bind(('localhost', 0))
      port = s.getsockname()[1]
    procs = [td._main(root / 'two', data, extra=[
        f'--coordinator_address=localhost:{port}', '--num_processes=2',
        f'--process_id={i}']) for i in range(2)]
    logs = [td._finish(p) for p in procs]
    prints = [re.findall(r'final state fingerprint (\w+)', l)[0][:16]
              for l in logs]
    one = td._params(root / 'one', data)
    for name in ('eight', 'two'):
      other = td._params(root / name, data)
      print(f'{name}: max |param diff| {_max_diff(one[1].params, other[1].params):.3g}'
            f', max |BN stat diff| '
            f'{_max_diff(one[1].batch_stats, other[1].batch_stats):.3g}, '
            'train loss per epoch '
            f'{[r["train_loss"] for r in other[2]]} vs '
            f'{[r["train_loss"] for r in one[2]]}')
    print(f'two processes, final fingerprints: {prints[0]} {prints[1]} '
          f'({"identical" if prints[0] == prints[1] else "DIFFERENT"})')


if __name__ == '__main__':
  main()
