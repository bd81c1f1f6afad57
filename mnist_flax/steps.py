"""The pure steps and their jitted, data-parallel forms.

`train_step` and `eval_step` are pure functions of a TrainState and a batch of
uint8 images; normalisation happens inside them, on the device. The training
set lives on the device for the whole run; each jitted step gathers its batch
there from the epoch's permutation, so the host only dispatches.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mnist_flax import augment
from mnist_flax import distributed
from mnist_flax.config import Config
from mnist_flax.state import TrainState
from mnist_flax.state import update_ema


def normalize(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1], on the device."""
  return images.astype(jnp.float32) / 255.0


def all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


params_finite = jax.jit(all_finite)


def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
               skip_nonfinite: bool = False, augment_spec: str = 'none',
               label_smoothing: float = 0.0, ema_decay: float = 0.0):
  """One optimizer step on a batch of uint8 images; returns (state, metrics).

  With ema_decay, the step also moves the weights' moving average.

  With skip_nonfinite, a step whose loss or updated params are NaN/Inf leaves the
  params, optimizer state and BN statistics as they were: the step is not
  taken, so the optimizer's own count (the schedule, Adam's bias correction)
  does not advance, while state.step does, so dropout draws new masks.
  """
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)
  x = augment.apply(augment_spec, jax.random.fold_in(dropout_key, 0xA06),
                    normalize(images))

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats},
        x, train=True, rngs={'dropout': dropout_key},
        mutable=['batch_stats'])
    if label_smoothing:
      targets = optax.smooth_labels(
          jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
      loss = optax.softmax_cross_entropy(logits, targets)
    else:
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss.mean(), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  if state.frozen:
    keep = lambda new, old: {k: old[k] if k in state.frozen else v
                             for k, v in new.items()}
    new_state = new_state.replace(
        params=keep(new_state.params, state.params),
        batch_stats=keep(new_state.batch_stats, state.batch_stats))
  if ema_decay:
    new_state = update_ema(new_state, ema_decay)
  metrics = {'loss': loss,
             'correct': jnp.sum(jnp.argmax(logits, -1) == labels)}
  if skip_nonfinite:
    finite = jnp.isfinite(loss) & all_finite(
        (new_state.params, new_state.batch_stats))
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                             new_state, state.replace(step=new_state.step))
    metrics['skipped'] = 1 - finite.astype(jnp.int32)
  return new_state, metrics


def eval_step(state: TrainState, images: jax.Array, labels: jax.Array):
  """Per-example loss and logits, with BN in inference mode, no dropout."""
  logits = state.apply_fn(state.inference_variables(), normalize(images),
                          train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return {'loss': loss, 'logits': logits}


class StepOptions(NamedTuple):
  """The config fields a compiled step depends on (the model and optimizer
  come in through the TrainState), so runs that differ only in, say, the seed
  share one compiled step."""
  batch_size: int
  skip_nonfinite: bool
  augment: str
  label_smoothing: float
  num_models: int
  ema_decay: float
  compiler_options: tuple[tuple[str, str], ...] = ()

  @classmethod
  def from_config(cls, config: Config, epoch: int = 1) -> 'StepOptions':
    """The options of `epoch`'s steps: the last --clean_epochs train on
    unaugmented images."""
    clean = epoch > config.epochs - config.clean_epochs
    return cls(config.batch_size, config.skip_nonfinite,
               'none' if clean else config.augment, config.label_smoothing,
               config.num_models, config.ema_decay,
               compiler_options(config.dtype))


# XLA:CPU runs the bf16 x bf16 -> f32 dots of layers.bf16_im2col_conv on
# YNNPACK's AVX512-BF16 and AMX kernels; handing YNNPACK the elementwise ops
# as well saves the bf16 <-> f32 round trips between its dots and XLA's own
# loops. The option replaces XLA's default list, which has the reductions:
# without them a float32 reduction (a bias gradient, BN's statistics) runs
# about 25x slower. Measured faster for bfloat16 steps only (slower in
# float32): BENCHMARKS.md, "bfloat16".
_CPU_BFLOAT16_OPTIONS = (('xla_cpu_experimental_ynn_fusion_type',
                          'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                          'LIBRARY_FUSION_TYPE_ELTWISE,'
                          'LIBRARY_FUSION_TYPE_REDUCE'),)


def compiler_options(dtype: str) -> tuple[tuple[str, str], ...]:
  """XLA options for a training step computing in `dtype` on this backend."""
  if dtype == 'bfloat16' and jax.default_backend() == 'cpu':
    return _CPU_BFLOAT16_OPTIONS
  return ()


def _batch_step(mesh, options: StepOptions):
  """train_step on batch `index` of the permutation `order` of device data.

  The training set is replicated on every device; the batch indices are
  sharded over the mesh, so each device gathers and computes its own slice of
  the global batch, and XLA averages gradients and BN statistics across them.
  With several models the step is vmapped over the stacked states and their
  permutations; the data is shared.
  """
  size = options.batch_size
  batch = distributed.batch_sharded(mesh)

  def step(state, images, labels, order, index):
    idx = jax.lax.dynamic_slice_in_dim(order, index * size, size)
    idx = jax.lax.with_sharding_constraint(idx, batch)
    return train_step(state, images[idx], labels[idx], options.skip_nonfinite,
                      options.augment, options.label_smoothing,
                      options.ema_decay)

  if options.num_models > 1:
    return jax.vmap(step, in_axes=(0, None, None, 0, None))
  return step


def make_train_step(mesh, config: Config, epoch: int = 1):
  """One jitted call per step: (state, images, labels, order, index)."""
  return _make_train_step(mesh, StepOptions.from_config(config, epoch))


@functools.lru_cache
def _make_train_step(mesh, options: StepOptions):
  replicated = distributed.replicated(mesh)
  return jax.jit(_batch_step(mesh, options), donate_argnums=0,
                 out_shardings=(replicated, replicated),
                 compiler_options=dict(options.compiler_options) or None)


def make_train_scan(mesh, config: Config, num_steps: int, epoch: int = 1):
  """`num_steps` consecutive steps in one lax.scan: (state, ..., order, first).

  One dispatch per num_steps: the remedy for per-step overhead on GPU/TPU at
  small batches. Returns per-step metrics stacked on a leading axis.
  """
  return _make_train_scan(mesh, StepOptions.from_config(config, epoch),
                          num_steps)


@functools.lru_cache
def _make_train_scan(mesh, options: StepOptions, num_steps: int):
  replicated = distributed.replicated(mesh)
  step = _batch_step(mesh, options)

  @functools.partial(jax.jit, donate_argnums=0,
                     out_shardings=(replicated, replicated),
                     compiler_options=dict(options.compiler_options) or None)
  def steps(state, images, labels, order, first):
    return jax.lax.scan(
        lambda state, index: step(state, images, labels, order, index),
        state, first + jnp.arange(num_steps))

  return steps


def resolve_loop(loop: str) -> str:
  """'auto' -> 'step' on CPU (measured faster there), 'scan' elsewhere."""
  if loop != 'auto':
    return loop
  return 'step' if jax.default_backend() == 'cpu' else 'scan'


@functools.lru_cache
def make_eval_step(mesh, batch_size: int, num_models: int = 1):
  """Jitted eval_step on batch `index`; outputs replicated for the host.
  With several models, vmapped over the stacked states: outputs get a
  leading model axis."""
  batch = distributed.batch_sharded(mesh)

  def step(state, images, labels, index):
    x = jax.lax.dynamic_slice_in_dim(images, index * batch_size, batch_size)
    y = jax.lax.dynamic_slice_in_dim(labels, index * batch_size, batch_size)
    x = jax.lax.with_sharding_constraint(x, batch)
    return eval_step(state, x, jax.lax.with_sharding_constraint(y, batch))

  if num_models > 1:
    step = jax.vmap(step, in_axes=(0, None, None, None))
  return jax.jit(step, out_shardings=distributed.replicated(mesh))
