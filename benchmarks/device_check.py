"""Every GPU figure of this project from one prepared command, into one JSON.

On the accelerator machine (one H200, no network, the project not installed,
the repository root as the working directory, the MNIST IDX files carried at
shared/data/mnist), through the wrapper that sets PYTHONPATH:

    bash benchmarks/device_check.sh --idx_dir=shared/data/mnist \\
        --out=$OUT/device_check.json

Here, on CPU, a few steps of each part (what CI runs; about 3 CPU-minutes):

    bash benchmarks/device_check.sh --dry_run --idx_dir=../shared/data/mnist \\
        --out=runs/device_check_dry.json

Parts run one after another, never in parallel, each in its own process group
under its own timeout: min(the part's cap, what is left of --budget_s after
keeping each later part's floor), so the whole run ends within --budget_s
(450 s: under 8 minutes with the kills' grace). Each part is a key of the
JSON with its exact command, exit status, seconds, status (ok, failed,
timeout or skipped, with a reason) and parsed figures; the file is rewritten
after every part, so a run cut short still leaves the parts done.

  env                     jax/jaxlib version, backend, devices; torch version
                          and torch.cuda.is_available(); nvidia-smi; which
                          optional modules are importable.
  tests                   pytest on tests/test_models.py and tests/test_train.py
                          (a test file whose top-level imports are missing,
                          e.g. tensorflow_datasets, is left out and named;
                          the part is skipped without pytest or hypothesis).
  loop_step_vs_scan_b16   benchmarks/loop_step_vs_scan.py --conv_impls=auto
  loop_step_vs_scan_b128  (lax on GPU, im2col on CPU): the real step, one
                          jitted call per step vs lax.scan, at batch 16, 128.
  num_models              benchmarks/multi_model_vmap.py --num_models=8: one
                          vmapped step of 8 models vs 8 sequential models.
  throughput_fp32         benchmarks/throughput.py --frameworks=jax,torch (and
  throughput_bf16         --dtype=bfloat16): the real step vs PyTorch eager on
                          the same device, and the GEMM peak there.
  seed30                  main.py, the 30-epoch seed recipe from the IDX files
                          (--loop=auto: scan on GPU): wall time, final test
                          accuracy, each epoch's test accuracy from
                          metrics.jsonl (also when it times out; rerun, and
                          it resumes from its checkpoints).
  time_to_99              benchmarks/time_to_99.py --seeds=3: the speedrun
                          preset, wall time and accuracy per seed.
  search_literature       only when --only names it: the recipe search's
                          round that costs hours a run on a CPU
                          (experiments/search_literature.py), each
                          variant's two seeds as one --num_models run;
                          validation and robustness accuracies per seed (the
                          runs' test column is left out of the JSON: the
                          round decides on validation). Alone on a device:
                          --only=search_literature --budget_s=560.

--dry_run: the same parts with a few steps each (--epochs=1
--train_examples=256 for the training parts, 1 seed for time to 99, one test,
2 models) and generous caps. Exit status 0 when every part succeeded or was
skipped for a stated reason, 1 when one failed or timed out. Workdirs go under
--work_root (runs/device_check_work, or ..._dry_work with --dry_run, which
starts afresh), never under $OUT, so only the JSON comes back from a device.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
OPTIONAL = ('torch', 'pytest', 'hypothesis', 'tensorflow',
            'tensorflow_datasets', 'keras', 'matplotlib')
IDX_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
             't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
TEST_FILES = ('tests/test_models.py', 'tests/test_train.py')
TAIL = 2000  # Characters of each part's stdout and stderr kept in the JSON.


def has_module(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


# --- env: run as a child (`--env_probe`), so a hung CUDA init is a timeout.

def env_probe() -> None:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  out = {'python': sys.version.split()[0], 'hostname': socket.gethostname(),
         'cpu_count': os.cpu_count(),
         'importable': {m: has_module(m) for m in OPTIONAL}, 'versions': {}}
  for dist in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy',
               'torch', 'tensorflow', 'pytest', 'hypothesis', 'matplotlib'):
    out['versions'][dist] = None
    for name in (dist, f'{dist}-cpu'):  # tensorflow-cpu, say.
      try:
        out['versions'][dist] = metadata.version(name)
        break
      except metadata.PackageNotFoundError:
        pass
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  out['jax'] = {'version': jax.__version__, 'backend': jax.default_backend(),
                'device_count': len(devices),
                'devices': [str(d) for d in devices],
                'device_kind': devices[0].device_kind}
  if has_module('torch'):
    import torch  # pylint: disable=g-import-not-at-top
    cuda = torch.cuda.is_available()
    out['torch'] = {'version': torch.__version__, 'cuda_available': cuda,
                    'cuda_version': torch.version.cuda,
                    'device_name': (torch.cuda.get_device_name() if cuda
                                    else None)}
  else:
    out['torch'] = 'skipped: torch not installed'
  if shutil.which('nvidia-smi'):
    proc = subprocess.run(
        ['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
         '--format=csv,noheader'], capture_output=True, text=True, timeout=30)
    out['nvidia_smi'] = proc.stdout.strip() or proc.stderr.strip()
  else:
    out['nvidia_smi'] = 'skipped: nvidia-smi not found'
  print(json.dumps(out))


# --- Parsers: (stdout, stderr, part) -> figures.

def last_json(stdout: str, *_) -> dict:
  for line in reversed(stdout.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  return {}


def pytest_counts(stdout: str, *_) -> dict:
  lines = [l for l in stdout.splitlines() if re.search(r' in [\d.]+s', l)]
  if not lines:  # Cut short: count the progress characters so far.
    marks = ''.join(re.findall(r'^([.FEsxX]+) *\[ *\d+%\]$', stdout, re.M))
    names = {'.': 'passed', 'F': 'failed', 'E': 'errors', 's': 'skipped',
             'x': 'xfailed', 'X': 'xpassed'}
    return {'counts_so_far': {names[c]: marks.count(c) for c in set(marks)}}
  counts = {word: int(n) for n, word in re.findall(r'(\d+) (\w+)', lines[-1])}
  return {'counts': counts, 'summary': lines[-1].strip('= ')}


def study_validation(stdout: str, stderr: str, part: dict) -> dict:
  """The study's runs.csv without its test column, row by row."""
  path = os.path.join(part['study'], 'runs.csv')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = list(csv.DictReader(f))
  return {'runs': [{k: v for k, v in row.items() if 'test' not in k}
                   for row in rows]}


def seed_run(stdout: str, stderr: str, part: dict) -> dict:
  """main.py's run: results.json if written, else the epochs completed."""
  workdir = part['workdir']
  figures = {'epochs_before_this_run': part.get('epochs_before', 0)}
  path = os.path.join(workdir, 'metrics.jsonl')
  if os.path.exists(path):
    with open(path) as f:
      rows = [json.loads(l) for l in f if l.strip()]
    figures['epochs_completed'] = len(rows)
    figures['epochs'] = [
        {k: r[k] for k in ('epoch', 'test_accuracy', 'seconds',
                           'train_images_per_s') if k in r} for r in rows]
    figures['train_and_eval_seconds'] = round(
        sum(r.get('seconds', 0.0) for r in rows), 2)
  path = os.path.join(workdir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      res = json.load(f)
    figures.update({k: res[k] for k in (
        'final_test_accuracy', 'final_test_loss', 'best_test_accuracy',
        'best_epoch', 'train_seconds') if k in res})
  return figures


def throughput_problem(figures: dict) -> str:
  """The project's own step must be measured; a peer may be skipped only
  for not being installed."""
  if 'jax' not in figures.get('images_per_s', {}):
    return f'the JAX step was not measured: {figures.get("skipped", {})}'
  broken = {n: why for n, why in figures.get('skipped', {}).items()
            if 'No module named' not in why}
  return f'skipped for another reason than a missing module: {broken}' if (
      broken) else ''


def time_to_99(stdout: str, *_) -> dict:
  figures = last_json(stdout)
  if not figures:  # Cut short: the seeds that finished.
    seeds = re.findall(r'seed (\d+): ([\d.]+) s .*?test accuracy ([\d.]+)%',
                       stdout)
    figures = {'seconds': [float(s) for _, s, _ in seeds],
               'test_accuracy': [float(a) / 100 for _, _, a in seeds]}
  return figures


# --- The plan.

def test_selection(dry_run: bool) -> tuple[list[str] | None, dict, str]:
  """(pytest arguments or None, files left out -> why, reason if None)."""
  if not has_module('pytest'):
    return None, {}, 'skipped: pytest not installed'
  missing = missing_imports(os.path.join(REPO, 'tests', 'conftest.py'))
  if missing:  # hypothesis, say.
    return None, {}, (f'skipped: {", ".join(missing)} not installed '
                      '(tests/conftest.py imports it)')
  if dry_run:
    return ['tests/test_models.py', '-k', 'auto_conv_impl'], {}, ''
  files, left_out = [], {}
  for f in TEST_FILES:
    missing = missing_imports(os.path.join(REPO, f))
    if missing:
      left_out[f] = f'not installed: {", ".join(missing)}'
    else:
      files.append(f)
  if not files:
    return None, left_out, 'skipped: every test file needs a missing module'
  return files, left_out, ''


def missing_imports(path: str) -> list[str]:
  """Top-level imports of a file that are neither local nor importable."""
  with open(path) as f:
    tree = ast.parse(f.read())
  local = {os.path.splitext(n)[0] for n in os.listdir(os.path.dirname(path))}
  local.add('mnist_flax')
  roots = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      roots.update(a.name.split('.')[0] for a in node.names)
    elif isinstance(node, ast.ImportFrom) and not node.level:
      roots.add(node.module.split('.')[0])
  return sorted(m for m in roots - local if not has_module(m))


def plan(args) -> list[dict]:
  """The parts in order: name, argv, cap and floor (seconds), parser."""
  dry, idx, work = args.dry_run, args.idx_dir, args.work_root
  train_flags = ['--epochs=1', '--train_examples=256'] if dry else []
  parts = [dict(name='env', cap=45, floor=10, parse=last_json,
                argv=[PY, 'benchmarks/device_check.py', '--env_probe'])]

  tests, left_out, why = test_selection(dry)
  parts.append(dict(
      name='tests', cap=90, floor=20, parse=pytest_counts, left_out=left_out,
      skip=why, argv=[PY, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
      + (tests or [])))

  steps = '--steps=3' if dry else '--steps=500'
  for b in (16, 128):
    parts.append(dict(
        name=f'loop_step_vs_scan_b{b}', cap=60, floor=15, parse=last_json,
        argv=[PY, 'benchmarks/loop_step_vs_scan.py', steps, f'--batch_size={b}',
              '--conv_impls=auto', '--json']))
  parts.append(dict(
      name='num_models', cap=60, floor=15, parse=last_json,
      argv=[PY, 'benchmarks/multi_model_vmap.py',
            '--num_models=2' if dry else '--num_models=8',
            '--steps=2' if dry else '--steps=100',
            '--repeats=1' if dry else '--repeats=2', '--json']))
  for dtype, flags in (('fp32', []), ('bf16', ['--dtype=bfloat16'])):
    parts.append(dict(
        name=f'throughput_{dtype}', cap=60, floor=20, parse=last_json,
        check=throughput_problem,
        argv=[PY, 'benchmarks/throughput.py', '--frameworks=jax,torch',
              '--steps=3' if dry else '--steps=300',
              '--repeats=1' if dry else '--repeats=2', *flags, '--json']))

  idx_missing = [f for f in IDX_FILES
                 if not os.path.exists(os.path.join(idx, f))]
  no_idx = (f'no MNIST IDX files at --idx_dir={idx}: missing '
            f'{", ".join(idx_missing)}' if idx_missing else '')
  workdir = os.path.join(work, 'seed30')
  parts.append(dict(
      name='seed30', cap=240, floor=60, parse=seed_run, workdir=workdir,
      fail=no_idx,
      argv=[PY, 'main.py', f'--workdir={workdir}', f'--manual_dir={idx}',
            '--noverify_checksums', '--notensorboard'] + train_flags
      + (['--robustness_examples=0'] if dry else [])))
  extra = ['--noverify_checksums'] + train_flags
  parts.append(dict(
      name='time_to_99', cap=100, floor=40, parse=time_to_99, fail=no_idx,
      argv=[PY, 'benchmarks/time_to_99.py', f'--manual_dir={idx}',
            '--seeds=1' if dry else '--seeds=3',
            f'--root={os.path.join(work, "speedrun")}',
            *[f'--extra_flag={f}' for f in extra], '--json']))
  parts.append(dict(
      name='search_literature', cap=540, floor=120, parse=study_validation,
      fail=no_idx, opt_in=True,
      study=os.path.join(work, 'search_literature'),
      argv=[PY, 'experiments/runner.py', 'experiments/search_literature.py',
            f'--root={work}', f'--set=manual_dir={idx}',
            '--set=verify_checksums=false', '--set=tensorboard=false',
            '--pack_seeds']
      + [f'--set={f[2:]}' for f in train_flags]
      + (['--set=robustness_examples=0'] if dry else [])))
  if dry:  # Generous caps: a shared CPU; the steps are few anyway.
    for part in parts:
      part['cap'] = max(part['cap'], 300)
  return parts


# --- Running.

RUNNING = []  # The part's process, for the signal handler.


def run_part(part: dict, timeout: float, env: dict) -> dict:
  rec = {'command': shlex.join(part['argv']), 'cwd': REPO,
         'timeout_s': round(timeout, 1)}
  start = time.perf_counter()
  proc = subprocess.Popen(part['argv'], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True)
  RUNNING[:] = [proc]
  try:
    stdout, stderr = proc.communicate(timeout=timeout)
    rec['status'] = 'ok' if proc.returncode == 0 else 'failed'
  except subprocess.TimeoutExpired:
    stdout, stderr = stop(proc)
    rec['status'] = 'timeout'
  RUNNING.clear()
  rec['exit_status'] = proc.returncode
  rec['seconds'] = round(time.perf_counter() - start, 2)
  try:
    rec['figures'] = part['parse'](stdout, stderr, part)
  except (ValueError, KeyError, OSError) as e:
    rec['figures'] = {}
    rec['parse_error'] = f'{type(e).__name__}: {e}'
  if rec['status'] == 'ok':
    problem = ('no figures in its output' if not rec['figures'] else
               part.get('check', lambda _: '')(rec['figures']))
    if problem:
      rec.update(status='failed', reason=problem)
  missing = sorted(set(re.findall(r"No module named '([\w.]+)'", stderr)))
  if missing:
    rec['missing_modules'] = missing
    if rec['status'] != 'ok' and 'reason' not in rec:
      rec['reason'] = f'a module is not installed: {", ".join(missing)}'
  if rec['status'] == 'timeout':
    rec['reason'] = f'timed out after {timeout:.0f} s (killed)'
  rec['stdout_tail'] = stdout[-TAIL:]
  rec['stderr_tail'] = stderr[-TAIL:]
  return rec


def stop(proc) -> tuple[str, str]:
  """SIGTERM to the part's process group, SIGKILL 10 s later; its output."""
  for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      pass
    try:
      return proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
      continue
  return '', ''


def on_signal(signum, _frame):
  """Stopped from outside: stop the running part's process group too."""
  for proc in RUNNING:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  sys.exit(128 + signum)


def epochs_done(workdir: str) -> int:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for l in f if l.strip())


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[1:]))
  parser.add_argument('--dry_run', action='store_true',
                      help='A few steps of each part (CPU, CI).')
  parser.add_argument('--idx_dir', default=os.path.join(REPO, 'shared', 'data',
                                                        'mnist'),
                      help='Folder of the four MNIST IDX .gz files '
                      '(default: shared/data/mnist in the repository).')
  default_out = (os.path.join(os.environ['OUT'], 'device_check.json')
                 if os.environ.get('OUT') else
                 os.path.join(REPO, 'runs', 'device_check.json'))
  parser.add_argument('--out', default=default_out,
                      help='The JSON file (default: $OUT/device_check.json '
                      'if $OUT is set, else runs/device_check.json).')
  parser.add_argument('--work_root', default='',
                      help='Workdirs of the training parts (default: '
                      'runs/device_check_work, or runs/device_check_dry_work '
                      'with --dry_run).')
  parser.add_argument('--budget_s', type=float, default=0,
                      help='The whole run\'s time limit (default: 450 s, '
                      '1800 s with --dry_run).')
  parser.add_argument('--only', default='',
                      help='Comma list of parts to run (default: all but '
                      'search_literature).')
  parser.add_argument('--env_probe', action='store_true',
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.env_probe:
    env_probe()
    return
  args.idx_dir = os.path.abspath(args.idx_dir)
  args.out = os.path.abspath(args.out)
  args.work_root = os.path.abspath(args.work_root or os.path.join(
      REPO, 'runs', 'device_check_dry_work' if args.dry_run
      else 'device_check_work'))
  budget = args.budget_s or (1800 if args.dry_run else 450)
  if args.dry_run:
    shutil.rmtree(args.work_root, ignore_errors=True)
  os.makedirs(args.work_root, exist_ok=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)

  paths = [REPO] + os.environ.get('PYTHONPATH', '').split(os.pathsep)
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in paths if p)))
  parts = plan(args)
  if args.only:
    names = args.only.split(',')
    unknown = set(names) - {p['name'] for p in parts}
    if unknown:
      parser.error(f'--only: unknown parts {sorted(unknown)}; choose from '
                   + ', '.join(p['name'] for p in parts))
    parts = [p for p in parts if p['name'] in names]
  else:
    parts = [p for p in parts if not p.get('opt_in')]

  for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, on_signal)
  started = time.perf_counter()
  deadline = started + budget
  report = {'device_check': {
      'dry_run': args.dry_run, 'idx_dir': args.idx_dir,
      'work_root': args.work_root, 'budget_s': budget,
      'started_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'python': PY, 'pythonpath': env['PYTHONPATH'], 'cwd': REPO}}

  def write():
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(report, f, indent=1)
      f.write('\n')
    os.replace(tmp, args.out)

  for i, part in enumerate(parts):
    name = part['name']
    later = sum(p['floor'] for p in parts[i + 1:])
    timeout = min(part['cap'], deadline - time.perf_counter() - later)
    print(f'[{time.perf_counter() - started:6.1f} s] {name}: ', end='',
          flush=True)
    if part.get('skip'):
      rec = {'status': 'skipped', 'reason': part['skip']}
    elif part.get('fail'):
      rec = {'status': 'failed', 'reason': part['fail']}
    elif timeout < part['floor']:
      rec = {'status': 'skipped',
             'reason': f'time budget: {timeout:.0f} s left for it, under its '
                       f'floor of {part["floor"]} s (--budget_s={budget:g})'}
    else:
      if 'workdir' in part:
        part['epochs_before'] = epochs_done(part['workdir'])
      rec = run_part(part, timeout, env)
    if part.get('left_out'):
      rec['left_out'] = part['left_out']
    report[name] = rec
    write()
    print(f'{rec["status"]} {rec.get("seconds", 0):.1f} s'
          + (f' ({rec["reason"]})' if rec.get('reason') else ''), flush=True)

  statuses = {p['name']: report[p['name']]['status'] for p in parts}
  bad = [n for n, s in statuses.items() if s in ('failed', 'timeout')]
  meta = report['device_check']
  meta.update(statuses=statuses,
              seconds=round(time.perf_counter() - started, 1),
              exit_status=1 if bad else 0)
  backend = report.get('env', {}).get('figures', {}).get('jax', {}).get(
      'backend')
  if backend == 'cpu' and not args.dry_run:
    meta['warning'] = 'JAX ran on the CPU: these are no GPU figures'
  write()
  print(f'{args.out}: {meta["seconds"]:.0f} s, '
        + (f'failed: {", ".join(bad)}' if bad else 'every part ok or skipped'))
  sys.exit(meta['exit_status'])


if __name__ == '__main__':
  main()
