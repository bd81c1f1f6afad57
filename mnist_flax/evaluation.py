"""Evaluation: a split scored in batches, the ensemble of several models, and
the robustness sets.

Every example counts exactly once: arrays that are not a whole number of
eval batches are padded, and the padding is never scored.
"""

import dataclasses

from absl import logging
import jax
import numpy as np

from mnist_flax import data
from mnist_flax import distributed
from mnist_flax import robustness
from mnist_flax import steps
from mnist_flax.config import Config
from mnist_flax.state import TrainState


@dataclasses.dataclass
class EvalResult:
  """An evaluation; with several models, of their ensemble (the mean of
  their softmaxes), plus each model's own loss and accuracy."""
  loss: float
  accuracy: float
  preds: np.ndarray       # (N,) predicted class
  confidence: np.ndarray  # (N,) softmax probability of the predicted class
  model_loss: list[float] | None = None
  model_accuracy: list[float] | None = None


def evaluate(state: TrainState, images: jax.Array, labels: jax.Array,
             batch_size: int, mesh=None, num_examples: int | None = None,
             num_models: int = 1) -> EvalResult:
  """Evaluates the first `num_examples` (default: all) in batches.

  If the arrays are not a multiple of batch_size they are padded here; the
  training loop pads its splits once instead. Padding never counts.
  """
  mesh = mesh or distributed.make_mesh()
  n = labels.shape[0] if num_examples is None else num_examples
  images = data.pad_to_multiple(images, batch_size)
  labels = data.pad_to_multiple(labels, batch_size)
  step = steps.make_eval_step(mesh, batch_size, num_models)
  outs = [step(state, images, labels, i)
          for i in range(labels.shape[0] // batch_size)]
  # Example axis last but one: (N, C) for one model, (K, N, C) for K.
  loss = np.concatenate([np.asarray(o['loss']) for o in outs], -1)[..., :n]
  logits = np.concatenate([np.asarray(o['logits']) for o in outs], -2)
  probs = np.asarray(jax.nn.softmax(logits[..., :n, :]))
  labels = np.asarray(labels)[:n]
  if num_models == 1:
    preds = probs.argmax(-1)
    return EvalResult(loss=float(loss.mean()),
                      accuracy=float((preds == labels).mean()),
                      preds=preds, confidence=probs.max(-1))
  ensemble = probs.mean(0)
  preds = ensemble.argmax(-1)
  nll = -np.log(np.maximum(ensemble[np.arange(n), labels], 1e-30))
  return EvalResult(
      loss=float(nll.mean()), accuracy=float((preds == labels).mean()),
      preds=preds, confidence=ensemble.max(-1),
      model_loss=[float(x) for x in loss.mean(-1)],
      model_accuracy=[float(x) for x in
                      (probs.argmax(-1) == labels).mean(-1)])


def evaluate_robustness(state, ds: data.Dataset, config: Config,
                        mesh) -> dict[str, EvalResult]:
  """Each robustness set, built from the first test images, evaluated."""
  n = min(config.robustness_examples, len(ds.test_labels))
  if not n:
    return {}
  size = config.eval_batch_size
  labels = distributed.put_replicated(
      data.pad_to_multiple(ds.test_labels[:n], size), mesh)
  results = {}
  for name, images in robustness.build(ds.test_images[:n]).items():
    images = distributed.put_replicated(data.pad_to_multiple(images, size),
                                        mesh)
    results[name] = evaluate(state, images, labels, size, mesh, n,
                             config.num_models)
  logging.info('robustness (%d images each): %s', n, ', '.join(
      f'{k} {100 * v.accuracy:.2f}%' for k, v in results.items()))
  return results
