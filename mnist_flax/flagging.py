"""absl flags generated from the Config dataclass, so each option is declared once."""

import dataclasses
import sys

from absl import flags

from mnist_flax import presets
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_config_flags(flag_values=flags.FLAGS) -> None:
  """Defines one flag per Config field, with its default and help text."""
  flags.DEFINE_string(
      'preset', '', 'Start from a named recipe (' + ', '.join(
          presets.PRESETS) + '); flags given as well override it.',
      flag_values=flag_values)
  for f in dataclasses.fields(Config):
    help_text = f.metadata['help']
    if f.metadata.get('choices'):
      help_text += ' One of: ' + ', '.join(f.metadata['choices']) + '.'
    _DEFINE[f.type](f.name, f.default, help_text, flag_values=flag_values)


def config_from_flags(flag_values=flags.FLAGS) -> Config:
  """The Config the parsed flags describe, validated."""
  values = {f.name: flag_values[f.name].value for f in dataclasses.fields(Config)}
  if flag_values['preset'].value:
    given = {n for n in values if flag_values[n].present}
    values.update({k: v for k, v in
                   presets.preset(flag_values['preset'].value).items()
                   if k not in given})
  try:
    return Config(**values).validate()
  except TypeError as e:
    raise ConfigError(str(e)) from None


def parse_flags_or_exit(argv):
  """absl's parser for app.run's flags_parser, but a bad flag is one `error:`
  line and exit status 2 (absl prints a FATAL line and usage, and exits 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
