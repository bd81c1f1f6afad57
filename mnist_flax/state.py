"""The TrainState and what builds it: schedule, optimizer, initialisation.

With --finetune or --trunk_lr_scale the optimizer trains the layers in groups
(see `trainable_layers`): the head at the full rate, the trunk at a scaled
one, and frozen layers not at all. train_step copies frozen layers through
unchanged, so they stay bit-identical (x + 0.0 can turn -0.0 into +0.0), and
so do their BatchNorm statistics, which a frozen BatchNorm layer also
normalises with in training (models.py), as it will in evaluation.
"""

import functools
from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_flax.config import Config
from mnist_flax.models import layer_group

BASE_BATCH_SIZE = 16  # The study's batch; --scale_lr_with_batch scales from it.


class TrainState(train_state.TrainState):
  batch_stats: Any
  dropout_key: jax.Array  # Base key; each step folds in its step number.
  # Top-level layers that train_step passes through unchanged (--finetune).
  frozen: frozenset = struct.field(pytree_node=False, default=frozenset())

  def inference_variables(self) -> dict[str, Any]:
    """What evaluation, export and the Predictor apply the model with."""
    return {'params': self.params, 'batch_stats': self.batch_stats}


class EmaTrainState(TrainState):
  """A TrainState that also keeps a moving average of the weights and BN
  statistics (--ema_decay), which is what is evaluated and served. Its own
  class, so that runs without an average keep the checkpoint layout."""
  ema: Any = None  # {'params', 'batch_stats'}

  def inference_variables(self) -> dict[str, Any]:
    return self.ema


def update_ema(state: EmaTrainState, decay: float) -> EmaTrainState:
  """Moves state.ema towards the current weights and BN statistics. The
  decay ramps up as (1 + step) / (10 + step) until it reaches `decay`, so the
  average is not dominated by the initialisation early on."""
  step = state.step.astype(jnp.float32)
  rate = 1.0 - jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  current = {'params': state.params, 'batch_stats': state.batch_stats}
  return state.replace(ema=optax.incremental_update(current, state.ema, rate))


def trainable_layers(config: Config, layers) -> dict[str, str]:
  """Top-level layer name -> 'head', 'trunk' or 'frozen'."""
  return {name: layer_group(config.finetune, name) for name in layers}


def frozen_layers(config: Config, layers) -> frozenset[str]:
  return frozenset(n for n, g in trainable_layers(config, layers).items()
                   if g == 'frozen')


def learning_rate(config: Config) -> float:
  if config.scale_lr_with_batch:
    return config.learning_rate * config.batch_size / BASE_BATCH_SIZE
  return config.learning_rate


def make_schedule(config: Config, total_steps: int):
  """The learning rate as a function of the step (a float when constant)."""
  lr = learning_rate(config)
  if config.schedule == 'constant':
    return lr
  if config.schedule == 'cosine':
    return optax.cosine_decay_schedule(lr, total_steps)
  if config.schedule == 'one-cycle':
    return optax.linear_onecycle_schedule(total_steps, lr, pct_start=0.3)
  if config.schedule == 'exponential':
    return optax.exponential_decay(lr, total_steps, config.final_lr_fraction)
  return optax.piecewise_constant_schedule(
      lr, {int(total_steps * 0.5): 0.1, int(total_steps * 0.75): 0.1})


def _base_optimizer(config: Config, lr) -> optax.GradientTransformation:
  if config.optimizer == 'adam':
    tx = optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2)
  else:
    momentum = None if config.optimizer == 'sgd' else 0.9
    tx = optax.sgd(lr, momentum=momentum,
                   nesterov=config.optimizer == 'nesterov')
  if config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  if config.learning_rates:
    # Each optimizer's update is linear in its rate, so a per-model factor
    # on the update, held in the optimizer state, gives model k its rate.
    tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
  return tx


def make_optimizer(config: Config,
                   total_steps: int = 1) -> optax.GradientTransformation:
  """The optimizer of --optimizer/--schedule/--weight_decay; with --finetune or
  --trunk_lr_scale, per-group rates and frozen layers."""
  lr = make_schedule(config, total_steps)
  if config.finetune == 'full' and config.trunk_lr_scale == 1.0:
    return _base_optimizer(config, lr)
  scale = config.trunk_lr_scale
  trunk_lr = (lambda step: lr(step) * scale) if callable(lr) else lr * scale
  return optax.multi_transform(
      {'head': _base_optimizer(config, lr),
       'trunk': _base_optimizer(config, trunk_lr),
       'frozen': optax.set_to_zero()},
      lambda params: {name: jax.tree.map(lambda _, g=group: g, params[name])
                      for name, group in trainable_layers(
                          config, params).items()})


def create_train_state(config: Config, model, key: jax.Array,
                       image_shape: tuple[int, ...], total_steps: int = 1,
                       lr_scale: float | jax.Array = 1.0) -> TrainState:
  """One model's TrainState; lr_scale is its rate over --learning_rate
  (used with --learning_rates)."""
  init_key, dropout_key = jax.random.split(key)
  variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32),
                         train=False)
  state_class = EmaTrainState if config.ema_decay else TrainState
  state = state_class.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=make_optimizer(config, total_steps), dropout_key=dropout_key,
      frozen=frozen_layers(config, variables['params']))
  if config.ema_decay:
    state = state.replace(ema={'params': state.params,
                               'batch_stats': state.batch_stats})
  if config.learning_rates:
    state = state.replace(opt_state=optax.tree_utils.tree_set(
        state.opt_state, step_size=jnp.asarray(lr_scale, jnp.float32)))
  return state


def model_keys(config: Config) -> tuple[jax.Array, jax.Array]:
  """(init keys, shuffle keys), one row per model: model k's come from
  --seed+k, so model 0 of --num_models=K is the run of --num_models=1."""
  keys = jnp.stack([jax.random.split(jax.random.PRNGKey(config.seed + k))
                    for k in range(config.num_models)])
  return keys[:, 0], keys[:, 1]


def init_state(config: Config, model, image_shape: tuple[int, ...],
               total_steps: int = 1, out_shardings=None) -> TrainState:
  """The run's TrainState: one model's, or with --num_models=K the K models'
  stacked on a leading axis (each leaf gets a first dimension of K)."""
  init_keys, _ = model_keys(config)
  create = functools.partial(create_train_state, config, model,
                             image_shape=image_shape, total_steps=total_steps)
  if config.num_models == 1:
    return jax.jit(create, out_shardings=out_shardings)(init_keys[0])
  rates = config.model_learning_rates()
  scales = (np.asarray(rates, np.float32) / config.learning_rate if rates
            else np.ones(config.num_models, np.float32))
  return jax.jit(jax.vmap(lambda key, scale: create(key, lr_scale=scale)),
                 out_shardings=out_shardings)(init_keys, scales)
