"""The drawing page in a real (headless) Chromium: strokes in, top-1 out.

A real MNIST test digit is traced on the canvas as mouse strokes; the page's
top-1 class must be the Predictor's class for the same drawing preprocessed
in Python, and its probabilities must match onnxruntime-web's job (the
Predictor's within 1e-4).

MNIST_FLAX_DEMO_WORKDIR=RUN uses an existing run instead of training a small
one; MNIST_FLAX_DEMO_SCREENSHOT=docs/demo.png saves the page after drawing.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import REPO, SHARED_MNIST, tiny_config
from mnist_flax import idx
from mnist_flax import predict
from mnist_flax import train

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync']

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None,
                       reason='no chromium (apt-get install chromium)'),
    pytest.mark.skipif(importlib.util.find_spec('playwright') is None,
                       reason='playwright not installed (pip install '
                       "-e '.[export]')"),
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ('onnx', 'tf2onnx')),
        reason="onnx export needs pip install -e '.[export]'"),
    pytest.mark.skipif(
        not (SHARED_MNIST / 't10k-images-idx3-ubyte.gz').exists(),
        reason=f'real MNIST not found at {SHARED_MNIST}'),
]


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  if os.environ.get('MNIST_FLAX_DEMO_WORKDIR'):
    return os.environ['MNIST_FLAX_DEMO_WORKDIR']
  root = tmp_path_factory.mktemp('demo')
  config = tiny_config(SHARED_MNIST, width=0.25, depth=2, epochs=1,
                       train_examples=3000, batch_size=32,
                       eval_batch_size=1000)
  train.train_and_evaluate(config, str(root / 'run'))
  return str(root / 'run')


@pytest.fixture(scope='module')
def server(workdir):
  """`python -m mnist_flax.demo` on a free port; yields its URL."""
  proc = subprocess.Popen(
      [sys.executable, '-m', 'mnist_flax.demo', f'--workdir={workdir}',
       '--port=0'], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  try:
    deadline = time.time() + 600  # The first run exports ONNX.
    url = None
    while url is None and time.time() < deadline:
      line = proc.stdout.readline()
      if not line:
        pytest.fail('demo exited: ' + proc.stderr.read()[-2000:])
      if line.startswith('serving '):
        url = line.split(' at ')[1].split()[0]
    yield url
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def _strokes(digit: np.ndarray, threshold: int = 96):
  """Horizontal runs of ink, row by row: [(row, first col, last col)]."""
  runs = []
  for r, row in enumerate(digit):
    cols = np.flatnonzero(row > threshold)
    if cols.size:
      breaks = np.flatnonzero(np.diff(cols) > 1)
      for s, e in zip(np.r_[0, breaks + 1], np.r_[breaks, cols.size - 1]):
        runs.append((r, int(cols[s]), int(cols[e])))
  return runs


def _pick_digit():
  images = idx.read_idx(str(SHARED_MNIST / 't10k-images-idx3-ubyte.gz'))
  labels = idx.read_idx(str(SHARED_MNIST / 't10k-labels-idx1-ubyte.gz'))
  return images[0], int(labels[0])  # A 7.


def test_drawn_digit_is_classified_like_the_predictor(server, workdir):
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  digit, _ = _pick_digit()
  with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
    browser = pw.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_FLAGS, viewport={'width': 740, 'height': 420})
    try:
      page = browser.new_page()
      errors = []
      page.on('pageerror', lambda e: errors.append(str(e)))
      page.goto(server)
      page.wait_for_function('window.demo && window.demo.ready',
                             timeout=120_000)
      box = page.locator('#pad').bounding_box()
      to_xy = lambda r, c: (box['x'] + (c + 0.5) * box['width'] / 28,
                            box['y'] + (r + 0.5) * box['height'] / 28)
      for r, c0, c1 in _strokes(digit):
        page.mouse.move(*to_xy(r, c0))
        page.mouse.down()
        page.mouse.move(*to_xy(r, c1), steps=max(2, c1 - c0))
        page.mouse.up()
      page.wait_for_function(
          'window.demo.scored === window.demo.drawn && '
          'window.demo.top3.length === 3', timeout=60_000)
      top3 = page.evaluate('window.demo.top3')
      shown = page.locator('#top3 li').first.get_attribute('data-name')
      ink = np.array(page.evaluate(
          '''Array.from(document.getElementById("pad").getContext("2d")
                 .getImageData(0, 0, 280, 280).data.filter((_, i) => i % 4 == 3))
          '''), np.float32).reshape(280, 280)
      if os.environ.get('MNIST_FLAX_DEMO_SCREENSHOT'):
        page.screenshot(path=os.environ['MNIST_FLAX_DEMO_SCREENSHOT'])
      # Clear empties the list.
      page.click('#clear')
      page.wait_for_function('window.demo.top3.length === 0', timeout=10_000)
    finally:
      browser.close()
  assert not errors, errors
  p = predict.Predictor.from_workdir(workdir)
  probs = p.predict_proba(predict.mnist_like(ink)[None])[0]
  expected = p.class_names[int(probs.argmax())]
  print('page top-3:', [(t['name'], round(t['p'], 4)) for t in top3],
        ' predictor:', expected, round(float(probs.max()), 4))
  assert shown == top3[0]['name'] == expected
  for row in top3:
    assert row['p'] == pytest.approx(
        float(probs[p.class_names.index(row['name'])]), abs=1e-4)

