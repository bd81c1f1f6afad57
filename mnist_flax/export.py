"""Exports a trained run as one inference file that an app can ship.

    python -m mnist_flax.export --workdir=runs/base --format=onnx
    python -m mnist_flax.export --workdir=runs/base --format=litert
    python -m mnist_flax.export --workdir=runs/base --format=litert \
        --quantize=dynamic_int8
    python -m mnist_flax.export --workdir=runs/base --format=stablehlo
    python -m mnist_flax.export --workdir=runs/seed3 --format=onnx --member=0

Every file takes uint8 images [N, 28, 28] (a white digit on black, as
predict.mnist_like makes them) and returns probabilities [N, classes]: the
normalisation, BatchNorm's running statistics and (for a --num_models=K run)
the mean of the K models' softmaxes are all inside the graph, so an app only
feeds pixels (--member=K exports model K of such a run alone). N is dynamic
in every format. Beside FILE goes FILE.json with the class names, the input
and output specs and where the weights came from.

How each format is made:
  stablehlo  jax.export of the jitted function (weights as constants); reloads
             with jax.export.deserialize and jax alone.
  litert     jax2tf (native serialization) into a tf.function, then
             tf.lite.TFLiteConverter, which lowers the embedded StableHLO to
             TFLite ops; --quantize=dynamic_int8 stores the weights as int8.
  onnx       tf2onnx from that fp32 TFLite flatbuffer. tf2onnx cannot read
             jax2tf's SavedModel (its XlaCallModule op has no ONNX
             conversion), and jax2onnx pins orbax-checkpoint below the version
             the training code installs, so the TFLite route is the one that
             installs beside the rest of this package.
"""

import hashlib
import json
import os
import sys
import tempfile
import warnings

# TensorFlow (imported lazily for litert and onnx) logs its setup at INFO.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp

from mnist_flax import flagging
from mnist_flax import steps
from mnist_flax.errors import UserError
from mnist_flax.predict import IMAGE_SHAPE  # The Predictor's input, [N, 28, 28].
from mnist_flax.predict import Predictor

EXPORTER = 'mnist_flax.export'
FORMATS = {'litert': '.tflite', 'onnx': '.onnx', 'stablehlo': '.stablehlo'}
QUANTIZE = ('none', 'dynamic_int8')
INPUT_NAME = 'images'
OUTPUT_NAME = 'probabilities'
ONNX_OPSET = 17


class ExportError(UserError):
  """A run, output path or option that cannot be exported."""


def inference_fn(predictor: Predictor):
  """uint8 [N, 28, 28] -> float32 [N, classes], the weights closed over.

  Computes what Predictor.predict_proba does. Convolutions are traced as
  lax.conv (same parameters and sums as the im2col form the CPU trainer may
  use), which every converter maps to its native Conv op, and in float32
  whatever dtype the run trained in: the weights are float32, and LiteRT's
  and ONNX's converters do not take bfloat16 compute.
  """
  model = predictor.model
  if getattr(model, 'conv_impl', 'lax') != 'lax':
    model = model.clone(conv_impl='lax')
  if getattr(model, 'dtype', jnp.float32) != jnp.float32:
    model = model.clone(dtype=jnp.float32)
  variables = predictor.variables

  def proba(v, images):
    x = steps.normalize(images)[..., None]
    return jax.nn.softmax(model.apply(v, x, train=False))

  def fn(images):
    if predictor.num_models == 1:
      return proba(variables, images)
    # Unrolled rather than vmapped: K plain convs convert everywhere, a
    # vmapped conv would become a grouped conv that not every runtime has.
    members = [proba(predictor.member(k).variables, images)
               for k in range(predictor.num_models)]
    return jnp.mean(jnp.stack(members), axis=0)

  return fn


def to_stablehlo(fn) -> bytes:
  """A serialized jax.export.Exported with a symbolic batch dimension."""
  batch = jax.export.symbolic_shape('b')[0]
  spec = jax.ShapeDtypeStruct((batch, *IMAGE_SHAPE), jnp.uint8)
  return bytes(jax.export.export(jax.jit(fn))(spec).serialize())


def to_litert(fn, quantize: str = 'none') -> bytes:
  """A TFLite flatbuffer (dynamic batch) via jax2tf and TFLiteConverter."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  converted = jax2tf.convert(fn, polymorphic_shapes=['(b, 28, 28)'],
                             with_gradient=False)
  module = tf.Module()
  module.serve = tf.function(
      lambda images: {OUTPUT_NAME: converted(images)}, autograph=False,
      input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8,
                                     name=INPUT_NAME)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module)
  if quantize == 'dynamic_int8':
    # No representative data: weights int8, activations float (dynamic range).
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  return converter.convert()


def to_onnx(fn, metadata: dict) -> bytes:
  """An ONNX model converted by tf2onnx from the fp32 TFLite flatbuffer."""
  try:
    import onnx  # pylint: disable=g-import-not-at-top
    import tf2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ExportError(f'--format=onnx needs tf2onnx and onnx ({e}); '
                      "pip install -e '.[export]'") from None
  tflite = to_litert(fn)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'model.tflite')
    with open(path, 'wb') as f:
      f.write(tflite)
    proto, _ = tf2onnx.convert.from_tflite(path, opset=ONNX_OPSET)
  _rename_io(proto)
  proto.graph.name = 'mnist_flax'
  for key, value in (('class_names', json.dumps(metadata['class_names'])),
                     ('mnist_flax', json.dumps(metadata))):
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
  onnx.checker.check_model(proto)
  return proto.SerializeToString()


def _rename_io(proto) -> None:
  """Names the graph's one input and one output like the other formats."""
  renames = {proto.graph.input[0].name: INPUT_NAME,
             proto.graph.output[0].name: OUTPUT_NAME}
  for value in (*proto.graph.input, *proto.graph.output):
    value.name = renames.get(value.name, value.name)
  for node in proto.graph.node:
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]


def default_out(workdir: str, fmt: str, checkpoint: str, quantize: str,
                member: int | None = None) -> str:
  stem = 'model' + ('' if member is None else f'-member{member}') + (
      '' if checkpoint == 'latest' else f'-{checkpoint}') + (
          '-int8' if quantize != 'none' else '')
  return os.path.join(workdir, 'export', stem + FORMATS[fmt])


def metadata_path(out: str) -> str:
  return out + '.json'


def read_metadata(out: str) -> dict:
  """FILE.json beside an exported FILE; ExportError if it is not one."""
  try:
    with open(metadata_path(out)) as f:
      meta = json.load(f)
  except FileNotFoundError:
    raise ExportError(f'{metadata_path(out)}: not found; export with '
                      'python -m mnist_flax.export') from None
  except (OSError, ValueError) as e:
    raise ExportError(f'{metadata_path(out)}: unreadable ({e})') from None
  if not isinstance(meta, dict) or meta.get('exporter') != EXPORTER:
    raise ExportError(f'{metadata_path(out)}: not written by {EXPORTER}')
  if meta.get('format') not in FORMATS or not isinstance(
      meta.get('class_names'), list):
    raise ExportError(f'{metadata_path(out)}: lacks its format or class names')
  return meta


def _check_replaceable(out: str) -> None:
  """Refuses to overwrite anything but an earlier export of this tool."""
  if os.path.isdir(out):
    raise ExportError(f'--out={out} is a folder')
  if not (os.path.exists(out) or os.path.exists(metadata_path(out))):
    return
  try:
    read_metadata(out)
  except ExportError:
    raise ExportError(
        f'--out={out}: a file there (or its .json) is not an export of this '
        'tool; remove it or choose another --out') from None


def _checkpoint_epoch(workdir: str, checkpoint: str) -> int | None:
  """The epoch that Predictor restored, for the metadata (None if unknown)."""
  if checkpoint.isdigit():
    return int(checkpoint)
  results = os.path.join(workdir, 'results.json')
  if checkpoint == 'best' and os.path.exists(results):
    with open(results) as f:
      return json.load(f).get('best_epoch')
  folder = os.path.join(workdir, 'checkpoints')
  epochs = [int(n) for n in os.listdir(folder) if n.isdigit()] if (
      os.path.isdir(folder)) else []
  return max(epochs) if checkpoint == 'latest' and epochs else None


def _write_atomic(path: str, data: bytes) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def export(workdir: str, fmt: str, out: str | None = None,
           checkpoint: str = 'latest', quantize: str = 'none',
           predictor: Predictor | None = None,
           member: int | None = None) -> dict:
  """Exports a run's checkpoint to `out`; returns the metadata written
  beside it (also to FILE.json). `predictor`, if given, is that checkpoint
  already loaded (restoring one takes seconds); `member=k` exports model k
  of a --num_models run alone instead of the ensemble."""
  if fmt not in FORMATS:
    raise ExportError(f'--format={fmt!r}: choose one of {", ".join(FORMATS)}')
  if quantize not in QUANTIZE:
    raise ExportError(f'--quantize={quantize!r}: choose one of '
                      f'{", ".join(QUANTIZE)}')
  if quantize != 'none' and fmt != 'litert':
    raise ExportError(f'--quantize={quantize} works with --format=litert only')
  out = out or default_out(workdir, fmt, checkpoint, quantize, member)
  _check_replaceable(out)
  _check_writable(out)  # Before the seconds that exporting takes.
  predictor = predictor or Predictor.from_workdir(workdir, checkpoint)
  if member is not None:
    predictor = predictor.member(member)
  meta = {
      'exporter': EXPORTER,
      'format': fmt,
      'file': os.path.basename(out),
      'class_names': list(predictor.class_names),
      'input': {'name': INPUT_NAME, 'dtype': 'uint8',
                'shape': ['batch', *IMAGE_SHAPE],
                'layout': 'white digit on black, MNIST-style: the ink fitted '
                          'in 20x20, centre of mass at the centre of 28x28; '
                          'divided by 255 inside the model'},
      'output': {'name': OUTPUT_NAME, 'dtype': 'float32',
                 'shape': ['batch', len(predictor.class_names)],
                 'meaning': 'class probabilities (the mean softmax of the '
                            'ensemble when num_models > 1)'},
      'source': {'workdir': os.path.abspath(workdir), 'checkpoint': checkpoint,
                 'epoch': _checkpoint_epoch(workdir, checkpoint),
                 'num_models': predictor.num_models, 'member': member},
      'quantize': quantize,
  }
  fn = inference_fn(predictor)
  if fmt == 'stablehlo':
    data = to_stablehlo(fn)
  elif fmt == 'litert':
    data = to_litert(fn, quantize)
  else:
    data = to_onnx(fn, meta)
  meta['bytes'] = len(data)
  meta['sha256'] = hashlib.sha256(data).hexdigest()
  try:
    _write_atomic(out, data)
    _write_atomic(metadata_path(out),
                  (json.dumps(meta, indent=2) + '\n').encode())
  except OSError as e:
    raise ExportError(f'--out={out}: cannot write it ({e.strerror}: '
                      f'{e.filename})') from None
  return meta


def _check_writable(out: str) -> None:
  folder = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise ExportError(f'--out={out}: cannot create {folder} ({e.strerror})'
                      ) from None
  if not os.access(folder, os.W_OK):
    raise ExportError(f'--out={out}: {folder} is not writable')


def _define_flags() -> None:
  """CLI flags, defined only when run as a program (as in predict.py)."""
  flags.DEFINE_string('workdir', None, 'Run directory to export.')
  flags.DEFINE_string('format', None, 'litert, onnx or stablehlo.')
  flags.DEFINE_string('out', None, 'Output file; default '
                      'WORKDIR/export/model[-CHECKPOINT][-int8].EXT.')
  flags.DEFINE_string('checkpoint', 'latest',
                      "'latest', 'best' or an epoch number.")
  flags.DEFINE_string('quantize', 'none',
                      'none, or dynamic_int8 (int8 weights; litert only).')
  flags.DEFINE_integer('member', None, 'Of a --num_models run, export model K '
                       'alone (default: the ensemble as one model).')


def main(argv) -> int:
  f = flags.FLAGS
  # Library chatter (orbax, XLA, TensorFlow) would bury the one result line.
  logging.set_verbosity(logging.WARNING)
  warnings.filterwarnings('ignore', message=r'\s*Warning: tf.lite.Interpreter')
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])}',
          file=sys.stderr)
    return 2
  if not f.workdir or not f.format:
    print('error: usage: python -m mnist_flax.export --workdir=RUN '
          f'--format={"|".join(FORMATS)} [--out=FILE] '
          '[--checkpoint=latest|best|EPOCH] [--quantize=dynamic_int8] '
          '[--member=K]',
          file=sys.stderr)
    return 2
  try:
    meta = export(f.workdir, f.format, f.out, f.checkpoint, f.quantize,
                  member=f.member)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return e.exit_code
  out = f.out or default_out(f.workdir, f.format, f.checkpoint, f.quantize,
                            f.member)
  print(f'{out}\t{meta["format"]}\t{meta["bytes"]} bytes\t'
        f'{len(meta["class_names"])} classes\t'
        f'{meta["source"]["num_models"]} model(s)', flush=True)
  return 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=flagging.parse_flags_or_exit)
