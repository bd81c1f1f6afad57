"""Runs a study declared as data, then tabulates and plots it.

    python experiments/runner.py experiments/listing.py --root=runs/studies \
        --set=manual_dir=../shared/data/mnist [--set=epochs=1] [--print_commands]

A study file defines STUDY = {'name', 'base': {flag: value}, 'variants':
{label: {flag: value}}, 'seeds': [...]}, and optionally 'pretrain': {name:
{flag: value}} for runs that variants start from (a variant's
`'init_from': '@name'` points at ROOT/NAME/pretrain/<name>; they train first)
and 'report': fn(rows, out_dir) for a study-specific figure or table. Each (variant, seed)
trains in ROOT/NAME/<variant>/seed<k> through train.train_and_evaluate, seed by
seed (so a study cut short has every variant at its first seeds); a run whose
results.json exists is skipped and an interrupted one resumes from its
checkpoint, so rerunning the command finishes a study. --print_commands prints
one `python main.py ...` line per run instead, for a cluster launcher (the
pretrain runs first); --summary_only tabulates the finished runs and trains
nothing; --from_runs_csv tabulates a committed study again from its runs.csv
(under --root=results/studies). --pack_seeds trains each variant's seeds
(consecutive, as in every study here) as one run of `--num_models=len(seeds)` in
ROOT/NAME/<variant>/seeds<first>-<last>, each model scored on its own: the
way to fill an accelerator at batch 16 (on the 2-core CPU it is slower than
one run per seed; see BENCHMARKS.md).

--backend=ray trains the runs at once, each as a Ray task in a worker process
of its own (--cpus_per_run, --gpus_per_run), on a local Ray instance or on the
cluster at --ray_address; variants start once the pretrain runs they
`init_from` have finished. A run whose worker or node dies is retried
(--max_retries) and resumes from its last checkpoint; a bad flag or data file
is reported, not retried. Workdirs are passed as absolute paths, so on a
cluster --root must be on storage that every node sees.

Outputs in ROOT/NAME: summary.md, summary.csv, runs.csv and summary.png (see
experiments/summary.py): per variant, the final accuracy's mean, std and 95%
confidence interval over seeds, on the validation split where the study holds
one out, else on the test set.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import socket
import sys
import time

from mnist_flax.config import Config
from mnist_flax.errors import UserError
import summary  # experiments/summary.py, beside this file.


def load_study(path: str) -> dict:
  if not (path.endswith('.py') and os.path.isfile(path)):
    raise SystemExit(f'error: {path}: not a study file (a .py file with STUDY)')
  spec = importlib.util.spec_from_file_location('study', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  study = getattr(module, 'STUDY', None)
  if not isinstance(study, dict):
    raise SystemExit(f'error: {path}: defines no STUDY dict')
  missing = {'name', 'variants', 'seeds'} - set(study)
  if missing:
    raise SystemExit(f'error: {path}: STUDY lacks {", ".join(sorted(missing))}')
  return study


def slug(label: str) -> str:
  return re.sub(r'[^A-Za-z0-9.+-]+', '_', label).strip('_')


def _coerce(name: str, value: str):
  field = {f.name: f for f in dataclasses.fields(Config)}.get(name)
  if field is None:
    raise SystemExit(f'error: --set {name}=...: no such flag')
  if field.type is bool:
    if value.lower() not in ('1', 'true', 'yes', '0', 'false', 'no'):
      raise SystemExit(f'error: --set {name}={value}: want true or false')
    return value.lower() in ('1', 'true', 'yes')
  try:
    return field.type(value)
  except ValueError:
    raise SystemExit(f'error: --set {name}={value}: want '
                     f'{"an integer" if field.type is int else "a number"}'
                     ) from None


def pretrain_dir(study: dict, root: str, name: str) -> str:
  return os.path.join(root, study['name'], 'pretrain', slug(name))


def pretrain_runs(study: dict, root: str, overrides: dict):
  """Yields (name, workdir, Config) for each run that variants start from."""
  for name, flags in study.get('pretrain', {}).items():
    values = {**study.get('base', {}), **overrides, **flags}
    yield (name, pretrain_dir(study, root, name),
           Config(**values).validate())


def runs(study: dict, root: str, overrides: dict):
  """Yields (label, seed, workdir, Config) for every run, seed by seed."""
  for seed in study['seeds']:
    for label, flags in study['variants'].items():
      values = {**study.get('base', {}), **flags, **overrides, 'seed': seed}
      source = values.get('init_from', '')
      if source.startswith('@'):
        if source[1:] not in study.get('pretrain', {}):
          raise SystemExit(f'error: variant {label!r}: init_from={source} '
                           'names no pretrain run of the study')
        values['init_from'] = pretrain_dir(study, root, source[1:])
      workdir = os.path.join(root, study['name'], slug(label), f'seed{seed}')
      yield label, seed, workdir, Config(**values).validate()


def _consecutive(seeds: list[int]) -> bool:
  """--num_models=K trains seeds s..s+K-1, so only such lists can be packed."""
  return seeds == list(range(seeds[0], seeds[0] + len(seeds)))


def packed_runs(study: dict, root: str, overrides: dict):
  """Yields (label, seeds, workdir, Config): one --num_models run a variant."""
  seeds = list(study['seeds'])
  if not _consecutive(seeds):
    raise SystemExit(f'error: --pack_seeds needs consecutive seeds, the '
                     f'study has {seeds}')
  for label, _, workdir, config in runs(
      {**study, 'seeds': seeds[:1]}, root, overrides):
    workdir = os.path.join(os.path.dirname(workdir),
                           f'seeds{seeds[0]}-{seeds[-1]}')
    yield label, seeds, workdir, dataclasses.replace(
        config, num_models=len(seeds)).validate()


def seed_results(study: dict, root: str, overrides: dict, label: str):
  """(seed, results.json) of each finished seed of a variant; a packed run's
  models count as its seeds, with their own accuracies."""
  one = {**study, 'variants': {label: study['variants'][label]}}
  found = {}
  for _, seed, workdir, _ in runs(one, root, overrides):
    path = os.path.join(workdir, 'results.json')
    if os.path.exists(path):
      with open(path) as f:
        found[seed] = json.load(f)
  if not found and _consecutive(list(study['seeds'])):
    for _, seeds, workdir, _ in packed_runs(one, root, overrides):
      path = os.path.join(workdir, 'results.json')
      if os.path.exists(path):
        with open(path) as f:
          res = json.load(f)
        robust = res.get('model_robustness_accuracy', {})
        for k, seed in enumerate(seeds):
          found[seed] = {
              'final_test_accuracy': res['model_final_test_accuracy'][k],
              'train_seconds': res['train_seconds'] / len(seeds),
              'robustness_accuracy': {n: a[k] for n, a in robust.items()}}
          if 'model_final_val_accuracy' in res:
            found[seed]['final_val_accuracy'] = res[
                'model_final_val_accuracy'][k]
  return sorted(found.items())


def command_line(workdir: str, config: Config) -> str:
  default = Config()
  flags = [f'--workdir={workdir}'] + [
      f'--{k}={v}' if not isinstance(v, bool) else (f'--{k}' if v else f'--no{k}')
      for k, v in dataclasses.asdict(config).items()
      if v != getattr(default, k)]
  return 'python main.py ' + ' '.join(shlex.quote(f) for f in flags)


def summarize(study: dict, root: str, overrides: dict,
              from_runs_csv: bool = False) -> list[dict]:
  """Writes the study's summary files (see summary.py); returns its rows.
  from_runs_csv: from the runs.csv already in the study's folder, not from
  its workdirs."""
  out = os.path.join(root, study['name'])
  if from_runs_csv:
    try:
      found = summary.read_runs_csv(out, study['variants'])
    except FileNotFoundError as e:
      raise UserError(f'--from_runs_csv: {e}') from None
  else:
    found = {label: seed_results(study, root, overrides, label)
             for label in study['variants']}
    if not any(found.values()):
      raise UserError(f'no finished runs of {study["name"]} under {root}: '
                      f'nothing to tabulate ({out} is left as it is)')
  return summary.write(study, out, found,
                       {**study.get('base', {}), **overrides})


@dataclasses.dataclass(frozen=True)
class RayBackend:
  """Where and how --backend=ray trains the runs."""
  address: str = ''  # Empty: start a local Ray instance.
  cpus_per_run: float = 1
  gpus_per_run: float = 0
  max_retries: int = 3  # Per run, for workers or nodes that die.
  keep_freed_memory: bool = False


def _train_in_worker(config: Config, workdir: str, keep_freed_memory: bool,
                     *after) -> tuple[str, float]:
  """One run, as a Ray task; `after` holds the pretrain runs it starts from,
  only so that Ray waits for them. Returns (host, seconds)."""
  del after
  if keep_freed_memory:
    from mnist_flax import hostmem  # pylint: disable=g-import-not-at-top
    hostmem.keep_freed_memory()  # Before JAX starts its threads.
  from mnist_flax import train  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  train.train_and_evaluate(config, workdir)
  return socket.gethostname(), time.perf_counter() - start


def _absolute_paths(config: Config) -> Config:
  """Workers may run in another folder, or on another machine."""
  return dataclasses.replace(config, **{
      k: os.path.abspath(getattr(config, k))
      for k in ('data_dir', 'manual_dir', 'init_from') if getattr(config, k)})


def _connect_ray(backend: RayBackend):
  """Imports Ray and joins (or starts) the instance; returns the module."""
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("error: --backend=ray needs Ray: pip install -e '.[ray]'",
          file=sys.stderr)
    sys.exit(2)
  host, _, port = backend.address.rpartition(':')
  if host and port.isdigit() and '://' not in host:
    try:  # Else ray.init retries an unreachable address for many minutes.
      socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
      raise UserError(f'--ray_address={backend.address}: {e}') from None
  try:
    ray.init(address=backend.address or None)
  except ConnectionError as e:
    raise UserError(f'--ray_address={backend.address}: '
                    f'{str(e).strip().splitlines()[0]}') from None
  for resource, need in (('CPU', backend.cpus_per_run),
                         ('GPU', backend.gpus_per_run)):
    most = max((n['Resources'].get(resource, 0) for n in ray.nodes()
                if n['Alive']), default=0)
    if need > most and not backend.address:  # A cluster may scale up.
      ray.shutdown()
      raise UserError(f'--{resource.lower()}s_per_run={need:g} but this '
                      f'machine has {most:g} {resource}s for Ray')
  return ray


def run_on_ray(planned: list, backend: RayBackend) -> None:
  """Trains (what, workdir, config) runs as Ray tasks; returns when all are
  done, or raises the first failure (cancelling the rest)."""
  ray = _connect_ray(backend)
  module = sys.modules[__name__]
  if module.__name__ != '__main__':  # Imported: workers cannot import it.
    ray.cloudpickle.register_pickle_by_value(module)
  env = {}
  if 0 < backend.gpus_per_run < 1:  # Runs share a GPU: no preallocation.
    env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  # Threads: Ray sets OMP_NUM_THREADS to the task's CPUs, which XLA:CPU does
  # not read; XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (with or without
  # intra_op_parallelism_threads=1) left the CPU time of a run's busiest
  # threads unchanged too (jax 0.10, measured); only the process's CPU
  # affinity sizes XLA's pools, and Ray assigns no cores. So a run uses the
  # node's cores as a local run does; num_cpus sets how many train at once.
  # max_calls=1: each run gets a fresh worker process, whose memory, threads
  # and device go when the run ends (as with one main.py a run).
  task = ray.remote(max_calls=1)(_train_in_worker).options(
      num_cpus=backend.cpus_per_run, num_gpus=backend.gpus_per_run,
      max_retries=backend.max_retries, retry_exceptions=False,
      runtime_env={'env_vars': env} if env else None)
  pretrain = {}  # Workdir -> the task training it, for variants to wait on.
  pending = {}
  for what, workdir, config in planned:
    after = [pretrain[config.init_from]] if config.init_from in pretrain else []
    ref = task.remote(config, workdir, backend.keep_freed_memory, *after)
    if what.startswith('pretrain '):
      pretrain[workdir] = ref
    pending[ref] = what
    print(f'[submit] {what} -> {workdir}', file=sys.stderr)
  try:
    while pending:
      [ref], _ = ray.wait(list(pending), num_returns=1)
      what = pending.pop(ref)
      try:
        host, seconds = ray.get(ref)
      except ray.exceptions.RayTaskError as e:  # Raised by the training.
        if isinstance(e.cause, UserError):
          raise type(e.cause)(f'{what}: {e.cause}') from None
        raise
      except ray.exceptions.RayError as e:  # Retries spent, or cancelled.
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise SystemExit(f'error: {what}: {type(e).__name__}: {first}')
      print(f'[done] {what} on {host} in {seconds:.0f} s', file=sys.stderr)
  finally:
    for ref in pending:
      ray.cancel(ref, force=True)
    ray.shutdown()


def run_study(path: str, root: str, overrides: dict,
              print_commands: bool = False, summary_only: bool = False,
              pack_seeds: bool = False,
              ray_backend: RayBackend | None = None,
              from_runs_csv: bool = False) -> list[dict]:
  """Trains the study's unfinished runs, here or (ray_backend) on Ray."""
  from mnist_flax import train  # pylint: disable=g-import-not-at-top
  study = load_study(path)
  if from_runs_csv:
    return summarize(study, root, overrides, from_runs_csv=True)
  if ray_backend:
    root = os.path.abspath(root)
  # Every config is built (and valid) before anything trains; pretrain first.
  planned = [(f'pretrain {name}', workdir, config)
             for name, workdir, config in pretrain_runs(study, root, overrides)]
  if pack_seeds:
    planned += [(f'{label} seeds {seeds}', workdir, config) for
                label, seeds, workdir, config in packed_runs(study, root,
                                                             overrides)]
  else:
    planned += [(f'{label} seed {seed}', workdir, config) for
                label, seed, workdir, config in runs(study, root, overrides)]
  to_train = []
  for what, workdir, config in planned:
    if summary_only:
      break
    if print_commands:
      print(command_line(workdir, config))
    elif os.path.exists(os.path.join(workdir, 'results.json')):
      print(f'[skip] {what}: done', file=sys.stderr)
    elif ray_backend:
      to_train.append((what, workdir, _absolute_paths(config)))
    else:
      print(f'[run] {what} -> {workdir}', file=sys.stderr)
      os.makedirs(os.path.dirname(workdir), exist_ok=True)
      train.train_and_evaluate(config, workdir)
  if to_train:
    run_on_ray(to_train, ray_backend)
  return [] if print_commands else summarize(study, root, overrides)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('study', help='a study file, e.g. experiments/listing.py')
  parser.add_argument('--root', default='runs/studies')
  parser.add_argument('--set', action='append', default=[], metavar='FLAG=V',
                      help='override a flag for every run (repeatable)')
  parser.add_argument('--print_commands', action='store_true')
  parser.add_argument('--summary_only', action='store_true',
                      help='only tabulate the runs that have finished')
  parser.add_argument('--from_runs_csv', action='store_true',
                      help="tabulate again from the runs.csv in the study's "
                      'folder under --root (e.g. results/studies), without '
                      'its workdirs')
  parser.add_argument('--pack_seeds', action='store_true',
                      help="train each variant's seeds as one --num_models "
                      'run (for accelerators)')
  parser.add_argument('--keep_freed_memory', action='store_true',
                      help="as main.py's flag: for big-batch studies on CPU")
  parser.add_argument('--backend', default='local', choices=('local', 'ray'),
                      help='train the runs one after another here (local), '
                      'or at once as Ray tasks (ray)')
  parser.add_argument('--ray_address', default='',
                      help='empty: start a local Ray instance; auto or '
                      'HOST:PORT: join that cluster')
  parser.add_argument('--cpus_per_run', type=float, default=1)
  parser.add_argument('--gpus_per_run', type=float, default=0)
  parser.add_argument('--max_retries', type=int, default=3,
                      help='with --backend=ray: retries of a run whose worker '
                      'or node dies')
  args = parser.parse_args()
  ray_backend = None
  if args.backend == 'ray':
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0 or args.max_retries < 0:
      raise SystemExit('error: --cpus_per_run must be > 0, --gpus_per_run '
                       'and --max_retries >= 0')
    ray_backend = RayBackend(
        address=args.ray_address, cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run, max_retries=args.max_retries,
        keep_freed_memory=args.keep_freed_memory)
  elif (args.ray_address, args.cpus_per_run, args.gpus_per_run,
        args.max_retries) != ('', 1, 0, 3):
    raise SystemExit('error: --ray_address, --cpus_per_run, --gpus_per_run '
                     'and --max_retries need --backend=ray')
  elif args.keep_freed_memory:
    from mnist_flax import hostmem  # pylint: disable=g-import-not-at-top
    hostmem.keep_freed_memory()  # Before JAX starts its threads.
  overrides = {}
  for item in args.set:
    name, _, value = item.partition('=')
    overrides[name] = _coerce(name, value)
  try:
    rows = run_study(args.study, args.root, overrides, args.print_commands,
                     args.summary_only, args.pack_seeds, ray_backend,
                     args.from_runs_csv)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  split = 'val' if rows and 'mean_val_accuracy' in rows[0] else 'test'
  for row in rows:
    print(f'{row["variant"]}: {split} '
          f'{100 * row[f"mean_{split}_accuracy"]:.2f} ± '
          f'{100 * row[f"std_{split}_accuracy"]:.2f}, 95% CI ± '
          f'{100 * row[f"ci95_{split}_accuracy"]:.2f} ({row["runs"]} runs)')


if __name__ == '__main__':
  main()
