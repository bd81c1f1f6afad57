"""What a run leaves behind for people: metrics, results.json and plots.

`MetricsWriter` writes each epoch's row to metrics.jsonl and, optionally, to
TensorBoard (one curve per model for per-model metrics); `write_results`
writes results.json and the plots of the final evaluation.
"""

import json
import os

from absl import logging
import jax
import numpy as np

from mnist_flax import augment
from mnist_flax import console
from mnist_flax import steps
from mnist_flax import workdir as workdir_lib


def _pyplot():
  """matplotlib, imported when a plot is drawn (it costs start-up time, and
  an accelerator host may not have it)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


LAST_EPOCHS = 5  # results.json's spread of the final epochs' test accuracy.


class MetricsWriter:
  """metrics.jsonl (rewritten whole, atomically, so it always matches the
  checkpoint it came with) and TensorBoard event files."""

  def __init__(self, workdir: str, tensorboard: bool):
    self.path = os.path.join(workdir, workdir_lib.METRICS)
    self.tensorboard = None
    if tensorboard:
      # Imports TensorFlow, so only when asked for.
      with console.native_stderr_quiet():
        from flax.metrics import tensorboard as tb  # pylint: disable=g-import-not-at-top
      self.tensorboard = tb.SummaryWriter(workdir)

  def write_history(self, history: list[dict]) -> None:
    workdir_lib.write_atomic(
        self.path, ''.join(json.dumps(row) + '\n' for row in history))

  def write_epoch(self, history: list[dict]) -> None:
    """history's last row is a new epoch: to metrics.jsonl and TensorBoard."""
    self.write_history(history)
    if self.tensorboard is None:
      return
    row = history[-1]
    for name, value in row.items():
      if isinstance(value, list):  # Per model: one curve each.
        for k, v in enumerate(value):
          self.tensorboard.scalar(f'{name}/{k}', v, row['epoch'])
      elif name != 'epoch':
        self.tensorboard.scalar(name, value, row['epoch'])
    self.tensorboard.flush()

  def close(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()


def confusion_matrix(labels: np.ndarray, preds: np.ndarray,
                     num_classes: int) -> np.ndarray:
  m = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(m, (labels, preds), 1)
  return m


def results(history: list[dict], labels: np.ndarray, preds: np.ndarray,
            class_names: tuple[str, ...], extra: dict | None = None) -> dict:
  """results.json: final and best accuracy, per-class accuracy, confusion."""
  cm = confusion_matrix(labels, preds, len(class_names))
  per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
  evaluated = [r for r in history if 'test_accuracy' in r]
  on = 'val' if 'val_accuracy' in evaluated[-1] else 'test'
  best = max(evaluated, key=lambda r: r[f'{on}_accuracy'])
  last = [r['test_accuracy'] for r in evaluated[-LAST_EPOCHS:]]
  out = {
      'final_test_accuracy': float((labels == preds).mean()),
      'final_test_loss': history[-1]['test_loss'],
      # The final epoch is the figure to report. Where the last iterate
      # jumps about (a constant rate), the last epochs' spread shows it.
      f'last{LAST_EPOCHS}_mean_test_accuracy': float(np.mean(last)),
      f'last{LAST_EPOCHS}_std_test_accuracy': float(np.std(last)),
      'best_epoch': best['epoch'],
      'best_test_accuracy': best['test_accuracy'],
      'best_chosen_on': 'validation' if on == 'val' else 'test',
      'epochs': len(history),
      'num_test_examples': int(len(labels)),
      'per_class_accuracy': {n: float(a) for n, a in zip(class_names, per_class)},
      'confusion_matrix': cm.tolist(),
      'class_names': list(class_names),
      'train_seconds': float(sum(r['seconds'] for r in history)),
  }
  if on == 'val':
    out['best_val_accuracy'] = best['val_accuracy']
    out['final_val_accuracy'] = evaluated[-1]['val_accuracy']
  else:
    out['best_note'] = (
        'best_epoch was chosen on the test set, so best_test_accuracy is not '
        'a fair estimate; report final_test_accuracy, or hold out a '
        'validation split (--validation_examples) to choose on')
  out.update(extra or {})
  return out


def model_summary(history: list[dict]) -> dict:
  """With several models: each model's mean test accuracy over the last
  epochs, and its best epoch (chosen on validation where there is a split)."""
  evaluated = [r for r in history if 'model_test_accuracy' in r]
  test = np.array([r['model_test_accuracy'] for r in evaluated])  # (E, K)
  on = 'val' if 'model_val_accuracy' in evaluated[-1] else 'test'
  chosen = np.array([r[f'model_{on}_accuracy'] for r in evaluated])
  best = chosen.argmax(axis=0)  # The first of equals, as for one model.
  out = {
      f'model_last{LAST_EPOCHS}_mean_test_accuracy':
          test[-LAST_EPOCHS:].mean(axis=0).tolist(),
      'model_best_epoch': [evaluated[i]['epoch'] for i in best],
      'model_best_test_accuracy': [float(test[i, k])
                                   for k, i in enumerate(best)],
  }
  if on == 'val':
    out['model_final_val_accuracy'] = list(evaluated[-1]['model_val_accuracy'])
  return out


def plot_learning_curves(history: list[dict], path: str) -> None:
  plt = _pyplot()
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  for split in ('train', 'val', 'test'):
    rows = [r for r in history if f'{split}_loss' in r]  # See --eval_every.
    if not rows:
      continue
    epochs = [r['epoch'] for r in rows]
    ax_loss.plot(epochs, [r[f'{split}_loss'] for r in rows], 'o-', label=split)
    ax_acc.plot(epochs, [100 * r[f'{split}_accuracy'] for r in rows], 'o-',
                label=split)
  ax_loss.set(xlabel='epoch', ylabel='cross-entropy', title='loss')
  ax_acc.set(xlabel='epoch', ylabel='accuracy (%)', title='accuracy')
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_confusion(cm: np.ndarray, class_names, path: str) -> None:
  plt = _pyplot()
  k = len(class_names)
  fig, ax = plt.subplots(figsize=(1 + 0.6 * k, 1 + 0.6 * k))
  ax.imshow(np.log1p(cm), cmap='Blues')
  for i in range(k):
    for j in range(k):
      ax.text(j, i, str(cm[i, j]), ha='center', va='center', fontsize=7,
              color='white' if cm[i, j] > cm.max() / 2 else 'black')
  ax.set_xticks(range(k), class_names, rotation=90 if k > 10 or
                max(map(len, class_names)) > 2 else 0)
  ax.set_yticks(range(k), class_names)
  ax.set(xlabel='predicted', ylabel='true', title='confusion matrix (test)')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_image_grid(images: np.ndarray, titles: list[str], path: str,
                    suptitle: str, cols: int = 8) -> None:
  """A grid of 28x28 digits, each titled; used for errors and augmentations."""
  plt = _pyplot()
  n = len(images)
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, img, title in zip(axes.flat, images, titles):
    ax.imshow(np.squeeze(img), cmap='gray', vmin=0, vmax=255)
    ax.set_title(title, fontsize=7)
  fig.suptitle(suptitle)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_misclassified(images, labels, preds, confidence, class_names, path,
                       max_images: int = 48) -> int:
  """Grid of the most confidently wrong test digits; returns how many errors."""
  wrong = np.flatnonzero(labels != preds)
  worst = wrong[np.argsort(-confidence[wrong], kind='stable')][:max_images]
  titles = [f'true {class_names[labels[i]]} pred {class_names[preds[i]]}\n'
            f'p={confidence[i]:.2f}' for i in worst]
  plot_image_grid(images[worst], titles, path,
                  f'misclassified test images ({len(wrong)} in all)')
  return len(wrong)


def save_augment_preview(spec: str, images: np.ndarray, labels: np.ndarray,
                         class_names, path: str) -> None:
  """8 training digits, each with 7 augmented draws, as a PNG grid."""
  originals = steps.normalize(jax.numpy.asarray(images[:8]))
  draws = [augment.apply(spec, jax.random.PRNGKey(i), originals)
           for i in range(7)]
  grid = jax.numpy.stack([originals] + draws, axis=1).reshape(
      -1, *originals.shape[1:])
  titles = [('original ' if j == 0 else '') + class_names[int(label)]
            for label in labels[:8] for j in range(8)]
  plot_image_grid(np.asarray(grid * 255), titles, path, f'--augment={spec}')


def _plot_run(workdir, history, res, test_images, test_labels, result,
              class_names) -> None:
  """curves.png, confusion.png and misclassified.png."""
  try:
    plot_learning_curves(history, os.path.join(workdir, 'curves.png'))
    plot_confusion(np.array(res['confusion_matrix']), class_names,
                   os.path.join(workdir, 'confusion.png'))
    plot_misclassified(test_images, test_labels, result.preds,
                       result.confidence, class_names,
                       os.path.join(workdir, 'misclassified.png'))
  except ImportError as e:  # A bare accelerator host without matplotlib.
    logging.warning('no plots: %s', e)


def write_results(workdir: str, history: list[dict], test_images, test_labels,
                  class_names, result, robust: dict | None = None,
                  num_models: int = 1, plots: bool = True) -> dict:
  """results.json and the PNG plots for the final evaluation `result` (an
  evaluation.EvalResult; with several models, the ensemble's, plus each
  model's own accuracies)."""
  robust = robust or {}
  extra = {}
  if robust:
    extra['robustness_accuracy'] = {k: r.accuracy for k, r in robust.items()}
  if num_models > 1:
    extra.update(num_models=num_models,
                 model_final_test_accuracy=result.model_accuracy,
                 model_mean_test_accuracy=float(np.mean(result.model_accuracy)),
                 model_std_test_accuracy=float(np.std(result.model_accuracy,
                                                      ddof=1)),
                 **model_summary(history))
    if robust:
      extra['model_robustness_accuracy'] = {
          k: r.model_accuracy for k, r in robust.items()}
  res = results(history, test_labels, result.preds, class_names, extra)
  workdir_lib.write_json(os.path.join(workdir, workdir_lib.RESULTS), res)
  if plots:
    _plot_run(workdir, history, res, test_images, test_labels, result,
              class_names)
  logging.info('final test accuracy %.2f%% (best epoch %d, chosen on %s: '
               'test %.2f%%); results in %s', 100 * res['final_test_accuracy'],
               res['best_epoch'], res['best_chosen_on'],
               100 * res['best_test_accuracy'], workdir)
  return res
