"""The data path: tfds prepares a dataset once, and each split is loaded whole.

MNIST-sized datasets fit in memory many times over, so a split is one uint8
array (N, 28, 28, 1) plus int32 labels. The training loop puts them on the device
once and normalises there; nothing is streamed per step.

Offline machines pass `manual_dir`, a folder holding the four canonical IDX
files. Their names and SHA-256 sums come from tfds's own registry, and tfds
verifies them again while preparing, exactly as for a download.

Reading a prepared split back through tf.data costs TensorFlow's import and a
PNG decode per image (seconds for MNIST; see BENCHMARKS.md). So the decoded
arrays are also saved once, as ARRAY_CACHE in the prepared dataset's own
folder, tagged with that folder's file names, sizes and mtimes; later runs
load them in a fraction of a second without importing TensorFlow. If tfds
prepares the dataset again, or the cache is unreadable, it is rebuilt.
"""

import dataclasses
import hashlib
import json
import os
import tempfile

from absl import logging
import jax
import numpy as np

from mnist_flax import console
from mnist_flax import idx
from mnist_flax.errors import DataError

IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Dataset:
  train_images: np.ndarray  # (N, 28, 28, 1) uint8
  train_labels: np.ndarray  # (N,) int32
  test_images: np.ndarray
  test_labels: np.ndarray
  class_names: tuple[str, ...] = dataclasses.field(metadata={'static': True})
  # Held out from the training split by --validation_examples (else empty).
  val_images: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 28, 28, 1), np.uint8))
  val_labels: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0,), np.int32))

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def pad_to_multiple(array, multiple: int):
  """Zero-pads the first axis of a numpy or jax array to a multiple of
  `multiple`; callers ignore the padding (see evaluation.evaluate)."""
  pad = -array.shape[0] % multiple
  if not pad:
    return array
  xp = np if isinstance(array, np.ndarray) else jax.numpy
  return xp.pad(array, [(0, pad)] + [(0, 0)] * (array.ndim - 1))


def load(config) -> Dataset:
  """Loads config.dataset as arrays, applying --classes and --train_examples."""
  manual_dir = config.manual_dir.replace('{dataset}', config.dataset)
  if manual_dir and not config.verify_checksums:
    ds = load_idx_folder(manual_dir)
  else:
    if manual_dir:
      check_manual_dir(config.dataset, manual_dir)
    ds = load_tfds(config.dataset, config.data_dir or None, manual_dir or None)
    if manual_dir:
      check_prepared_matches(config.dataset, ds, manual_dir)
  ds = select_classes(ds, config.class_list())
  if config.validation_examples:
    ds = hold_out_validation(ds, config.validation_examples)
  if config.train_examples:
    if config.train_examples > len(ds.train_labels):
      raise DataError(
          f'--train_examples={config.train_examples} but {config.dataset} '
          f'has only {len(ds.train_labels)} training examples')
    ds = dataclasses.replace(
        ds, train_images=ds.train_images[:config.train_examples],
        train_labels=ds.train_labels[:config.train_examples])
  return ds


def registered_files(name: str) -> dict[str, str]:
  """File name -> SHA-256 that tfds registers for dataset `name`."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder_cls = tfds.builder_cls(name)
  return {info.filename: info.checksum
          for info in builder_cls.url_infos.values()}


def registered_urls(name: str) -> list[str]:
  """The download URLs tfds registers for dataset `name`."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return sorted(tfds.builder_cls(name).url_infos)


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def check_manual_dir(name: str, manual_dir: str) -> None:
  """One-line DataError for a missing folder, missing file or bad checksum."""
  if not os.path.isdir(manual_dir):
    raise DataError(f'--manual_dir={manual_dir}: no such folder')
  files = sorted(registered_files(name).items())
  for filename, _ in files:  # Every missing file before any checksum.
    path = os.path.join(manual_dir, filename)
    if not os.path.isfile(path):
      raise DataError(f'{path}: missing (tfds {name} needs {filename})')
  for filename, want in files:
    path = os.path.join(manual_dir, filename)
    got = sha256(path)
    if got != want:
      raise DataError(
          f'{path}: checksum mismatch (sha256 {got[:16]}..., tfds registers '
          f'{want[:16]}... for {name}); the file is corrupt or not {name}')


def check_prepared_matches(name: str, ds: Dataset, manual_dir: str) -> None:
  """DataError unless the loaded test split holds manual_dir's test files.

  Order-free (tfds shuffles when it prepares): the label counts and the sum of
  all pixels. It catches a tfds folder prepared from other files, e.g. by
  tfds versions whose extraction cache is keyed by file name alone, so that
  fashion_mnist prepared after mnist from a manual_dir silently got MNIST.
  """
  images_file, labels_file = IDX_FILES['test']
  images = idx.read_idx(os.path.join(manual_dir, images_file))
  labels = idx.read_idx(os.path.join(manual_dir, labels_file))
  same = (images.sum(dtype=np.int64) == ds.test_images.sum(dtype=np.int64) and
          np.array_equal(np.bincount(labels, minlength=ds.num_classes),
                         np.bincount(ds.test_labels,
                                     minlength=ds.num_classes)))
  if not same:
    raise DataError(
        f'the prepared tfds {name} does not hold the files of --manual_dir='
        f'{manual_dir} (its test split differs); delete the prepared folder '
        f'({name}/ under the tfds data_dir) and run again')


def _hide_gpus_from_tensorflow() -> None:
  """tfds needs TensorFlow to prepare data; keep TF off the accelerators."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  with console.native_stderr_quiet():  # TF's load-time notices.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised (e.g. in tests); it stays as it was.


ARRAY_CACHE = 'mnist_flax_arrays.npz'


def _prepared_fingerprint(folder: str, name: str) -> str | None:
  """The prepared files' names, sizes and mtimes; None if not prepared here.

  Prepared means both splits' record files and tfds's dataset_info.json (which
  it writes last) are in `folder`. Under tfds.testing.mock_data the builder's
  folder holds metadata only, so mocked data is never cached or shadowed.
  """
  try:
    entries = sorted((e for e in os.scandir(folder) if e.is_file() and
                      not e.name.startswith(ARRAY_CACHE)),
                     key=lambda e: e.name)
  except OSError:  # Not prepared yet, or not a local folder (gs://...).
    return None
  names = [e.name for e in entries]
  if ('dataset_info.json' not in names or
      not all(any(n.startswith(f'{name}-{split}.') for n in names)
              for split in ('train', 'test'))):
    return None
  return json.dumps([(e.name, e.stat().st_size, e.stat().st_mtime_ns)
                     for e in entries])


def _read_array_cache(folder: str, name: str) -> Dataset | None:
  fingerprint = _prepared_fingerprint(folder, name)
  path = os.path.join(folder, ARRAY_CACHE)
  if fingerprint is None or not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if str(f['fingerprint']) != fingerprint:
        return None  # tfds prepared this folder again since.
      ds = Dataset(f['train_images'], f['train_labels'], f['test_images'],
                   f['test_labels'], tuple(str(c) for c in f['class_names']))
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('%s: unreadable (%s); reading the prepared tfds files',
                    path, e)
    return None
  for images, labels in ((ds.train_images, ds.train_labels),
                         (ds.test_images, ds.test_labels)):
    if (images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1 or
        len(images) != len(labels)):
      logging.warning('%s: malformed; reading the prepared tfds files', path)
      return None
  return ds


def _write_array_cache(folder: str, name: str, ds: Dataset) -> None:
  """Saves ds beside the prepared files (atomically; skipped if read-only)."""
  fingerprint = _prepared_fingerprint(folder, name)
  if fingerprint is None:
    return
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=ARRAY_CACHE + '.')
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, train_images=ds.train_images, train_labels=ds.train_labels,
               test_images=ds.test_images, test_labels=ds.test_labels,
               class_names=np.array(ds.class_names),
               fingerprint=np.array(fingerprint))
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(folder, ARRAY_CACHE))
  except OSError as e:
    logging.warning('cannot cache %s arrays in %s: %s', name, folder, e)
    if tmp and os.path.exists(tmp):
      os.remove(tmp)


def load_tfds(name: str, data_dir: str | None,
              manual_dir: str | None) -> Dataset:
  """Prepares (once) and loads both splits of a tfds dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  cached = _read_array_cache(builder.data_dir, name)
  if cached is not None:
    return cached
  _hide_gpus_from_tensorflow()
  # tfds extracts manual files to downloads/extracted/GZIP.<file name>, a name
  # that mnist, fashion_mnist and kmnist share, and reuses what it finds there
  # (the collision of tensorflow/datasets#2267): give each dataset its own.
  extract_dir = (os.path.join(builder.data_dir_root, 'downloads', 'extracted',
                              name) if manual_dir else None)
  prepared = os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  if not manual_dir and not prepared:
    _check_downloadable(name, builder.data_dir)
  logging.info('preparing tfds %s in %s (once: later runs load a cache)',
               name, builder.data_dir)
  if not console.verbose():
    tfds.disable_progress_bar()
  try:
    with console.library_output_quiet():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              manual_dir=manual_dir, extract_dir=extract_dir))
  except Exception as e:  # pylint: disable=broad-except
    # Matched by name: where tfds defines its exceptions moves between
    # releases, and naming an attribute it lacks turns the error into a crash.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if type(e).__name__ == 'NonMatchingChecksumError':
      raise DataError(f'{name}: {first}') from None
    raise DataError(
        f'could not prepare tfds {name} in {builder.data_dir}: {first}. '
        f'{_MANUAL_DIR_HINT}') from None
  arrays = {}
  for split in ('train', 'test'):
    try:
      # Big batches, not batch_size=-1, which aborts under tfds's mock_data.
      batches = list(tfds.as_numpy(
          builder.as_dataset(split=split, batch_size=10_000)))
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'{name}: cannot load split {split!r}: {e}') from None
    arrays[split] = (
        np.concatenate([b['image'] for b in batches]).astype(np.uint8),
        np.concatenate([b['label'] for b in batches]).astype(np.int32))
  names = tuple(builder.info.features['label'].names)
  ds = Dataset(*arrays['train'], *arrays['test'], class_names=names)
  _write_array_cache(builder.data_dir, name, ds)
  return ds


_MANUAL_DIR_HINT = ('Offline? Pass --manual_dir=FOLDER holding the four IDX '
                    'files (' + ', '.join(
                        f for pair in IDX_FILES.values() for f in pair) + ').')


def _check_downloadable(name: str, data_dir: str, timeout_s: float = 15.0):
  """DataError at once when tfds could not download `name`.

  Without this, tfds retries each file about ten times with backoff before it
  gives up, minutes on a machine without network. One HEAD request per file
  host, through the same `requests` (and proxy settings) tfds uses.
  """
  import requests  # pylint: disable=g-import-not-at-top
  hosts = {}
  for url in registered_urls(name):
    hosts.setdefault(url.split('/')[2], url)
  for url in hosts.values():
    try:
      requests.head(url, timeout=timeout_s, allow_redirects=True)
    except requests.RequestException as e:
      raise DataError(
          f'cannot download tfds {name} into {data_dir}: {url} is '
          f'unreachable ({type(e).__name__}). {_MANUAL_DIR_HINT}') from None


def load_idx_folder(folder: str) -> Dataset:
  """Loads a folder of IDX files directly, validating each one strictly."""
  if not os.path.isdir(folder):
    raise DataError(f'--manual_dir={folder}: no such folder')
  arrays = {}
  for split, (images_file, labels_file) in IDX_FILES.items():
    images = idx.read_idx(os.path.join(folder, images_file))
    labels = idx.read_idx(os.path.join(folder, labels_file))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
      # 28x28: the size every checkpoint, the Predictor and export assume.
      raise DataError(
          f'{os.path.join(folder, images_file)}: want images (N, 28, 28) and '
          f'labels (N,), got {images.shape} and {labels.shape}')
    if not len(images):
      raise DataError(f'{os.path.join(folder, images_file)}: no images')
    if len(images) != len(labels):
      raise DataError(
          f'{os.path.join(folder, labels_file)}: {len(labels)} labels for '
          f'{len(images)} images')
    if labels.size and labels.max() > 9:
      raise DataError(
          f'{os.path.join(folder, labels_file)}: label {labels.max()} > 9')
    arrays[split] = (images[..., None].copy(), labels.astype(np.int32))
  return Dataset(*arrays['train'], *arrays['test'],
                 class_names=tuple(str(i) for i in range(10)))


def hold_out_validation(ds: Dataset, n: int) -> Dataset:
  """The last n training examples become the validation split."""
  if n >= len(ds.train_labels):
    raise DataError(f'--validation_examples={n} leaves no training examples '
                    f'(the training split has {len(ds.train_labels)})')
  return dataclasses.replace(
      ds, train_images=ds.train_images[:-n], train_labels=ds.train_labels[:-n],
      val_images=ds.train_images[-n:], val_labels=ds.train_labels[-n:])


def select_classes(ds: Dataset, classes: tuple[int, ...] | None) -> Dataset:
  """Keeps only `classes`, relabelled 0..K-1 in the given order."""
  if classes is None:
    return ds
  lut = np.full(max(ds.num_classes, max(classes) + 1), -1, np.int32)
  lut[list(classes)] = np.arange(len(classes), dtype=np.int32)

  def subset(images, labels):
    keep = lut[labels] >= 0
    return images[keep], lut[labels[keep]]

  train, test = (subset(ds.train_images, ds.train_labels),
                 subset(ds.test_images, ds.test_labels))
  missing = sorted(set(range(len(classes))) - set(np.unique(train[1])))
  if missing:
    raise DataError('--classes: the training split has no examples of label '
                    + ', '.join(str(classes[m]) for m in missing))
  return Dataset(*train, *test,
                 class_names=tuple(ds.class_names[c] for c in classes))
