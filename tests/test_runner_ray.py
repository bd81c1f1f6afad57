"""experiments/runner.py --backend=ray on a real two-node Ray cluster on this
machine: the same results as the local backend, also when a node dies."""

import csv
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMALL_MODEL, write_idx_folder

sys.path.insert(0, str(REPO / 'experiments'))
import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec('ray') is None,
                       reason="needs Ray: pip install -e '.[ray]'"),
]

EPOCHS = 20  # With 1920 examples: seconds after a first checkpoint to kill in.
PRETRAIN_EPOCHS = 60  # Outlasts the scratch run by seconds, so a transfer
                      # run that did not wait for it would start meanwhile.
STUDY = {
    'name': 'tiny',
    'base': {**SMALL_MODEL, 'epochs': EPOCHS, 'eval_batch_size': 8,
             'log_every_s': 1000.0, 'robustness_examples': 0,
             'tensorboard': False},
    'pretrain': {'source': {'classes': '0,1,2,3,4',
                            'epochs': PRETRAIN_EPOCHS}},
    'variants': {'scratch': {'classes': '5,6,7,8,9'},
                 'transfer': {'classes': '5,6,7,8,9', 'init_from': '@source',
                              'finetune': 'linear'}},
    'seeds': [0],
}
RUNS = ('pretrain/source', 'scratch/seed0', 'transfer/seed0')
TIMING_KEYS = ('train_seconds', 'seconds', 'train_images_per_s')


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  """(study file, its data flags, the local backend's study folder)."""
  tmp = tmp_path_factory.mktemp('study')
  path = tmp / 'tiny.py'
  path.write_text(f'STUDY = {STUDY!r}\n')
  data = write_idx_folder(tmp / 'idx', n_train=1920)
  overrides = {'manual_dir': str(data), 'verify_checksums': False}
  runner.run_study(str(path), str(tmp / 'local'), overrides)
  return path, overrides, tmp / 'local' / 'tiny'


@pytest.fixture
def cluster():
  """A head that trains nothing and two worker nodes of one CPU each."""
  from ray import cluster_utils  # pylint: disable=g-import-not-at-top
  c = cluster_utils.Cluster(initialize_head=True,
                            head_node_args={'num_cpus': 0})
  for _ in range(2):
    c.add_node(num_cpus=1)
  c.wait_for_nodes()
  yield c
  c.shutdown()


def _start_runner(study_path, overrides, root, address):
  """The runner's command line against the cluster; (process, log file)."""
  log = root.parent / f'{root.name}.log'
  with open(log, 'w') as f:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'experiments' / 'runner.py'),
         str(study_path), f'--root={root}', '--backend=ray',
         f'--ray_address={address}', '--cpus_per_run=1',
         *(f'--set={k}={v}' for k, v in overrides.items())],
        stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  return proc, log


def _finish(proc, log):
  assert proc.wait(timeout=900) == 0, log.read_text()[-5000:]


def _run_figures(run_dir):
  """results.json and metrics.jsonl without their timings."""
  results = json.loads((run_dir / 'results.json').read_text())
  metrics = [json.loads(line) for line in
             (run_dir / 'metrics.jsonl').read_text().splitlines()]
  drop = lambda d: {k: v for k, v in d.items() if k not in TIMING_KEYS}
  return drop(results), [drop(m) for m in metrics]


def _assert_same_study(local, ray_out):
  for name in ('summary.md', 'summary.csv', 'summary.png'):
    assert (ray_out / name).read_bytes() == (local / name).read_bytes(), name
  def runs_csv(out):
    with open(out / 'runs.csv', newline='') as f:
      return [{k: v for k, v in row.items() if k not in TIMING_KEYS}
              for row in csv.DictReader(f)]
  assert runs_csv(ray_out) == runs_csv(local)
  for run in RUNS:
    assert _run_figures(ray_out / run) == _run_figures(local / run), run
  # The transfer run started after the pretrain run, from its last epoch.
  transfer, pretrain = ray_out / 'transfer/seed0', ray_out / 'pretrain/source'
  assert ((transfer / 'config.json').stat().st_mtime
          >= (pretrain / 'results.json').stat().st_mtime)
  source = json.loads((transfer / 'init_from.json').read_text())
  assert source['source'] == str(pretrain)
  assert source['source_epoch'] == PRETRAIN_EPOCHS


def test_ray_cluster_gives_the_local_backends_results(study, cluster,
                                                      tmp_path):
  path, overrides, local = study
  assert json.loads((local / 'scratch/seed0/results.json').read_text())[
      'final_test_accuracy'] > 0.5  # A model that learned, not a constant.
  proc, log = _start_runner(path, overrides, tmp_path / 'ray', cluster.address)
  _finish(proc, log)
  _assert_same_study(local, tmp_path / 'ray' / 'tiny')


def _has_checkpoint(workdir) -> bool:
  folder = workdir / 'checkpoints'
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def _children(pid: int) -> list[int]:
  """Processes whose parent is pid (a raylet's are its node's workers)."""
  found = []
  for entry in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{entry}/stat') as f:
        if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
          found.append(int(entry))
    except OSError:  # Gone meanwhile.
      pass
  return found


def test_a_node_dies_mid_run_and_the_study_still_matches(study, cluster,
                                                         tmp_path):
  path, overrides, local = study
  root = tmp_path / 'ray'
  out = root / 'tiny'
  proc, log = _start_runner(path, overrides, root, cluster.address)
  # The pretrain and scratch runs train at once, one on each node: wait
  # until both have a checkpoint, then take a node away with its workers.
  in_flight = [out / 'pretrain/source', out / 'scratch/seed0']
  deadline = time.time() + 600
  while not all(_has_checkpoint(d) for d in in_flight):
    assert proc.poll() is None and time.time() < deadline, log.read_text()
    time.sleep(0.05)
  node = next(iter(cluster.worker_nodes))
  raylet = node.all_processes['raylet'][0].process.pid
  for pid in [raylet, *_children(raylet)]:  # The node dies all at once...
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  cluster.remove_node(node, allow_graceful=False)  # ...and goes for good.
  # Nothing had finished: the killed node's run was cut short.
  assert not any((d / 'results.json').exists() for d in in_flight)
  _finish(proc, log)
  _assert_same_study(local, out)
  # The cut-short run resumed from its checkpoint in a new process: its
  # history has two epochs that compiled the step (the first, and the one
  # after the checkpoint), not one.
  slow_epochs = []
  for d in in_flight:
    seconds = [json.loads(line)['seconds']
               for line in (d / 'metrics.jsonl').read_text().splitlines()]
    slow_epochs.append(sum(s > 5 * statistics.median(seconds)
                           for s in seconds))
  assert sorted(slow_epochs) == [1, 2], slow_epochs
