"""What reaches the terminal: the project's own lines, and progress in epochs.

By default the terminal shows this project's INFO lines (config summary,
progress, one line per epoch, the result) and everyone's warnings, without
absl's long prefix; other libraries' INFO chatter (jax's backend search,
tfds's readers, orbax's saves) is hidden. `--verbose` or absl's
`--verbosity=1` shows everything in absl's own format. Log files written with
absl's `--log_dir` are unaffected.
"""

import contextlib
import io
import logging as std_logging
import os
import sys
import time

from absl import logging
import jax
import numpy as np

_PROJECT_PATHS = (f'{os.sep}mnist_flax{os.sep}', f'{os.sep}experiments{os.sep}',
                  f'{os.sep}benchmarks{os.sep}', f'{os.sep}main.py')


def _is_project(record: std_logging.LogRecord) -> bool:
  return any(p in record.pathname for p in _PROJECT_PATHS)


class _ShortFormatter(std_logging.Formatter):
  """'message' for INFO, 'warning: message' above it."""

  def format(self, record):
    message = record.getMessage()
    if record.exc_info:
      message += '\n' + self.formatException(record.exc_info)
    if record.levelno >= std_logging.WARNING:
      return f'{record.levelname.lower()}: {message}'
    return message


_verbose = False


def quiet_defaults() -> None:
  """Before TensorFlow or jaxlib start: silence their C++ INFO notices."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def verbose() -> bool:
  return _verbose


@contextlib.contextmanager
def library_output_quiet():
  """Hides what a library prints to stdout (tfds's banner while preparing)."""
  if _verbose:
    yield
    return
  with contextlib.redirect_stdout(io.StringIO()):
    yield


@contextlib.contextmanager
def native_stderr_quiet():
  """Hides what native code writes to stderr while TensorFlow loads (its
  oneDNN notice and absl::InitializeLog line ignore TF_CPP_MIN_LOG_LEVEL).
  Python exceptions still propagate; --verbose shows everything."""
  if _verbose:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


# Warnings that say nothing to act on: orbax's, for an epoch saved without an
# evaluation (--eval_every), which checkpointing.py expects.
_EXPECTED_WARNINGS = ('Requested `tracked_metric`; did not provide metrics',)


def _shown(record: std_logging.LogRecord) -> bool:
  if _is_project(record):
    return True
  return record.levelno >= std_logging.WARNING and not any(
      w in record.getMessage() for w in _EXPECTED_WARNINGS)


def configure(verbose: bool) -> None:
  """Routes absl's terminal output as the module docstring says."""
  global _verbose
  _verbose = verbose
  if verbose:
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'
    return
  handler = logging.get_absl_handler()
  handler.addFilter(_shown)
  handler.setFormatter(_ShortFormatter())
  # Libraries that log through the standard logging module straight to
  # their own handlers (jax's backend search) stay at WARNING.
  for name in ('jax', 'orbax', 'tensorflow'):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)


class Progress:
  """Progress inside an epoch: rate, loss and ETA every `every_s` seconds.

  On a terminal it is one line updated in place (tqdm); in a file or pipe, a
  log line each time. Each update waits for the newest step to finish, so the
  rate is of finished work, not of dispatched calls.
  """

  def __init__(self, epoch, epochs, steps, batch_size, every_s,
               interactive: bool | None = None):
    self.epoch, self.epochs, self.steps = epoch, epochs, steps
    self.batch_size, self.every_s = batch_size, every_s
    self.start = self.last = time.perf_counter()
    if interactive is None:
      interactive = sys.stderr.isatty() and jax.process_index() == 0
    self.bar = None
    if interactive:
      from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
      self.bar = tqdm.tqdm(total=steps, desc=f'epoch {epoch}/{epochs}',
                           unit='step', leave=False, file=sys.stderr,
                           dynamic_ncols=True, mininterval=every_s)
      self.every_s = min(every_s, 1.0)

  def maybe_log(self, step: int, metrics: list[dict], epochs_left: int):
    now = time.perf_counter()
    if now - self.last < self.every_s or step == self.steps:
      return
    jax.block_until_ready(metrics[-1])
    now = time.perf_counter()
    self.last = now
    rate = step * self.batch_size / (now - self.start)
    recent = jax.device_get(metrics[-min(len(metrics), 100):])
    loss = np.mean(np.concatenate([np.ravel(m['loss']) for m in recent]))
    eta_epoch = (self.steps - step) * self.batch_size / rate
    eta_run = eta_epoch + epochs_left * self.steps * self.batch_size / rate
    if self.bar is not None:
      self.bar.set_postfix_str(f'loss {loss:.4f}  {rate:.0f} img/s  run ETA '
                               f'{eta_run / 60:.1f} min', refresh=False)
      self.bar.update(step - self.bar.n)
      return
    logging.info(
        'epoch %d/%d  step %d/%d  loss %.4f  %.0f img/s  ETA epoch %.0fs, '
        'run %.1f min', self.epoch, self.epochs, step, self.steps, loss, rate,
        eta_epoch, eta_run / 60)

  def close(self):
    if self.bar is not None:
      self.bar.close()
