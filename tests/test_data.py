import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import SHARED_MNIST, synthetic_digits, write_idx_folder
from mnist_flax import data
from mnist_flax import idx
from mnist_flax.config import Config
from mnist_flax.errors import ConfigError
from mnist_flax.errors import DataError


@pytest.mark.slow
def test_mock_tfds_path_gives_uint8_images_and_int32_labels(mock_tfds):
  with mock_tfds(num_examples=20):
    ds = data.load(Config())
  assert ds.train_images.shape == (20, 28, 28, 1)
  assert ds.train_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32
  assert ds.class_names == tuple(str(i) for i in range(10))


def test_idx_fixture_is_read_through_manual_dir(tmp_path):
  folder = write_idx_folder(tmp_path / 'idx', n_train=30, n_test=12, seed=5)
  ds = data.load(Config(manual_dir=str(folder), verify_checksums=False))
  images, labels = synthetic_digits(30, 5)
  np.testing.assert_array_equal(ds.train_images[..., 0], images)
  np.testing.assert_array_equal(ds.train_labels, labels)
  assert ds.test_images.shape == (12, 28, 28, 1)


def test_train_examples_takes_the_first_n(idx_folder):
  ds = data.load(Config(manual_dir=str(idx_folder), verify_checksums=False,
                        train_examples=10))
  full = data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  np.testing.assert_array_equal(ds.train_images, full.train_images[:10])
  with pytest.raises(DataError, match='has only 96 training examples'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False,
                     train_examples=1000))


def test_class_subset_is_relabelled_in_the_given_order(idx_folder):
  full = data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  sub = data.load(Config(manual_dir=str(idx_folder), verify_checksums=False,
                         classes='7,2'))
  assert sub.class_names == ('7', '2')
  assert set(sub.train_labels) <= {0, 1}
  keep = np.isin(full.test_labels, [7, 2])
  np.testing.assert_array_equal(sub.test_images, full.test_images[keep])
  np.testing.assert_array_equal(
      sub.test_labels, np.where(full.test_labels[keep] == 7, 0, 1))


def test_classes_absent_from_the_training_split_are_named(tmp_path):
  images, labels = synthetic_digits(64, 0)
  labels = np.where(labels == 3, 4, labels)  # No 3 left.
  folder = tmp_path / 'idx'
  write_idx_folder(folder)
  idx.write_idx(folder / 'train-images-idx3-ubyte.gz', images)
  idx.write_idx(folder / 'train-labels-idx1-ubyte.gz', labels)
  with pytest.raises(DataError, match='no examples of label 3$'):
    data.load(Config(manual_dir=str(folder), verify_checksums=False,
                     classes='3,4'))


@pytest.mark.parametrize('classes', ['1', '1,1', 'a,b', '3,12'])
def test_bad_class_lists_are_refused(classes):
  with pytest.raises(ConfigError, match='--classes'):
    Config(classes=classes).validate()


def test_missing_manual_dir_is_named(tmp_path):
  with pytest.raises(DataError, match='no such folder'):
    data.load(Config(manual_dir=str(tmp_path / 'nope')))


def test_missing_file_is_named(tmp_path, idx_folder):
  (idx_folder / 't10k-labels-idx1-ubyte.gz').unlink()
  with pytest.raises(DataError, match=r't10k-labels-idx1-ubyte.gz: missing'):
    data.load(Config(manual_dir=str(idx_folder)))
  with pytest.raises(DataError, match=r't10k-labels-idx1-ubyte.gz: file not'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))


def test_checksum_mismatch_is_named(idx_folder):
  # The fixture's files are not the canonical ones, so tfds's checksums fail.
  with pytest.raises(DataError, match=r'-ubyte.gz: checksum mismatch'):
    data.load(Config(manual_dir=str(idx_folder)))


def test_truncated_gzip_is_named(idx_folder):
  path = idx_folder / 'train-images-idx3-ubyte.gz'
  path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(DataError, match='train-images-idx3-ubyte.gz: truncated'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))


def _write_raw_gz(path, raw):
  with gzip.open(path, 'wb') as f:
    f.write(raw)


def test_bad_magic_and_bad_dimensions_are_named(idx_folder):
  path = idx_folder / 'train-labels-idx1-ubyte.gz'
  _write_raw_gz(path, b'\x00\x00\x0d\x01' + (5).to_bytes(4, 'big') + bytes(5))
  with pytest.raises(DataError, match='train-labels.*bad IDX magic'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  _write_raw_gz(path, b'\x00\x00\x08\x01' + (500).to_bytes(4, 'big') + bytes(5))
  with pytest.raises(DataError, match=r'train-labels.*shape \(500,\)'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  idx.write_idx(path, np.zeros((3, 3), np.uint8))
  with pytest.raises(DataError, match=r'want images \(N, 28, 28\) and labels'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  idx.write_idx(path, np.zeros(96, np.uint8))
  images = idx_folder / 't10k-images-idx3-ubyte.gz'
  idx.write_idx(images, np.zeros((40, 32, 32), np.uint8))
  with pytest.raises(DataError, match=r't10k-images.*\(40, 32, 32\)'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  idx.write_idx(images, np.zeros((0, 28, 28), np.uint8))
  with pytest.raises(DataError, match=r't10k-images-idx3-ubyte.gz: no images'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))
  idx.write_idx(path, np.zeros(7, np.uint8))
  with pytest.raises(DataError, match='7 labels for 96 images'):
    data.load(Config(manual_dir=str(idx_folder), verify_checksums=False))


def test_idx_roundtrip_plain_and_gzipped(tmp_path):
  a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  for name in ('a.idx', 'a.idx.gz'):
    idx.write_idx(tmp_path / name, a)
    np.testing.assert_array_equal(idx.read_idx(str(tmp_path / name)), a)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(),
                    reason=f'real MNIST files not found at {SHARED_MNIST}')
def test_real_mnist_files_pass_tfds_checksums():
  data.check_manual_dir('mnist', str(SHARED_MNIST))  # Raises on a mismatch.
  ds = data.load_idx_folder(str(SHARED_MNIST))
  assert ds.train_images.shape == (60000, 28, 28, 1)
  np.testing.assert_array_equal(
      np.bincount(ds.test_labels),
      [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_manual_dir_names_its_dataset_with_a_placeholder(tmp_path):
  write_idx_folder(tmp_path / 'mnist')
  ds = data.load(Config(manual_dir=str(tmp_path / '{dataset}'),
                        verify_checksums=False))
  assert ds.train_images.shape == (96, 28, 28, 1)
  with pytest.raises(DataError, match='fashion_mnist: no such folder'):
    data.load(Config(dataset='fashion_mnist', verify_checksums=False,
                     manual_dir=str(tmp_path / '{dataset}')))


def test_prepared_data_from_other_files_is_refused(tmp_path):
  """The guard against tfds's name-keyed extraction cache (fashion_mnist
  prepared after mnist silently held MNIST)."""
  ours = write_idx_folder(tmp_path / 'ours')
  other = write_idx_folder(tmp_path / 'other', seed=5)
  ds = data.load_idx_folder(str(ours))
  data.check_prepared_matches('fashion_mnist', ds, str(ours))
  with pytest.raises(DataError, match='prepared tfds fashion_mnist does not '
                     'hold the files of --manual_dir=.*other'):
    data.check_prepared_matches('fashion_mnist', ds, str(other))


def _fake_prepared_folder(folder, name='mnist'):
  """What tfds leaves after preparing: dataset_info.json and record files."""
  folder.mkdir(parents=True)
  for f in ('dataset_info.json', f'{name}-train.tfrecord-00000-of-00001',
            f'{name}-test.tfrecord-00000-of-00001'):
    (folder / f).write_bytes(b'x')
  return folder


def _tiny_dataset(seed=0):
  (tr, trl), (te, tel) = synthetic_digits(12, seed), synthetic_digits(5, seed + 1)
  return data.Dataset(tr[..., None], trl.astype(np.int32), te[..., None],
                      tel.astype(np.int32), tuple('abcdefghij'))


def test_array_cache_round_trips_and_follows_the_prepared_files(tmp_path):
  folder = _fake_prepared_folder(tmp_path / 'mnist' / '3.0.1')
  ds = _tiny_dataset()
  data._write_array_cache(str(folder), 'mnist', ds)
  got = data._read_array_cache(str(folder), 'mnist')
  for field in ('train_images', 'train_labels', 'test_images', 'test_labels'):
    np.testing.assert_array_equal(getattr(got, field), getattr(ds, field))
    assert getattr(got, field).dtype == getattr(ds, field).dtype
  assert got.class_names == ds.class_names
  assert sorted(p.name for p in folder.iterdir()) == sorted(
      ['dataset_info.json', 'mnist-train.tfrecord-00000-of-00001',
       'mnist-test.tfrecord-00000-of-00001', data.ARRAY_CACHE])
  # tfds prepares the folder again: the cache no longer describes it.
  (folder / 'mnist-train.tfrecord-00000-of-00001').write_bytes(b'yy')
  assert data._read_array_cache(str(folder), 'mnist') is None


def test_array_cache_is_not_used_for_an_unprepared_folder(tmp_path):
  folder = tmp_path / 'mnist' / '3.0.1'
  folder.mkdir(parents=True)
  (folder / 'dataset_info.json').write_bytes(b'x')  # Metadata only (mock_data).
  data._write_array_cache(str(folder), 'mnist', _tiny_dataset())
  assert not (folder / data.ARRAY_CACHE).exists()
  assert data._read_array_cache(str(tmp_path / 'missing'), 'mnist') is None


def test_a_corrupt_array_cache_is_ignored(tmp_path):
  folder = _fake_prepared_folder(tmp_path / 'p')
  data._write_array_cache(str(folder), 'mnist', _tiny_dataset())
  cache = folder / data.ARRAY_CACHE
  cache.write_bytes(cache.read_bytes()[:300])
  assert data._read_array_cache(str(folder), 'mnist') is None


def test_mock_data_neither_reads_nor_writes_the_array_cache(tmp_path, mock_tfds):
  with mock_tfds(num_examples=7):
    folder = tfds.builder('mnist').data_dir
    ds = data.load(Config())
  assert ds.train_images.shape == (7, 28, 28, 1)
  assert not os.path.exists(os.path.join(folder, data.ARRAY_CACHE))
