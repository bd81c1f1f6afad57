"""What a run leaves behind for people: metrics.jsonl, results.json and plots."""

import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def write_atomic(path: str, text: str) -> None:
  """Writes via a temporary file and a rename, so a kill leaves old or new."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_metrics(workdir: str, history: list[dict]) -> None:
  write_atomic(os.path.join(workdir, 'metrics.jsonl'),
               ''.join(json.dumps(row) + '\n' for row in history))


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
  best = max((r for r in history if 'test_accuracy' in r),
             key=lambda r: r['test_accuracy'])
  out = {
      'final_test_accuracy': float((labels == preds).mean()),
      'final_test_loss': history[-1]['test_loss'],
      'best_test_accuracy': best['test_accuracy'],
      'best_epoch': best['epoch'],
      'epochs': len(history),
      'num_test_examples': int(len(labels)),
      'per_class_accuracy': {n: float(a) for n, a in zip(class_names, per_class)},
      'confusion_matrix': cm.tolist(),
      'class_names': list(class_names),
      'train_seconds': float(sum(r['seconds'] for r in history)),
  }
  out.update(extra or {})
  return out


def plot_learning_curves(history: list[dict], path: str) -> None:
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  for split in ('train', 'test'):
    rows = [r for r in history if f'{split}_loss' in r]  # See --eval_every.
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
