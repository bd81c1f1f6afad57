"""Runs an exported file in its own runtime, with none of the model's code.

    from mnist_flax import exported
    model = exported.load('runs/base/export/model.onnx')
    probs = model(images)        # uint8 [N, 28, 28] -> float32 [N, classes]
    model.class_names            # from FILE.json

This is what an app would do (jax.export.deserialize, the LiteRT interpreter,
onnxruntime), kept in one place so that the parity tests, the export report
and the demo measure the files the way they will be used.
"""

import os
import threading

import numpy as np

from mnist_flax import export as export_lib
from mnist_flax.errors import UserError


class ExportedModel:
  """An exported file and its runtime; call it on uint8 [N, 28, 28]."""

  def __init__(self, path: str, num_threads: int | None = None):
    self.path = path
    self.metadata = export_lib.read_metadata(path)
    self.format = self.metadata['format']
    self.class_names = tuple(self.metadata['class_names'])
    loader = {'stablehlo': self._load_stablehlo, 'litert': self._load_litert,
              'onnx': self._load_onnx}[self.format]
    self._run = loader(num_threads)
    self._lock = threading.Lock()  # The LiteRT interpreter is not reentrant.

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or (
        images.shape[1:] != export_lib.IMAGE_SHAPE):
      raise ValueError('images must be uint8 [N, 28, 28], got '
                       f'{images.dtype} {images.shape}')
    with self._lock:
      return np.asarray(self._run(images), np.float32)

  def _load_stablehlo(self, num_threads):
    del num_threads  # XLA's CPU client sizes its own pool.
    import jax  # pylint: disable=g-import-not-at-top
    with open(self.path, 'rb') as f:
      exp = jax.export.deserialize(bytearray(f.read()))
    return exp.call

  def _load_litert(self, num_threads):
    try:
      from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    except ImportError:  # TensorFlow's own copy, deprecated but equivalent.
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      Interpreter = tf.lite.Interpreter  # pylint: disable=invalid-name
    interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
    inp = interpreter.get_input_details()[0]['index']
    out = interpreter.get_output_details()[0]['index']
    shape = [None]

    def run(images):
      if shape[0] != images.shape:  # Resizing re-plans the graph; only on change.
        interpreter.resize_tensor_input(inp, images.shape, strict=False)
        interpreter.allocate_tensors()
        shape[0] = images.shape
      interpreter.set_tensor(inp, images)
      interpreter.invoke()
      return interpreter.get_tensor(out).copy()

    return run

  def _load_onnx(self, num_threads):
    try:
      import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise UserError("running ONNX needs onnxruntime: pip install -e "
                      "'.[export]'") from None
    options = ort.SessionOptions()
    if num_threads:
      options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(self.path, options,
                                   providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def load(path: str, num_threads: int | None = None) -> ExportedModel:
  if not os.path.exists(path):
    raise export_lib.ExportError(f'{path}: not found')
  return ExportedModel(path, num_threads)
