import json
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import REPO, synthetic_digits, tiny_config, write_idx_folder
from mnist_flax import data
from mnist_flax import predict
from mnist_flax import train
from mnist_flax.errors import CheckpointError


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('predict')
  folder = write_idx_folder(root / 'idx', n_train=160, n_test=40)
  config = tiny_config(folder, epochs=3)
  train.train_and_evaluate(config, str(root / 'run'))
  return root / 'run', data.load(config)


def test_predictor_agrees_with_results_json(trained):
  workdir, ds = trained
  p = predict.Predictor.from_workdir(str(workdir))
  probs = p.predict_proba(ds.test_images[..., 0])
  assert probs.shape == (40, 10)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  results = json.loads((workdir / 'results.json').read_text())
  accuracy = float((probs.argmax(-1) == ds.test_labels).mean())
  assert accuracy == results['final_test_accuracy']


@pytest.mark.slow
def test_predictor_batches_and_checks_its_input(trained):
  workdir, ds = trained
  p = predict.Predictor.from_workdir(str(workdir), checkpoint='best')
  p.batch_size = 16  # 40 images: two full batches and a padded one.
  images = ds.test_images[..., 0]
  full = predict.Predictor.from_workdir(str(workdir), 'best').predict_proba(images)
  np.testing.assert_allclose(p.predict_proba(images), full, atol=1e-6)
  with pytest.raises(ValueError, match='uint8'):
    p.predict_proba(images.astype(np.float32))
  with pytest.raises(ValueError, match=r'\[N, 28, 28\]'):
    p.predict_proba(images[:, :20])


def _big_dark_on_light(tmp_path, label=3, name='digit.png', mode='L'):
  images, labels = synthetic_digits(50, seed=7)
  i = int(np.flatnonzero(labels == label)[0])
  img = Image.fromarray(255 - images[i]).resize((280, 200))
  path = tmp_path / name
  img.convert(mode).save(path)
  return path


def test_mnist_like_conversion_centres_and_fits_the_digit(tmp_path):
  arr = predict.load_image(str(_big_dark_on_light(tmp_path)))
  assert arr.shape == (28, 28) and arr.dtype == np.uint8
  assert arr[0].max() == 0 and arr[:, 0].max() == 0  # Light-on-dark now.
  ys, xs = np.indices(arr.shape)
  mass = arr.astype(float).sum()
  assert abs((ys * arr).sum() / mass - 14) < 1.5
  assert abs((xs * arr).sum() / mass - 14) < 1.5
  rows = np.flatnonzero(arr.max(1) > 50)
  cols = np.flatnonzero(arr.max(0) > 50)
  assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21


def _cli(workdir, *paths):
  return subprocess.run(
      [sys.executable, '-m', 'mnist_flax.predict', f'--workdir={workdir}',
       *map(str, paths)], capture_output=True, text=True, cwd=REPO,
      timeout=300)


def test_cli_classifies_good_files_and_names_each_bad_one(trained, tmp_path):
  workdir, _ = trained
  good = [_big_dark_on_light(tmp_path, name='a.png'),
          _big_dark_on_light(tmp_path, name='b.jpg', mode='RGB'),
          _big_dark_on_light(tmp_path, name='c.png', mode='RGBA'),
          _big_dark_on_light(tmp_path, name='d.png', mode='I;16')]
  (tmp_path / 'text.png').write_text('not an image')
  (tmp_path / 'empty.png').write_bytes(b'')
  Image.new('1', (9000, 9000)).save(tmp_path / 'bomb.png')
  Image.new('L', (50, 50), 255).save(tmp_path / 'blank.png')
  png = (tmp_path / 'a.png').read_bytes()
  (tmp_path / 'cut.png').write_bytes(png[:len(png) // 2])
  bad = ['text.png', 'empty.png', 'bomb.png', 'blank.png', 'cut.png',
         'missing.png']
  proc = _cli(workdir, *good[:2], *[tmp_path / b for b in bad], *good[2:])
  assert proc.returncode == 2
  out = proc.stdout.strip().splitlines()
  assert [l.split('\t')[0] for l in out] == [str(p) for p in good]
  for line in out:
    _, label, prob = line.split('\t')
    assert label in '0123456789' and 0 < float(prob) <= 1
  errors = proc.stderr.strip().splitlines()
  errors = [e for e in errors if e.startswith('error: ')]
  assert len(errors) == len(bad)
  for name, error in zip(bad, errors):
    assert name in error
  assert 'Traceback' not in proc.stderr
  assert 'decompression bomb' in errors[2] or 'pixels is over' in errors[2]
  assert 'blank' in errors[3] or 'no digit' in errors[3]


# orbax leaves a read of the truncated file un-awaited when the restore fails.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_reader_names_an_unreadable_checkpoint_and_changes_nothing(
    trained, tmp_path):
  workdir, _ = trained
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  latest = max((run / 'checkpoints').iterdir(),
               key=lambda p: int(p.name) if p.name.isdigit() else -1)
  biggest = max((p for p in latest.rglob('*') if p.is_file()),
                key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[:100])
  before = sorted(str(p.relative_to(run)) for p in run.rglob('*'))
  with pytest.raises(CheckpointError, match=(
      rf'checkpoint of epoch {latest.name} is unreadable .*--checkpoint=N')):
    predict.Predictor.from_workdir(str(run))
  assert sorted(str(p.relative_to(run)) for p in run.rglob('*')) == before
  older = predict.Predictor.from_workdir(str(run), checkpoint='2')
  assert older.predict(np.zeros((1, 28, 28), np.uint8)).shape == (1,)


def test_a_float_image_with_infinite_pixels_is_refused(tmp_path):
  pixels = np.zeros((40, 40), np.float32)
  pixels[10:30, 18:22] = np.inf
  Image.fromarray(pixels, mode='F').save(tmp_path / 'inf.tif')
  with pytest.raises(predict.ImageError, match='not finite'):
    predict.load_image(str(tmp_path / 'inf.tif'))
