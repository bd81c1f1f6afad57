"""Exports a run to every format and checks each file in its own runtime.

    python benchmarks/export_check.py --workdir=runs/base \
        --manual_dir=../shared/data/mnist [--member=K]

For each of stablehlo, litert, litert int8 and onnx it prints: the max abs
difference from Predictor's probabilities on the first 1,000 test images, the
accuracy on the whole test set, the file size, and the time per image at
batch 1 and at batch 1000 on this CPU (median of repeated calls after a
warm-up call; the batch-1000 calls are the accuracy pass's; every runtime
gets all the cores).
"""

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from mnist_flax import data
from mnist_flax import export as export_lib
from mnist_flax import exported
from mnist_flax import flagging
from mnist_flax.errors import UserError
from mnist_flax.predict import Predictor
from throughput import cpu_description  # This folder's CPU report.

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run to export.',
                               required=True)
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '../shared/data/mnist',
                                  'Folder of the four IDX files.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'latest',
                                  "'latest', 'best' or an epoch number.")
_MEMBER = flags.DEFINE_integer('member', None, 'Of a --num_models run, check '
                                'model K alone (default: the ensemble).')
_FORMATS = flags.DEFINE_list('formats', 'stablehlo,litert,litert_int8,onnx',
                             'Which exports to check.')
_REPEATS = flags.DEFINE_integer('repeats', 200, 'Batch-1 calls timed.')
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write rows here.')


def _time_per_image(model, images, batch, calls) -> float:
  x = images[:batch]
  model(x)  # Warm-up: compiles, plans or resizes for this batch size.
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    model(x)
    times.append(time.perf_counter() - start)
  return statistics.median(times) / batch


def check(predictor, test_images, test_labels, fmt, out_dir, reference):
  quantize = 'dynamic_int8' if fmt.endswith('_int8') else 'none'
  base = fmt.removesuffix('_int8')
  out = os.path.join(out_dir, f'{fmt}{export_lib.FORMATS[base]}')
  start = time.perf_counter()
  export_lib.export(_WORKDIR.value, base, out, _CHECKPOINT.value, quantize,
                    predictor=predictor, member=_MEMBER.value)
  export_s = time.perf_counter() - start
  model = exported.load(out, num_threads=os.cpu_count())
  # The accuracy pass doubles as the batch-1000 timing: its first call is
  # the warm-up, the median of the others the time.
  probs, times = [], []
  for i in range(0, len(test_images), 1000):
    start = time.perf_counter()
    probs.append(model(test_images[i:i + 1000]))
    times.append((time.perf_counter() - start) / len(probs[-1]))
  probs = np.concatenate(probs)
  return {
      'format': fmt,
      'max_abs_diff_1000': float(np.abs(probs[:1000] - reference[:1000]).max()),
      'accuracy': float((probs.argmax(-1) == test_labels).mean()),
      'top1_agreement': float((probs.argmax(-1) == reference.argmax(-1)).mean()),
      'bytes': os.path.getsize(out),
      'ms_per_image_batch1': 1e3 * _time_per_image(model, test_images, 1,
                                                    _REPEATS.value),
      'ms_per_image_batch1000': 1e3 * statistics.median(times[1:] or times),
      'export_s': export_s,
  }


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  known = [*export_lib.FORMATS, 'litert_int8']
  unknown = [f for f in _FORMATS.value if f not in known]
  try:
    if unknown:
      raise UserError(f'--formats: unknown {", ".join(unknown)}; choose from '
                      + ', '.join(known))
    ds = data.load_idx_folder(_MANUAL_DIR.value)
    run = Predictor.from_workdir(_WORKDIR.value, _CHECKPOINT.value)
    predictor = run if _MEMBER.value is None else run.member(_MEMBER.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  images, labels = ds.test_images[..., 0], ds.test_labels
  reference = predictor.predict_proba(images)
  base_accuracy = float((reference.argmax(-1) == labels).mean())
  cpu = cpu_description()
  which = ('' if _MEMBER.value is None else
           f' (member {_MEMBER.value} of {run.num_models})')
  print(f'{_WORKDIR.value}{which}: {predictor.num_models} model(s), Predictor '
        f'accuracy {base_accuracy:.4f} on {len(labels)} test images')
  print(f'CPU: {cpu["model"]}, {cpu["cores"]} cores, '
        f'{" ".join(cpu["features"])}')
  print('| format | max abs diff (1,000 images) | accuracy | change | size '
        '| ms/image batch 1 | ms/image batch 1000 | export s |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  rows = []
  with tempfile.TemporaryDirectory() as out_dir:
    for fmt in _FORMATS.value:
      row = check(run, images, labels, fmt, out_dir, reference)
      row['accuracy_change'] = row['accuracy'] - base_accuracy
      rows.append(row)
      print(f'| {fmt} | {row["max_abs_diff_1000"]:.2g} | '
            f'{row["accuracy"]:.4f} | {100 * row["accuracy_change"]:+.2f} pt '
            f'| {row["bytes"] / 1e6:.2f} MB | '
            f'{row["ms_per_image_batch1"]:.3f} | '
            f'{row["ms_per_image_batch1000"]:.4f} | {row["export_s"]:.0f} |',
            flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump({'workdir': _WORKDIR.value, 'member': _MEMBER.value,
                 'cpu': cpu, 'num_models': predictor.num_models,
                 'predictor_accuracy': base_accuracy, 'rows': rows}, f,
                indent=2)


if __name__ == '__main__':
  app.run(main, flags_parser=flagging.parse_flags_or_exit)
