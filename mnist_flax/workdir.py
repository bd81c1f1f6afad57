"""The run directory: the one place that knows its layout.

    WORKDIR/config.json          the run's Config (written before training)
    WORKDIR/metrics.jsonl        one row per epoch
    WORKDIR/results.json         the final evaluation
    WORKDIR/init_from.json       what --init_from loaded
    WORKDIR/checkpoints/EPOCH/   orbax checkpoints (see checkpointing.py)
    WORKDIR/*.png, events.*      plots and TensorBoard files (see report.py)

`prepare_workdir` creates it (and its parents) and refuses a workdir that holds
a run of another config, `write_config` writes config.json; `read_config` and
`load_run` read one back, for predict, transfer and the experiments alike;
`copy_run` copies what a Predictor needs (config, results, one checkpoint) to
ship a trained model.
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Any

from absl import logging

from mnist_flax import checkpointing
from mnist_flax import models
from mnist_flax import state as state_lib
from mnist_flax.config import Config
from mnist_flax.config import semantic_diff
from mnist_flax.errors import CheckpointError
from mnist_flax.errors import ConfigError

CONFIG = 'config.json'
METRICS = 'metrics.jsonl'
RESULTS = 'results.json'
INIT_FROM = 'init_from.json'
IMAGE_SHAPE = (28, 28)


def write_atomic(path: str, text: str) -> None:
  """Writes via a temporary file and a rename, so a kill leaves old or new."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  write_atomic(path, json.dumps(obj, indent=2) + '\n')


def read_config(workdir: str) -> Config:
  """The Config a run was started with; CheckpointError if there is none."""
  path = os.path.join(workdir, CONFIG)
  try:
    with open(path) as f:
      return Config.from_dict(json.load(f)).validate()
  except FileNotFoundError:
    raise CheckpointError(f'{path}: not found; is {workdir} a run '
                          'directory?') from None
  except (OSError, ValueError, TypeError, ConfigError) as e:
    raise CheckpointError(f'{path}: unreadable ({e})') from None


def read_results(workdir: str) -> dict | None:
  """results.json as a dict, or None while the run has not finished."""
  path = os.path.join(workdir, RESULTS)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path}: unreadable ({e})') from None
  names = results.get('class_names', []) if isinstance(results, dict) else None
  if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
    raise CheckpointError(f'{path}: unreadable (not the results of a run)')
  return results


def prepare_workdir(config: Config, workdir: str, restart: bool) -> None:
  """Creates workdir (with its parents); refuses a workdir that holds a run
  of another config unless `restart` moves it aside."""
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir={workdir} exists and is not a folder')
  config_path = os.path.join(workdir, CONFIG)
  checkpoints = os.path.join(workdir, 'checkpoints')
  orphans = (not os.path.exists(config_path) and os.path.isdir(checkpoints)
             and bool(os.listdir(checkpoints)))
  if orphans and not restart:
    raise CheckpointError(
        f'{workdir} holds checkpoints but no {CONFIG}, so whose they are is '
        'unknown; use a new --workdir, or pass --restart to move them aside')
  if os.path.exists(config_path) or orphans:
    try:
      diff = semantic_diff(read_config(workdir), config)
    except CheckpointError as e:
      diff = {CONFIG: (f'unreadable ({e})', '')}
    if diff and not restart:
      changes = '; '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())
      raise CheckpointError(
          f'{workdir} holds a run with another config ({changes}); use a new '
          '--workdir, or pass --restart to move the old run aside')
    if diff:
      aside = f'{workdir}.old-{time.strftime("%Y%m%d-%H%M%S")}'
      n = 1
      while os.path.exists(aside):  # Two restarts within a second.
        n += 1
        aside = f'{workdir}.old-{time.strftime("%Y%m%d-%H%M%S")}-{n}'
      os.rename(workdir, aside)
      logging.warning('--restart: moved the previous run to %s', aside)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--workdir={workdir}: cannot create it '
                      f'({e.strerror}: {e.filename})') from None


def write_config(config: Config, workdir: str) -> None:
  """config.json, once the data and model are known to work, so that a run
  refused for its data or flags leaves no config that refuses its rerun."""
  path = os.path.join(os.path.abspath(workdir), CONFIG)
  try:
    write_atomic(path, config.to_json() + '\n')
  except OSError as e:
    raise ConfigError(f'--workdir={workdir}: cannot write {CONFIG} '
                      f'({e.strerror}: {e.filename})') from None


def checkpointer(workdir: str, config: Config,
                 read_only: bool = False) -> checkpointing.Checkpointer:
  """The run's checkpoints; `best` by validation accuracy where it has a
  validation split."""
  return checkpointing.Checkpointer(
      workdir, config.checkpoints_to_keep,
      checkpointing.VALIDATION_METRIC if config.validation_examples
      else checkpointing.TEST_METRIC, read_only=read_only)


@dataclasses.dataclass
class Run:
  """A run directory's config, model and restored TrainState."""
  config: Config
  model: Any
  state: Any
  epoch: int
  class_names: tuple[str, ...]


def load_run(workdir: str, checkpoint: str = 'latest') -> Run:
  """Restores a run's latest (or 'best', or an epoch number's) checkpoint.

  A reader changes nothing in the run: an unreadable checkpoint is an error
  naming the others, not a silent fallback (training's resume falls back and
  sets it aside)."""
  config = read_config(workdir)
  results = read_results(workdir) or {}
  class_names = results.get('class_names',
                            [str(i) for i in range(config.num_classes)])
  model = models.create_model(config, len(class_names))
  target = state_lib.init_state(config, model, (*IMAGE_SHAPE, 1))
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise CheckpointError(f'{workdir}: no checkpoint yet')
  ckpt = checkpointer(workdir, config, read_only=True)
  try:
    epochs = ckpt.epochs()
    if checkpoint == 'latest':
      if not epochs:
        raise CheckpointError(f'{workdir}: no checkpoint yet')
      epoch = epochs[-1]
    else:
      epoch = ckpt.best_epoch() if checkpoint == 'best' else (
          int(checkpoint) if checkpoint.isdigit() else None)
      if epoch not in epochs:
        raise CheckpointError(f'{workdir}: no checkpoint {checkpoint!r} '
                              f'(have epochs {epochs})')
    try:
      state, _ = ckpt.restore(epoch, target)
    except Exception as e:  # pylint: disable=broad-except
      others = [n for n in epochs if n != epoch]
      raise CheckpointError(
          f'{workdir}: the checkpoint of epoch {epoch} is unreadable '
          f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})'
          + (f'; the run also has epochs {others} (--checkpoint=N)'
             if others else '')) from None
  finally:
    ckpt.close()
  return Run(config, model, state, epoch, tuple(class_names))


def copy_run(src: str, dst: str) -> str:
  """Copies a finished run's config.json, results.json and latest checkpoint
  (nothing else) to a new folder `dst`, which `load_run` and
  `Predictor.from_workdir` read as they read `src`. Where the data was read
  from (--data_dir, --manual_dir) is this machine's business, so the copy's
  config has the defaults there. Returns dst."""
  config = read_config(src)
  if read_results(src) is None:
    raise CheckpointError(f'{src}: no {RESULTS}; the run has not finished')
  ckpt = checkpointer(src, config)
  try:
    epochs = ckpt.epochs()
  finally:
    ckpt.close()
  if not epochs:
    raise CheckpointError(f'{src}: no checkpoint')
  if os.path.exists(dst):
    raise ConfigError(f'{dst} exists; remove it or choose another folder')
  os.makedirs(os.path.join(dst, 'checkpoints'))
  defaults = Config()
  write_atomic(os.path.join(dst, CONFIG), dataclasses.replace(
      config, data_dir=defaults.data_dir, manual_dir=defaults.manual_dir
  ).to_json() + '\n')
  shutil.copy2(os.path.join(src, RESULTS), os.path.join(dst, RESULTS))
  shutil.copytree(os.path.join(ckpt.directory, str(epochs[-1])),
                  os.path.join(dst, 'checkpoints', str(epochs[-1])))
  return dst
