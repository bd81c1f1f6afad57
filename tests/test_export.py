"""Exported files give the Predictor's probabilities, in their own runtimes.

Fast tier: tiny models trained on synthetic IDX data, checked on synthetic
images. Slow tier: models trained on a slice of real MNIST (../shared),
checked on the first 1,000 real test images, with the int8 file's accuracy
change on the whole test set.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SHARED_MNIST, synthetic_digits, tiny_config
from conftest import write_idx_folder
from mnist_flax import export as export_lib
from mnist_flax import exported
from mnist_flax import idx
from mnist_flax import train
from mnist_flax.errors import UserError
from mnist_flax.predict import Predictor

FP32_ATOL = 1e-5
HAVE_TF = importlib.util.find_spec('tensorflow') is not None
HAVE_ONNX = all(importlib.util.find_spec(m) for m in
                ('onnx', 'onnxruntime', 'tf2onnx'))
needs_tf = pytest.mark.skipif(not HAVE_TF, reason='tensorflow not installed')
needs_onnx = pytest.mark.skipif(
    not (HAVE_TF and HAVE_ONNX),
    reason="onnx, onnxruntime or tf2onnx missing: pip install -e '.[export]'")
needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / 't10k-images-idx3-ubyte.gz').exists(),
    reason=f'real MNIST not found at {SHARED_MNIST}')

FP32_FORMATS = [
    pytest.param('stablehlo'),
    pytest.param('litert', marks=needs_tf),
    pytest.param('onnx', marks=needs_onnx),
]


def _tiny_run(root, manual_dir, **overrides):
  config = tiny_config(manual_dir, width=0.25, depth=2, epochs=1,
                       **overrides)
  train.train_and_evaluate(config, str(root))
  return str(root)


class _Lazy(dict):
  """A dict whose values are made on first use, so that a test of the
  single model does not train the ensemble."""

  def __init__(self, make):
    super().__init__()
    self.make = make

  def __missing__(self, key):
    self[key] = self.make(key)
    return self[key]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A single tiny model and a tiny --num_models=3 ensemble."""
  root = tmp_path_factory.mktemp('export')
  folder = write_idx_folder(root / 'idx', n_train=96, n_test=32)
  made = _Lazy(lambda kind: _tiny_run(
      root / kind, folder, num_models=3 if kind == 'ensemble' else 1))
  made.folder = folder
  return made


@pytest.fixture(scope='module')
def predictors(runs):
  """Each run's latest checkpoint, restored once (it takes seconds)."""
  return _Lazy(lambda kind: Predictor.from_workdir(runs[kind]))


@pytest.fixture(scope='module')
def exports(runs, predictors, tmp_path_factory):
  """export(kind, fmt, quantize) -> path, each file made once per module."""
  root = tmp_path_factory.mktemp('files')
  made = {}

  def get(kind, fmt, quantize='none'):
    if (kind, fmt, quantize) not in made:
      out = str(root / f'{kind}-{quantize}{export_lib.FORMATS[fmt]}')
      export_lib.export(runs[kind], fmt, out, quantize=quantize,
                        predictor=predictors[kind])
      made[kind, fmt, quantize] = out
    return made[kind, fmt, quantize]

  return get


def _max_diff(path, predictor, images):
  ours = exported.load(path)(images)
  theirs = predictor.predict_proba(images)
  assert ours.shape == theirs.shape
  return float(np.abs(ours - theirs).max())


# The fast tier keeps one format and the CLI's first refusal; the rest of this
# file is the slow tier.
def _fp32_cases():
  for kind in ('single', 'ensemble'):
    for case in FP32_FORMATS:
      marks = list(case.marks)
      if (kind, *case.values) != ('single', 'stablehlo'):
        marks.append(pytest.mark.slow)
      yield pytest.param(kind, *case.values, marks=marks)


@pytest.mark.parametrize('kind, fmt', list(_fp32_cases()))
def test_fp32_export_matches_predictor(predictors, exports, kind, fmt):
  out = exports(kind, fmt)
  meta = export_lib.read_metadata(out)
  assert meta['source']['num_models'] == (3 if kind == 'ensemble' else 1)
  images, _ = synthetic_digits(37, seed=5)
  diff = _max_diff(out, predictors[kind], images)
  print(f'{fmt} {kind}: max abs diff {diff:.3g} on 37 images')
  assert diff <= FP32_ATOL
  model = exported.load(out)
  for n in (1, 5):  # The batch dimension is dynamic.
    probs = model(images[:n])
    assert probs.shape == (n, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('arch, flags', [
    ('blocks', dict(blocks='4,4|8', head='maxavg', squeeze_excite=2)),
    ('se_blocks', dict(blocks='4,4|8|8', squeeze_excite=2)),
    ('space_to_depth', {})])
@pytest.mark.parametrize('fmt', FP32_FORMATS)
def test_every_architecture_exports(runs, tmp_path, arch, flags, fmt):
  run = _tiny_run(tmp_path / 'run', runs.folder, arch=arch, **flags)
  out = str(tmp_path / f'model{export_lib.FORMATS[fmt]}')
  predictor = Predictor.from_workdir(run)
  export_lib.export(run, fmt, out, predictor=predictor)
  images, _ = synthetic_digits(9, seed=2)
  assert _max_diff(out, predictor, images) <= FP32_ATOL


@pytest.mark.slow
@pytest.mark.parametrize('fmt', FP32_FORMATS)
def test_a_bfloat16_run_exports_in_float32(runs, tmp_path, fmt):
  """Trained with --dtype=bfloat16: the file computes in float32, as the
  Predictor of the same weights in float32 does."""
  run = _tiny_run(tmp_path / 'run', runs.folder, dtype='bfloat16')
  out = str(tmp_path / f'model{export_lib.FORMATS[fmt]}')
  export_lib.export(run, fmt, out)
  trained = Predictor.from_workdir(run)
  predictor = Predictor(trained.model.clone(dtype=np.float32),
                        trained.variables, trained.class_names)
  images, _ = synthetic_digits(37, seed=5)
  assert _max_diff(out, predictor, images) <= FP32_ATOL


@pytest.mark.slow
def test_ensemble_is_the_mean_of_its_members_softmaxes(predictors, exports):
  out = exports('ensemble', 'stablehlo')
  images, _ = synthetic_digits(16, seed=9)
  p = predictors['ensemble']
  members = [p.member(k).predict_proba(images) for k in range(3)]
  ours = exported.load(out)(images)
  np.testing.assert_allclose(ours, np.mean(members, axis=0), atol=FP32_ATOL)
  assert np.abs(ours - members[0]).max() > 1e-4  # Not just the first model.


@pytest.mark.slow
def test_member_export_is_that_model_alone(runs, predictors, tmp_path):
  out = str(tmp_path / 'member1.stablehlo')
  ensemble = predictors['ensemble']
  meta = export_lib.export(runs['ensemble'], 'stablehlo', out,
                           predictor=ensemble, member=1)
  assert meta['source']['member'] == 1
  assert meta['source']['num_models'] == 1
  images, _ = synthetic_digits(16, seed=11)
  ours = exported.load(out)(images)
  np.testing.assert_allclose(ours, ensemble.member(1).predict_proba(images),
                             atol=FP32_ATOL)
  assert np.abs(ours - ensemble.predict_proba(images)).max() > 1e-4
  with pytest.raises(UserError, match=r'choose 0\.\.2'):
    ensemble.member(3)


@pytest.mark.parametrize('meta', [
    {'exporter': 'mnist_flax.export'},
    {'exporter': 'mnist_flax.export', 'format': 'onnx', 'class_names': 5},
    {'exporter': 'someone else', 'format': 'onnx', 'class_names': ['0']},
])
def test_a_sidecar_json_without_what_readers_need_is_refused(tmp_path, meta):
  out = tmp_path / 'model.onnx'
  out.write_bytes(b'model')
  (tmp_path / 'model.onnx.json').write_text(json.dumps(meta))
  with pytest.raises(export_lib.ExportError, match='model.onnx.json: '):
    export_lib.read_metadata(str(out))


def test_member_of_a_single_run_is_refused(predictors):
  with pytest.raises(UserError, match='one model'):
    predictors['single'].member(0)


@pytest.mark.slow
def test_stablehlo_reloads_with_jax_alone(exports, tmp_path):
  out = exports('single', 'stablehlo')
  images, _ = synthetic_digits(3, seed=1)
  np.save(tmp_path / 'x.npy', images)
  script = (
      'import sys, numpy as np, jax\n'
      f'e = jax.export.deserialize(bytearray(open({str(out)!r}, "rb").read()))\n'
      f'p = np.asarray(e.call(np.load({str(tmp_path / "x.npy")!r})))\n'
      'assert not [m for m in sys.modules if m.startswith(("mnist_flax", '
      '"flax"))], "model code was imported"\n'
      'print(p.shape)\n')
  done = subprocess.run([sys.executable, '-c', script], capture_output=True,
                        text=True, timeout=300, cwd=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == '(3, 10)'


@pytest.mark.slow
@needs_tf
def test_int8_litert_is_smaller_and_agrees(exports):
  fp32 = exports('single', 'litert')
  int8 = exports('single', 'litert', 'dynamic_int8')
  assert export_lib.read_metadata(int8)['quantize'] == 'dynamic_int8'
  assert os.path.getsize(int8) < 0.5 * os.path.getsize(fp32)
  images, _ = synthetic_digits(64, seed=3)
  a, b = exported.load(fp32)(images), exported.load(int8)(images)
  assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9
  assert np.abs(a - b).max() > 0  # It did change the arithmetic.


@pytest.mark.slow
@needs_onnx
def test_onnx_carries_class_names_in_its_metadata(exports):
  import onnx  # pylint: disable=g-import-not-at-top
  out = exports('single', 'onnx')
  proto = onnx.load(out)
  props = {p.key: p.value for p in proto.metadata_props}
  assert json.loads(props['class_names']) == [str(i) for i in range(10)]
  assert [i.name for i in proto.graph.input] == ['images']
  assert [o.name for o in proto.graph.output] == ['probabilities']
  dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
  assert not dim.HasField('dim_value')  # A symbolic, dynamic batch.


@pytest.mark.slow
def test_sidecar_json_describes_the_file(runs, tmp_path):
  out = str(tmp_path / 'm.stablehlo')
  export_lib.export(runs['single'], 'stablehlo', out, checkpoint='best')
  meta = json.loads((tmp_path / 'm.stablehlo.json').read_text())
  assert meta['format'] == 'stablehlo'
  assert meta['class_names'] == [str(i) for i in range(10)]
  assert meta['input']['shape'] == ['batch', 28, 28]
  assert meta['input']['dtype'] == 'uint8'
  assert meta['source']['workdir'] == os.path.abspath(runs['single'])
  assert meta['source']['epoch'] == 1
  assert meta['bytes'] == os.path.getsize(out)


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'mnist_flax.export', *args],
                        capture_output=True, text=True, cwd=REPO, timeout=600)


def _one_error_line(done):
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr
  assert 'Traceback' not in done.stderr
  return lines[0]


_slow = lambda *a: pytest.param(*a, marks=pytest.mark.slow)


@pytest.mark.parametrize('args, message', [
    _slow(['--format=stablehlo'], 'usage'),
    (['--workdir={run}', '--format=pdf'], "--format='pdf'"),
    _slow(['--workdir={run}', '--format=onnx', '--quantize=dynamic_int8'],
     'litert only'),
    _slow(['--workdir={run}', '--format=litert', '--quantize=int4'],
     "--quantize='int4'"),
    _slow(['--workdir={missing}', '--format=stablehlo'], 'config.json'),
    _slow(['--workdir={run}', '--format=stablehlo', '--checkpoint=99'],
     'no checkpoint'),
    _slow(['--workdir={run}', '--nosuchflag'], 'nosuchflag'),
    _slow(['--workdir={run}', '--format=stablehlo', '--member=0'],
          '--member=0: the run has one model'),
])
def test_cli_refuses_bad_input_in_one_line(runs, tmp_path, args, message):
  args = [a.format(run=runs['single'], missing=tmp_path / 'nope')
          for a in args]
  line = _one_error_line(_cli(*args, f'--out={tmp_path / "x.bin"}'))
  assert message in line


@pytest.mark.slow
def test_cli_never_overwrites_an_unrelated_file(runs, tmp_path):
  victim = tmp_path / 'notes.onnx'
  victim.write_text('mine')
  line = _one_error_line(_cli(f'--workdir={runs["single"]}',
                              '--format=stablehlo', f'--out={victim}'))
  assert 'not an export' in line
  assert victim.read_text() == 'mine'
  # Its own earlier export is replaced without fuss.
  out = tmp_path / 'model.stablehlo'
  for _ in range(2):
    done = _cli(f'--workdir={runs["single"]}', '--format=stablehlo',
                f'--out={out}')
    assert done.returncode == 0, done.stderr[-2000:]
  assert str(out) in done.stdout
  assert exported.load(str(out))(np.zeros((2, 28, 28), np.uint8)).shape == (
      2, 10)


# --- Real MNIST: a small model trained on a slice of it, 1,000 test images.


@pytest.fixture(scope='module')
def real_runs(tmp_path_factory):
  if not (SHARED_MNIST / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'real MNIST not found at {SHARED_MNIST}')
  root = tmp_path_factory.mktemp('real_export')
  common = dict(train_examples=3000, batch_size=32, eval_batch_size=1000)
  return {'single': _tiny_run(root / 'single', SHARED_MNIST, **common),
          'ensemble': _tiny_run(root / 'ensemble', SHARED_MNIST,
                                num_models=3, **common)}


def _mnist_test():
  images = idx.read_idx(str(SHARED_MNIST / 't10k-images-idx3-ubyte.gz'))
  labels = idx.read_idx(str(SHARED_MNIST / 't10k-labels-idx1-ubyte.gz'))
  return images, labels


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize('kind', ['single', 'ensemble'])
@pytest.mark.parametrize('fmt', FP32_FORMATS)
def test_real_mnist_fp32_parity_on_1000_images(real_runs, kind, fmt,
                                               tmp_path):
  out = str(tmp_path / f'model{export_lib.FORMATS[fmt]}')
  predictor = Predictor.from_workdir(real_runs[kind])
  export_lib.export(real_runs[kind], fmt, out, predictor=predictor)
  images, _ = _mnist_test()
  diff = _max_diff(out, predictor, images[:1000])
  print(f'{fmt} {kind}: max abs diff {diff:.3g} on 1000 MNIST test images')
  assert diff <= FP32_ATOL


@pytest.mark.slow
@needs_mnist
@needs_tf
def test_real_mnist_int8_accuracy_change(real_runs, tmp_path):
  out = str(tmp_path / 'int8.tflite')
  export_lib.export(real_runs['single'], 'litert', out,
                    quantize='dynamic_int8')
  images, labels = _mnist_test()
  reference = Predictor.from_workdir(real_runs['single']).predict(images)
  quantized = exported.load(out)(images).argmax(-1)
  before = float((reference == labels).mean())
  after = float((quantized == labels).mean())
  print(f'int8: accuracy {before:.4f} -> {after:.4f} '
        f'({100 * (after - before):+.2f} points) on {len(labels)} images')
  assert before > 0.8  # The model learned something worth quantising.
  assert abs(after - before) <= 0.01
