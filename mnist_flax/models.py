"""Models, chosen by name from MODELS.

SeedCNN is the study's network. The study lists its layers as
Conv32-ReLU-MaxPool-Conv64-Conv128-Conv256-Conv512-Flatten-Dense64-ReLU-Dense10-
Softmax, then "Batch Normalization" and "Dropout(0.2)". Read literally, BN and
dropout come after the softmax, which cannot be meant; each reading the listing
allows is a field here (and a flag), not a copy of the code:

  conv_activation  'all': ReLU after every conv (default); 'first': only after
                   the first conv, as listed.
  batchnorm        'head': BN after the Dense-64 ReLU, then dropout (default);
                   'conv': BN after every conv, before its activation;
                   'none'.
  dropout          rate of the dropout before Dense-10.
  padding          'VALID' as in Keras' default (5x5x512 before Flatten), or
                   'SAME'.

Variants for the study's future work: width (a multiplier), depth (number of
convs), a global pooled head (average, or max and average side by side), and
squeeze-excitation after every conv (Hu et al. 2018: each channel rescaled by a
gate computed from the whole feature map).

How a conv is computed is a separate, result-preserving choice (conv_impl, in
layers.py): 'lax' or 'im2col', with the same parameters.

BlocksCNN spends more of its compute before the first pool, as the
literature's best final-epoch MNIST networks do: VGG-style blocks of SAME 3x3
convs (by default 64, 64 | pool | 128, 128 | pool | 256; `--blocks` sets the
widths), with the seed network's head and the same width, BN, dropout, head
and squeeze-excitation options.

SEBlocksCNN is Matuzas77/MNIST-0.17's network, the best final-epoch single
model in the literature (99.75% over 20 nets): blocks of SAME 3x3 conv-ReLU,
each closed by BN and one squeeze-excitation gate, a 2x2 average pool after
every block but the first, and global max and average pooling straight into
the classifier (no hidden Dense, no dropout).

SpaceToDepthCNN is a small network for training fast on CPU (the `speedrun`
preset): the image is folded 2x2 into channels first (28x28x1 -> 14x14x4), so
its first conv is a GEMM over 36-wide patches at a quarter of the positions
rather than a thin one over 9-wide patches of a single channel at full
resolution, which keeps XLA:CPU's matrix units busy.

The network returns logits; softmax lives in the loss and in predict.
Initialisers follow Keras (Glorot-uniform kernels, zero biases; BN momentum 0.99,
epsilon 1e-3), the framework the study used.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_flax.layers import KERNEL_INIT
from mnist_flax.layers import SqueezeExcite
from mnist_flax.layers import avg_pool_2x2
from mnist_flax.layers import conv3x3
from mnist_flax.layers import global_max_avg_pool
from mnist_flax.layers import max_pool_2x2

HEAD = 'head'  # The classifier layer's name in every model.
LAST_BLOCK = ('dense1', 'bn_head')  # What --finetune=head+last also trains.


def layer_group(finetune: str, name: str) -> str:
  """How --finetune trains the top-level layer `name`: 'head', 'trunk' or
  'frozen' (the optimizer's groups in state.py)."""
  if name == HEAD:
    return 'head'
  if finetune == 'full':
    return 'trunk'
  if finetune == 'head+last' and name in LAST_BLOCK:
    return 'trunk'
  return 'frozen'


def _batchnorm(train: bool, dtype, name: str, finetune: str) -> nn.BatchNorm:
  """BN that normalises with batch statistics in training, except in a layer
  that --finetune freezes: its statistics are not updated, so it normalises
  with them in training as it will in evaluation."""
  frozen = layer_group(finetune, name) == 'frozen'
  return nn.BatchNorm(use_running_average=not train or frozen, momentum=0.99,
                      epsilon=1e-3, dtype=dtype, name=name)


def _conv_layer(x, features: int, index: int, *, train: bool, conv_impl: str,
                padding: str, batchnorm: str, activation, squeeze_excite: int,
                finetune: str, dtype):
  """conv{index}, then BN (batchnorm='conv'), `activation` and SE if asked.

  Without BN between them the conv applies the activation itself (fused into
  the im2col conv's float32 sums).
  """
  fused = batchnorm != 'conv'
  x = conv3x3(conv_impl, features, padding=padding, dtype=dtype,
            name=f'conv{index}', activation=activation if fused else None)(x)
  if batchnorm == 'conv':
    x = _batchnorm(train, dtype, f'bn_conv{index}', finetune)(x)
  if activation and not fused:
    x = activation(x)
  if squeeze_excite:
    x = SqueezeExcite(squeeze_excite, dtype, name=f'se_conv{index}')(x)
  return x


def _classifier(x, *, train: bool, head: str, dense_features: int,
                num_classes: int, batchnorm: str, dropout: float,
                finetune: str, dtype):
  """Pool or flatten the feature map, then Dense-ReLU(-BN)-Dropout-Dense.

  The same parameter names in every network (dense1, bn_head, head), which
  --finetune and export rely on.
  """
  if head == 'gap':
    x = x.mean(axis=(1, 2))
  elif head == 'maxavg':
    x = global_max_avg_pool(x)
  x = x.reshape((x.shape[0], -1))
  x = nn.Dense(dense_features, kernel_init=KERNEL_INIT, dtype=dtype,
               name='dense1')(x)
  x = nn.relu(x)
  if batchnorm == 'head':
    x = _batchnorm(train, dtype, 'bn_head', finetune)(x)
  x = nn.Dropout(dropout, deterministic=not train)(x)
  x = nn.Dense(num_classes, kernel_init=KERNEL_INIT, dtype=dtype,
               name=HEAD)(x)
  return x.astype(jnp.float32)


class SeedCNN(nn.Module):
  """The study's CNN; the defaults give 2,388,042 trainable parameters."""

  num_classes: int = 10
  features: tuple[int, ...] = (32, 64, 128, 256, 512)
  dense_features: int = 64
  conv_activation: str = 'all'
  batchnorm: str = 'head'
  dropout: float = 0.2
  padding: str = 'VALID'
  width: float = 1.0
  head: str = 'flatten'
  squeeze_excite: int = 0  # Channel reduction of the gates; 0: none.
  conv_impl: str = 'lax'
  finetune: str = 'full'  # Its frozen BN layers keep their statistics.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    for i, features in enumerate(self.features):
      x = _conv_layer(
          x, max(1, round(features * self.width)), i + 1, train=train,
          conv_impl=self.conv_impl, padding=self.padding,
          batchnorm=self.batchnorm,
          activation=(nn.relu if i == 0 or self.conv_activation == 'all'
                      else None),
          squeeze_excite=self.squeeze_excite, finetune=self.finetune,
          dtype=self.dtype)
      if i == 0:
        x = max_pool_2x2(x)
    return _classifier(
        x, train=train, head=self.head,
        dense_features=max(1, round(self.dense_features * self.width)),
        num_classes=self.num_classes, batchnorm=self.batchnorm,
        dropout=self.dropout, finetune=self.finetune, dtype=self.dtype)


class BlocksCNN(nn.Module):
  """VGG-style blocks of SAME 3x3 convs with a 2x2 max-pool between blocks.

  The shape of the literature's best final-epoch MNIST networks: several convs
  at full and half resolution before the first and second pool (by default
  28x28: 64, 64; 14x14: 128, 128; 7x7: 256; `blocks` from --blocks), where the
  seed network pools after one 32-filter conv. The defaults (flatten head)
  give 1,358,986 trainable parameters and 3.7x the FLOPs of `--preset=best`'s
  4-conv seed network in a training step (XLA's cost analysis of the compiled
  step, as benchmarks/throughput.py's measure_train_step reports it: 536M
  against 145M an image).
  """

  num_classes: int = 10
  blocks: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256,))
  dense_features: int = 64
  batchnorm: str = 'conv'
  dropout: float = 0.2
  width: float = 1.0
  head: str = 'flatten'
  squeeze_excite: int = 0
  conv_impl: str = 'lax'
  finetune: str = 'full'  # Its frozen BN layers keep their statistics.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    index = 0
    for b, block in enumerate(self.blocks):
      if b:
        x = max_pool_2x2(x)
      for features in block:
        index += 1
        x = _conv_layer(
            x, max(1, round(features * self.width)), index, train=train,
            conv_impl=self.conv_impl, padding='SAME',
            batchnorm=self.batchnorm, activation=nn.relu,
            squeeze_excite=self.squeeze_excite, finetune=self.finetune,
            dtype=self.dtype)
    return _classifier(
        x, train=train, head=self.head,
        dense_features=max(1, round(self.dense_features * self.width)),
        num_classes=self.num_classes, batchnorm=self.batchnorm,
        dropout=self.dropout, finetune=self.finetune, dtype=self.dtype)


class SEBlocksCNN(nn.Module):
  """Matuzas77/MNIST-0.17's network (`--preset=literature`).

  By default three blocks of three 128-filter convs, at 28x28, 28x28 and
  14x14; each block ends in BN and a squeeze-excitation gate of 128 // 32
  units, blocks 2 and 3 in a 2x2 average pool; max and average over the 7x7
  map side by side (256 features) into a Dense-10 without bias: 1,188,748
  trainable parameters, as the Keras original (which counts 1,189,516 with
  the BN statistics). Unlike the original, no L1 penalty on that last kernel
  and inputs in [0, 1] rather than [-0.5, 0.5].
  """

  num_classes: int = 10
  blocks: tuple[tuple[int, ...], ...] = ((128, 128, 128),) * 3
  width: float = 1.0
  squeeze_excite: int = 32
  conv_impl: str = 'lax'
  finetune: str = 'full'  # Its frozen BN layers keep their statistics.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    index = 0
    for b, block in enumerate(self.blocks, start=1):
      for features in block:
        index += 1
        x = conv3x3(self.conv_impl, max(1, round(features * self.width)),
                    padding='SAME', dtype=self.dtype, name=f'conv{index}',
                    activation=nn.relu)(x)
      x = _batchnorm(train, self.dtype, f'bn_block{b}', self.finetune)(x)
      if self.squeeze_excite:
        x = SqueezeExcite(self.squeeze_excite, self.dtype,
                          name=f'se_block{b}')(x)
      if b > 1:
        x = avg_pool_2x2(x)
    x = global_max_avg_pool(x)
    x = nn.Dense(self.num_classes, use_bias=False, kernel_init=KERNEL_INIT,
                 dtype=self.dtype, name=HEAD)(x)
    return x.astype(jnp.float32)


def space_to_depth(x, block: int = 2):
  """[N, H, W, C] -> [N, H/block, W/block, block*block*C]."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // block, block, w // block, block, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // block, w // block,
                                               block * block * c)


class SpaceToDepthCNN(nn.Module):
  """Space-to-depth 2x2, conv3x3-32, pool, conv3x3-64, pool, Dense-128, head
  (ReLU after each); 53,866 parameters at width 1."""

  num_classes: int = 10
  conv_features: tuple[int, ...] = (32, 64)
  dense_features: int = 128
  dropout: float = 0.0
  width: float = 1.0
  conv_impl: str = 'lax'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = space_to_depth(x.astype(self.dtype))
    for i, features in enumerate(self.conv_features):
      x = max_pool_2x2(conv3x3(
          self.conv_impl, max(1, round(features * self.width)),
          padding='VALID', dtype=self.dtype, name=f'conv{i + 1}',
          activation=nn.relu)(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(max(1, round(self.dense_features * self.width)),
                         kernel_init=KERNEL_INIT, dtype=self.dtype,
                         name='dense1')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, dtype=self.dtype,
                 name=HEAD)(x)
    return x.astype(jnp.float32)


# Name -> constructor taking the config's model fields as keyword arguments
# (each takes those of its own fields that the config has).
MODELS: dict[str, Callable[..., nn.Module]] = {
    'seed': SeedCNN,
    'space_to_depth': SpaceToDepthCNN,
    'blocks': BlocksCNN,
    'se_blocks': SEBlocksCNN,
}


def resolve_conv_impl(conv_impl: str) -> str:
  """'auto' -> 'im2col' on CPU (measured faster there), 'lax' elsewhere."""
  if conv_impl != 'auto':
    return conv_impl
  return 'im2col' if jax.default_backend() == 'cpu' else 'lax'


def create_model(config, num_classes: int) -> nn.Module:
  """Builds config.arch with the ambiguity and width flags applied."""
  model = MODELS[config.arch]
  fields = {f.name for f in dataclasses.fields(model)}
  return model(**{k: v for k, v in dict(
      num_classes=num_classes,
      conv_activation=config.conv_activation,
      batchnorm=config.batchnorm,
      dropout=config.dropout,
      padding=config.padding,
      width=config.width,
      features=(32, 64, 128, 256, 512, 1024)[:config.depth],
      blocks=config.block_widths(),
      head=config.head,
      squeeze_excite=config.squeeze_excite,
      finetune=config.finetune,
      conv_impl=resolve_conv_impl(config.conv_impl),
      dtype=jnp.dtype(config.dtype),
  ).items() if k in fields})
