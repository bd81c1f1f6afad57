"""The demo's JS preprocessing agrees with predict.mnist_like, and its server
hands out exactly the page, the vendored runtime and the model."""

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest

from conftest import REPO, SHARED_MNIST
from mnist_flax import demo
from mnist_flax import export as export_lib
from mnist_flax import idx
from mnist_flax import predict

PREPROCESS_JS = REPO / 'mnist_flax' / 'demo_static' / 'preprocess.js'
NODE = shutil.which('node')

_RUN_JS = """
const p = require(process.argv[1]);
let s = '';
process.stdin.on('data', (d) => { s += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(s).map(({w, h, pixels}) => {
    const r = p.mnistLike(pixels, w, h);
    return r ? Array.from(r) : null;
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def _js_mnist_like(images):
  payload = [{'w': a.shape[1], 'h': a.shape[0], 'pixels': a.ravel().tolist()}
             for a in images]
  done = subprocess.run(['node', '-e', _RUN_JS, str(PREPROCESS_JS)],
                        input=json.dumps(payload), capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  return [None if o is None else np.array(o, np.uint8).reshape(28, 28)
          for o in json.loads(done.stdout)]


def _strokes(n, seed):
  """Pen strokes as a canvas would hold them: various sizes, pens and
  polarities, some small enough to be scaled up."""
  rng = np.random.default_rng(seed)
  images = []
  for i in range(n):
    w, h = (int(v) for v in rng.integers(24, 400, 2))
    img = Image.new('L', (w, h), 0)
    points = [(float(rng.uniform(0.1, 0.9) * w),
               float(rng.uniform(0.1, 0.9) * h))
              for _ in range(int(rng.integers(3, 8)))]
    ImageDraw.Draw(img).line(points, fill=255, joint='curve',
                             width=max(1, int(rng.integers(1, 8) * w / 80)))
    gray = np.asarray(img, np.float32)
    images.append(255.0 - gray if i % 3 == 0 else gray)
  return images


def _real_digits_scaled_up(n):
  if not (SHARED_MNIST / 't10k-images-idx3-ubyte.gz').exists():
    return []
  digits = idx.read_idx(str(SHARED_MNIST / 't10k-images-idx3-ubyte.gz'))[:n]
  return [np.asarray(Image.fromarray(d).resize((280, 280),
                                               Image.Resampling.BILINEAR),
                     np.float32) for d in digits]


@pytest.mark.skipif(NODE is None, reason='node not installed')
def test_js_preprocessing_matches_predict_mnist_like():
  images = _strokes(40, seed=0) + _real_digits_scaled_up(20)
  shifted = 0
  for gray, js in zip(images, _js_mnist_like(images)):
    py = predict.mnist_like(gray)
    assert js is not None
    diff = np.abs(py.astype(int) - js).max()
    if diff > 1:
      # A centre of mass within float rounding of a half pixel (a perfectly
      # symmetric stroke) may be placed one pixel over; nothing else may.
      diff = min(np.abs(np.roll(py, (dy, dx), (0, 1)).astype(int) - js).max()
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1))
      shifted += 1
    assert diff <= 1
  assert shifted <= len(images) // 20


@pytest.mark.skipif(NODE is None, reason='node not installed')
def test_js_preprocessing_refuses_a_blank_drawing_like_python():
  blank = np.zeros((50, 60), np.float32)
  faint = np.full((50, 60), 10, np.float32)
  faint[20:30, 20:30] = 30  # Less contrast than predict accepts.
  assert _js_mnist_like([blank, faint]) == [None, None]
  for gray in (blank, faint):
    with pytest.raises(predict.ImageError):
      predict.mnist_like(gray)


@pytest.fixture
def fake_export(tmp_path):
  """An ONNX-named file with its metadata; the server never parses it."""
  out = tmp_path / 'model.onnx'
  out.write_bytes(b'onnx bytes')
  meta = {'exporter': export_lib.EXPORTER, 'format': 'onnx',
          'class_names': ['T-shirt', 'Trouser'],
          'source': {'workdir': '/x/runs/fashion', 'epoch': 3}}
  (tmp_path / 'model.onnx.json').write_text(json.dumps(meta))
  return out


def _get(url):
  with urllib.request.urlopen(url, timeout=10) as r:
    return r.status, r.headers['Content-Type'], r.read()


def test_server_serves_the_page_runtime_and_model_only(fake_export):
  server = demo.make_server(str(fake_export), port=0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  base = f'http://127.0.0.1:{server.server_port}'
  try:
    status, ctype, body = _get(base + '/')
    assert status == 200 and ctype.startswith('text/html')
    assert b'static/vendor/ort.wasm.min.js' in body
    assert b'https://' not in body  # No CDN.
    assert _get(base + '/model.onnx')[2] == b'onnx bytes'
    info = json.loads(_get(base + '/model.json')[2])
    assert info['class_names'] == ['T-shirt', 'Trouser']
    _, ctype, wasm = _get(base + '/static/vendor/ort-wasm-simd-threaded.wasm')
    assert ctype == 'application/wasm' and wasm[:4] == b'\0asm'
    _, ctype, _ = _get(base + '/static/vendor/ort-wasm-simd-threaded.mjs')
    assert ctype.startswith('text/javascript')
    for path in ('/static/../demo.py', '/static/%2e%2e/export.py',
                 '/static/vendor/README.md', '/nothing'):
      with pytest.raises(urllib.error.HTTPError) as e:
        _get(base + path)
      assert e.value.code == 404
  finally:
    server.shutdown()
    server.server_close()
  assert server.server_address[0] == '127.0.0.1'


def test_server_refuses_a_model_that_is_not_an_onnx_export(tmp_path):
  stray = tmp_path / 'model.onnx'
  stray.write_bytes(b'x')
  with pytest.raises(export_lib.ExportError, match='not found'):
    demo.make_server(str(stray), port=0)
  (tmp_path / 'model.onnx.json').write_text(json.dumps(
      {'exporter': export_lib.EXPORTER, 'format': 'litert',
       'class_names': ['a']}))
  with pytest.raises(export_lib.ExportError, match='runs ONNX'):
    demo.make_server(str(stray), port=0)


def test_cli_needs_exactly_one_model_source():
  done = subprocess.run([sys.executable, '-m', 'mnist_flax.demo'],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().startswith('error: usage')
  assert len(done.stderr.strip().splitlines()) == 1

