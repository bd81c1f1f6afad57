"""The layers the networks in models.py are built from.

How a conv is computed is a separate, result-preserving choice (conv_impl):
'lax' is lax.conv_general_dilated; 'im2col' gathers the 3x3 patches and runs
one matrix multiply, which XLA:CPU executes faster (forward and, above all,
backward: see BENCHMARKS.md); in bfloat16 its GEMMs are `bf16_matmul`, which
XLA:CPU runs on AMX and AVX512-BF16 units. Both hold the same parameters, so
checkpoints move freely between them.

max_pool_2x2, avg_pool_2x2 and squeeze-excitation (Hu et al. 2018) are here too.
Initialisers follow Keras (Glorot-uniform kernels, zero biases), the framework
the study used.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL_INIT = nn.initializers.glorot_uniform()

# An im2col conv gathers at most this many bytes of patches at once: 1,000
# evaluation images through a 128-channel conv at 28x28 gather 3.6 GB, and
# Matuzas77's network (models.SEBlocksCNN) evaluated in one piece was killed
# at 24 GB resident.
MAX_PATCH_BYTES = 512 * 2**20


def _dot_f32(x, w):
  return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_matmul(x, w):
  """[M, K] @ [K, N] on bfloat16 operands, accumulated and returned in float32.

  Why: XLA:CPU runs a bfloat16 dot in bfloat16 (YNNPACK's AVX512-BF16 and AMX
  kernels) only when it returns float32 and its left operand contracts its
  last dimension; any other bfloat16 dot is upcast to a float32 GEMM. The
  forward product and the input gradient have that form as written. The
  weight gradient contracts over the rows of x, so x (or g, whichever moves
  fewer elements) is transposed first (`_unfoldable_transpose`). Elsewhere
  (GPU, TPU) the same code is a plain mixed-precision matmul.
  """
  return _dot_f32(x, w)


def _unfoldable_transpose(x):
  """x.T as a transpose XLA does not fold back into the dot that reads it.

  A bare transpose (even behind lax.optimization_barrier, which XLA:CPU
  drops early) becomes the dot's contraction over dimension 0, which
  XLA:CPU's bf16 GEMM does not take; the halves, transposed and
  concatenated, keep it a copy.
  """
  half = x.shape[1] // 2
  return jnp.concatenate([x[:, :half].T, x[:, half:].T], axis=0)


def _bf16_matmul_fwd(x, w):
  return _dot_f32(x, w), (x, w)


def _bf16_matmul_bwd(residuals, g):
  x, w = residuals
  g = g.astype(jnp.bfloat16)
  dx = jax.lax.dot_general(g, w, (((1,), (1,)), ((), ())),
                           preferred_element_type=jnp.float32)
  (m, k), n = x.shape, g.shape[1]
  if n * (m + k) < m * k:
    # Transposing g and then the [N, K] product moves fewer elements than
    # transposing x: the case for the wide patches of all but the first and
    # last convs of the seed model (about 10% of a training step).
    dw = _unfoldable_transpose(_dot_f32(_unfoldable_transpose(g), x))
  else:
    dw = _dot_f32(_unfoldable_transpose(x), g)
  return dx.astype(x.dtype), dw.astype(w.dtype)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


class Im2colConv(nn.Module):
  """nn.Conv (stride 1, VALID or SAME) as one GEMM over gathered patches.

  Same parameters and the same sums as nn.Conv. Its backward pass is a GEMM
  for the kernel, a GEMM for the patches and pad-and-add for the input, which
  XLA:CPU runs at GEMM speed; lax.conv's backward convolutions are slower
  there, and much slower inside a loop body.

  `activation`, if given, is applied to the float32 sums before the cast to
  dtype: the same values as applying it after the conv (ReLU commutes with
  rounding), one pass fewer over the feature map in a bf16 step on XLA:CPU.

  Where the patches would pass MAX_PATCH_BYTES (wide convs at full
  resolution on a large batch) the batch goes through in chunks.
  """

  features: int
  kernel_size: tuple[int, int] = (3, 3)
  padding: str = 'VALID'
  kernel_init: Callable[..., Any] = KERNEL_INIT
  dtype: Any = jnp.float32
  activation: Callable[[jax.Array], jax.Array] | None = None

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    cin = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init,
                        (kh, kw, cin, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.padding == 'SAME':
      x = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2),
                      ((kw - 1) // 2, kw // 2), (0, 0)))
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    kernel = kernel.reshape(kh * kw * cin, self.features).astype(self.dtype)
    activation = self.activation or (lambda y: y)

    def conv(x):
      # Patch layout (dy, dx, channel) matches the kernel's HWIO reshape.
      patches = jnp.concatenate(
          [x[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)],
          axis=-1).astype(self.dtype)
      if jnp.dtype(self.dtype) == jnp.bfloat16:
        # The bias joins the float32 sums before the one rounding to bf16.
        y = activation(
            bf16_matmul(patches.reshape(-1, kernel.shape[0]), kernel) + bias)
        return y.reshape(*patches.shape[:-1], self.features).astype(
            self.dtype)
      return activation(patches @ kernel + bias.astype(self.dtype))

    n = x.shape[0]
    chunk = max(1, MAX_PATCH_BYTES // (h * w * kh * kw * cin
                                       * jnp.dtype(self.dtype).itemsize))
    if n <= chunk:
      return conv(x)
    # Chunks of the batch one after another (lax.map), so that the patches
    # of one chunk at a time exist; padded to whole chunks.
    chunks = -(-n // chunk)
    x = jnp.pad(x, ((0, chunks * chunk - n), (0, 0), (0, 0), (0, 0)))
    y = jax.lax.map(conv, x.reshape(chunks, chunk, *x.shape[1:]))
    return y.reshape(chunks * chunk, *y.shape[2:])[:n]


class SqueezeExcite(nn.Module):
  """x * sigmoid(Dense(relu(Dense(mean over H, W of x)))), per channel."""

  reduction: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    gate = x.mean(axis=(1, 2))
    gate = nn.relu(nn.Dense(max(1, channels // self.reduction),
                            kernel_init=KERNEL_INIT, dtype=self.dtype)(gate))
    gate = nn.sigmoid(nn.Dense(channels, kernel_init=KERNEL_INIT,
                               dtype=self.dtype)(gate))
    return x * gate[:, None, None, :]


def conv3x3(conv_impl: str, features: int, *, padding: str, dtype, name: str,
          activation=None) -> Callable[[jax.Array], jax.Array]:
  """A 3x3 conv of either implementation, then `activation` if given (inside
  the im2col conv, on its float32 sums)."""
  if conv_impl == 'im2col':
    return Im2colConv(features, (3, 3), padding=padding,
                      kernel_init=KERNEL_INIT, dtype=dtype, name=name,
                      activation=activation)
  conv = nn.Conv(features, (3, 3), padding=padding, kernel_init=KERNEL_INIT,
                 dtype=dtype, name=name)
  return conv if activation is None else lambda x: activation(conv(x))


def max_pool_2x2(x):
  """2x2/2 max-pool as reshape-and-max (floor on odd sizes, like VALID).

  Same forward values as nn.max_pool; its gradient is a compare-and-select
  rather than XLA's select-and-scatter, which is slow on CPU. Ties (only
  exact zeros after ReLU, in practice) share the gradient, which the ReLU
  then zeroes, so training is unchanged.
  """
  return _2x2_windows(x).max(axis=(2, 4))


def avg_pool_2x2(x):
  """2x2/2 average pool as reshape-and-mean: nn.avg_pool's values, without
  the reduce_window that the ONNX export cannot convert."""
  return _2x2_windows(x).mean(axis=(2, 4))


def global_max_avg_pool(x):
  """[B, H, W, C] -> [B, 2C]: each channel's max and mean side by side."""
  return jnp.concatenate([x.max(axis=(1, 2)), x.mean(axis=(1, 2))], axis=-1)


def _2x2_windows(x):
  """[B, H, W, C] -> [B, H/2, 2, W/2, 2, C], an odd last row or column cut."""
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c)
