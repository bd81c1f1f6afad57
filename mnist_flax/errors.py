"""Errors that reach the user as one line and exit code 2, never as a traceback."""


class UserError(Exception):
  """Bad input from the user: a flag, a data file, a checkpoint or an image."""

  exit_code = 2


class ConfigError(UserError):
  """A flag value or a combination of flags that cannot be run."""


class DataError(UserError):
  """A dataset folder or file that is missing, corrupt or of the wrong shape."""


class CheckpointError(UserError):
  """A workdir or checkpoint that cannot be resumed or loaded."""


class DivergenceError(UserError):
  """The loss or the parameters became NaN or Inf."""
