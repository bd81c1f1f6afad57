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
nothing. --pack_seeds trains each variant's seeds (consecutive, as in every
study here) as one run of `--num_models=len(seeds)` in
ROOT/NAME/<variant>/seeds<first>-<last>, each model scored on its own: the
way to fill an accelerator at batch 16 (on the 2-core CPU it is slower than
one run per seed; see BENCHMARKS.md).

Outputs in ROOT/NAME: summary.md and summary.csv (final test accuracy, mean and
std over seeds, per variant, and the mean accuracy on each robustness set when
the runs scored them), runs.csv (every finished run's figures) and summary.png
(test accuracy with error bars).
"""

import argparse
import csv
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import statistics
import sys

from mnist_flax.config import Config
from mnist_flax.errors import UserError


def load_study(path: str) -> dict:
  spec = importlib.util.spec_from_file_location('study', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  study = module.STUDY
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
    return value.lower() in ('1', 'true', 'yes')
  return field.type(value)


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
  return sorted(found.items())


def command_line(workdir: str, config: Config) -> str:
  default = Config()
  flags = [f'--workdir={workdir}'] + [
      f'--{k}={v}' if not isinstance(v, bool) else (f'--{k}' if v else f'--no{k}')
      for k, v in dataclasses.asdict(config).items()
      if v != getattr(default, k)]
  return 'python main.py ' + ' '.join(shlex.quote(f) for f in flags)


def summarize(study: dict, root: str, overrides: dict) -> list[dict]:
  """Writes summary.{md,csv,png}; returns the rows."""
  rows, per_run = [], []
  robust_sets = []
  for label in study['variants']:
    accs, robust = [], {}
    for seed, res in seed_results(study, root, overrides, label):
      accs.append(res['final_test_accuracy'])
      per_run.append({'variant': label, 'seed': seed,
                      'final_test_accuracy': res['final_test_accuracy'],
                      'train_seconds': round(res['train_seconds'], 1),
                      **{f'{n}_accuracy': a for n, a in
                         res.get('robustness_accuracy', {}).items()}})
      for name, acc in res.get('robustness_accuracy', {}).items():
        robust.setdefault(name, []).append(acc)
        if name not in robust_sets:
          robust_sets.append(name)
    rows.append({
        'variant': label, 'runs': len(accs),
        'mean_test_accuracy': statistics.mean(accs) if accs else float('nan'),
        'std_test_accuracy': statistics.stdev(accs) if len(accs) > 1 else 0.0,
        **{f'mean_{n}_accuracy': statistics.mean(v) for n, v in robust.items()},
    })
  for row in rows:  # Same columns in every row, for the CSV.
    for name in robust_sets:
      row.setdefault(f'mean_{name}_accuracy', float('nan'))
  out = os.path.join(root, study['name'])
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'summary.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out, 'runs.csv'), 'w', newline='') as f:
    fields = list(dict.fromkeys(k for r in per_run for k in r)) or ['variant']
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(per_run)
  base = {**study.get('base', {}), **overrides}
  lines = [f'# Study: {study["name"]}', '',
           f'Base flags: `{json.dumps(base, sort_keys=True)}`; seeds '
           f'{study["seeds"]}; final test accuracy, mean ± std over seeds'
           + ('; then the mean accuracy on each robustness set '
              '(mnist_flax/robustness.py).' if robust_sets else '.'), '',
           '| variant | flags | runs | test accuracy (%) |'
           + ''.join(f' {n} (%) |' for n in robust_sets),
           '|---|---|---|---|' + '---|' * len(robust_sets)]
  for row in rows:
    flags = json.dumps(study['variants'][row['variant']], sort_keys=True)
    lines.append(f'| {row["variant"]} | `{flags}` | {row["runs"]} | '
                 f'{100 * row["mean_test_accuracy"]:.2f} ± '
                 f'{100 * row["std_test_accuracy"]:.2f} |'
                 + ''.join(f' {100 * row[f"mean_{n}_accuracy"]:.2f} |'
                           for n in robust_sets))
  with open(os.path.join(out, 'summary.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(rows), 4))
  ax.bar(range(len(rows)), [100 * r['mean_test_accuracy'] for r in rows],
         yerr=[100 * r['std_test_accuracy'] for r in rows], capsize=4)
  ax.set_xticks(range(len(rows)), [r['variant'] for r in rows], rotation=30,
                ha='right')
  lo = min((100 * r['mean_test_accuracy'] for r in rows if r['runs']),
           default=0)
  ax.set_ylim(max(0, lo - 1), 100)
  ax.set(ylabel='test accuracy (%)', title=f'study: {study["name"]}')
  fig.tight_layout()
  fig.savefig(os.path.join(out, 'summary.png'), dpi=100)
  plt.close(fig)
  if 'report' in study:
    study['report'](rows, out)
  return rows


def run_study(path: str, root: str, overrides: dict,
              print_commands: bool = False, summary_only: bool = False,
              pack_seeds: bool = False) -> list[dict]:
  from mnist_flax import train  # pylint: disable=g-import-not-at-top
  study = load_study(path)
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
  for what, workdir, config in planned:
    if summary_only:
      break
    if print_commands:
      print(command_line(workdir, config))
    elif os.path.exists(os.path.join(workdir, 'results.json')):
      print(f'[skip] {what}: done', file=sys.stderr)
    else:
      print(f'[run] {what} -> {workdir}', file=sys.stderr)
      os.makedirs(os.path.dirname(workdir), exist_ok=True)
      train.train_and_evaluate(config, workdir)
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
  parser.add_argument('--pack_seeds', action='store_true',
                      help="train each variant's seeds as one --num_models "
                      'run (for accelerators)')
  parser.add_argument('--keep_freed_memory', action='store_true',
                      help="as main.py's flag: for big-batch studies on CPU")
  args = parser.parse_args()
  if args.keep_freed_memory:
    from mnist_flax import hostmem  # pylint: disable=g-import-not-at-top
    hostmem.keep_freed_memory()  # Before JAX starts its threads.
  overrides = {}
  for item in args.set:
    name, _, value = item.partition('=')
    overrides[name] = _coerce(name, value)
  try:
    rows = run_study(args.study, args.root, overrides, args.print_commands,
                     args.summary_only, args.pack_seeds)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  for row in rows:
    print(f'{row["variant"]}: {100 * row["mean_test_accuracy"]:.2f} ± '
          f'{100 * row["std_test_accuracy"]:.2f} ({row["runs"]} runs)')


if __name__ == '__main__':
  main()
