"""Kill-and-resume harness: SIGKILL a training run at random moments, rerun it.

    python tests/kill_resume.py --kills=12 [--seed=0] [--json]

It trains a small model on a synthetic IDX dataset, once without interruption
(the reference) and once under a stream of SIGKILLs, rerunning the same command
after each kill until a run finishes by itself. About half the kills aim at a
checkpoint write: the harness watches for orbax's temporary folder and kills the
moment it appears. At the end the killed run's final params (checkpoint
fingerprint) and metrics must equal the reference's bit for bit.

tests/test_reliability.py runs a few kills in CI; the full loop is a script so
its figures can be recorded in BENCHMARKS.md.
"""

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))
sys.path.insert(0, str(REPO))

from conftest import write_idx_folder  # pylint: disable=g-import-not-at-top,wrong-import-position

TMP_SUFFIX = '.orbax-checkpoint-tmp'
TIMING_KEYS = ('seconds', 'train_images_per_s')


def command(workdir, data):
  return [sys.executable, str(REPO / 'main.py'), f'--workdir={workdir}',
          f'--manual_dir={data}', '--noverify_checksums', '--epochs=20',
          '--width=0.25', '--batch_size=16', '--eval_batch_size=40',
          '--log_every_s=1000']


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')


def _checkpoint_writing(workdir: pathlib.Path) -> bool:
  ckpts = workdir / 'checkpoints'
  try:
    return any(TMP_SUFFIX in name for name in os.listdir(ckpts))
  except FileNotFoundError:
    return False


def final_state(workdir: pathlib.Path):
  """(latest epoch, fingerprint of its state, metrics without timings)."""
  epochs = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                  if p.name.isdigit())
  meta = json.loads(
      (workdir / 'checkpoints' / str(epochs[-1]) / 'meta' / 'metadata')
      .read_text())
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').open()]
  rows = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]
  return epochs[-1], meta['fingerprint'], rows


def kill_loop(kills: int, seed: int, root: pathlib.Path) -> dict:
  rng = random.Random(seed)
  data = write_idx_folder(root / 'data', n_train=640, n_test=40)
  reference = root / 'reference'
  start = time.perf_counter()
  subprocess.run(command(reference, data), check=True, env=_env(),
                 capture_output=True)
  ref_seconds = time.perf_counter() - start

  done = during_write = runs = episodes = 0
  ref = final_state(reference)
  identical = True
  # An episode kills one workdir's run until it finishes by itself; episodes
  # repeat, each in a fresh workdir, until `kills` kills have been made.
  while done < kills:
    episodes += 1
    workdir = root / f'killed{episodes}'
    while True:
      runs += 1
      proc = subprocess.Popen(command(workdir, data), env=_env(),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
      if done < kills:
        # Half the kills wait for the next checkpoint write, however long.
        aim_at_write = rng.random() < 0.5
        deadline = time.perf_counter() + (
            float('inf') if aim_at_write
            else rng.uniform(0.1, 0.8) * ref_seconds)
        while proc.poll() is None and time.perf_counter() < deadline:
          if aim_at_write and _checkpoint_writing(workdir):
            break
          time.sleep(0.0005)
        if proc.poll() is None:
          writing = _checkpoint_writing(workdir)
          proc.send_signal(signal.SIGKILL)
          proc.wait()
          done += 1
          during_write += writing
          continue
      _, err = proc.communicate()
      if proc.returncode != 0:
        raise RuntimeError(
            f'run {runs} failed after {done} kills:\n{err[-3000:]}')
      break  # Finished by itself.
    identical &= final_state(workdir) == ref
  return {
      'kills_tried': done,
      'kills_during_checkpoint_write': during_write,
      'runs': runs,
      'episodes': episodes,
      'identical_to_uninterrupted': identical,
      'reference_seconds': round(ref_seconds, 1),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kills', type=int, default=12)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    result = kill_loop(args.kills, args.seed, pathlib.Path(tmp))
  if args.json:
    print(json.dumps(result))
  else:
    for k, v in result.items():
      print(f'{k}: {v}')
  sys.exit(0 if result['identical_to_uninterrupted'] else 1)


if __name__ == '__main__':
  main()
