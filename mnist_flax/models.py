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
convs), and a global-average-pool head.

The network returns logits; softmax lives in the loss and in predict.
Initialisers follow Keras (Glorot-uniform kernels, zero biases; BN momentum 0.99,
epsilon 1e-3), the framework the study used.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

_KERNEL_INIT = nn.initializers.glorot_uniform()


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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.99,
        epsilon=1e-3, dtype=self.dtype)
    for i, features in enumerate(self.features):
      x = nn.Conv(max(1, round(features * self.width)), (3, 3),
                  padding=self.padding, kernel_init=_KERNEL_INIT,
                  dtype=self.dtype, name=f'conv{i + 1}')(x)
      if self.batchnorm == 'conv':
        x = norm(name=f'bn_conv{i + 1}')(x)
      if i == 0 or self.conv_activation == 'all':
        x = nn.relu(x)
      if i == 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    if self.head == 'gap':
      x = x.mean(axis=(1, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(max(1, round(self.dense_features * self.width)),
                 kernel_init=_KERNEL_INIT, dtype=self.dtype, name='dense1')(x)
    x = nn.relu(x)
    if self.batchnorm == 'head':
      x = norm(name='bn_head')(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=_KERNEL_INIT, dtype=self.dtype,
                 name='head')(x)
    return x.astype(jnp.float32)


# Name -> constructor taking the config's model fields as keyword arguments.
MODELS: dict[str, Callable[..., nn.Module]] = {
    'seed': SeedCNN,
}


def create_model(config, num_classes: int) -> nn.Module:
  """Builds config.arch with the ambiguity and width flags applied."""
  return MODELS[config.arch](
      num_classes=num_classes,
      conv_activation=config.conv_activation,
      batchnorm=config.batchnorm,
      dropout=config.dropout,
      padding=config.padding,
      width=config.width,
      features=(32, 64, 128, 256, 512, 1024)[:config.depth],
      head=config.head,
      dtype=jnp.dtype(config.dtype),
  )
