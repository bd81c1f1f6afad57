"""The layers the networks in models.py are built from.

How a conv is computed is a separate, result-preserving choice (conv_impl):
'lax' is lax.conv_general_dilated; 'im2col' gathers the 3x3 patches and runs
one matrix multiply, which XLA:CPU executes faster (forward and, above all,
backward: see BENCHMARKS.md); in bfloat16 it is `bf16_im2col_conv`, whose
GEMMs XLA:CPU runs on AMX and AVX512-BF16 units. Both hold the same
parameters, so checkpoints move freely between them.

max_pool_2x2, avg_pool_2x2 and squeeze-excitation (Hu et al. 2018) are here too.
Initialisers follow Keras (Glorot-uniform kernels, zero biases), the framework
the study used.
"""

import functools
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


def window_patches(x, padding, kh: int, kw: int):
  """[B, H, W, C] zero-padded by `padding` -> [B, H', W', kh*kw*C]: each
  output position's window, laid out (dy, dx, channel) as the HWIO kernel
  reshapes."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  return jnp.concatenate(
      [x[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)],
      axis=-1)


def moved_as_bits(move, x, *args):
  """`move` (pure data movement) applied to a bfloat16 x as uint16.

  Why: XLA:CPU converts a bfloat16 copy to float32 and back; the same bits
  moved as 16-bit integers go about twice as fast (benchmarks/conv_passes.py).
  """
  bits = move(jax.lax.bitcast_convert_type(x, jnp.uint16), *args)
  return jax.lax.bitcast_convert_type(bits, x.dtype)


def _unfoldable_transpose(x):
  """x.T as a transpose XLA does not fold back into the dot that reads it.

  A bare transpose (even behind lax.optimization_barrier, which XLA:CPU
  drops early) becomes the dot's contraction over dimension 0, which
  XLA:CPU's bf16 GEMM does not take; the halves, transposed and
  concatenated, keep it a copy.
  """
  half = x.shape[1] // 2
  return jnp.concatenate([x[:, :half].T, x[:, half:].T], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def bf16_im2col_conv(x, kernel, padding):
  """A stride-1 conv as im2col GEMMs on bfloat16 operands, float32 sums out.

  x: [B, H, W, Cin] bfloat16; kernel: [kh, kw, Cin, Cout] (cast to bf16);
  padding: ((top, bottom), (left, right)). The sums nn.Conv would give,
  before bias, in float32.

  Why: XLA:CPU runs a bfloat16 dot in bfloat16 (YNNPACK's AVX512-BF16 and
  AMX kernels) only when it returns float32 and its left operand contracts
  its last dimension; any other bfloat16 dot is upcast to a float32 GEMM,
  and so is every bfloat16 copy. So all three passes are GEMMs of that form
  and everything else moves 16-bit integers: the forward gathers x's
  patches; a SAME conv's input gradient is the conv of the output gradient
  with the kernel flipped (its own patches and GEMM, summed in float32,
  rather than the patches' gradient and a pad-and-add of nine bf16 slices;
  a VALID conv keeps those, in float32, since its flipped conv would cover
  the larger input); the weight gradient contracts over rows, so the
  patches (or the output gradient, whichever moves fewer elements) are
  transposed first.
  Elsewhere (GPU, TPU) the same code is a plain mixed-precision conv.
  """
  return _bf16_im2col_conv_fwd(x, kernel, padding)[0]


def _bf16_im2col_conv_fwd(x, kernel, padding):
  kh, kw, _, cout = kernel.shape
  patches = moved_as_bits(window_patches, x, padding, kh, kw)
  y = _dot_f32(patches.reshape(-1, patches.shape[-1]),
               kernel.reshape(-1, cout).astype(jnp.bfloat16))
  return y.reshape(*patches.shape[:3], cout), (patches, kernel)


def _bf16_im2col_conv_bwd(padding, residuals, g):
  patches, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  g = g.astype(jnp.bfloat16)
  x_shape = (g.shape[0],
             *(size + k - 1 - lo - hi for size, k, (lo, hi) in
               zip(g.shape[1:3], (kh, kw), padding)), cin)
  if x_shape[1:3] == g.shape[1:3]:
    # Same-size (SAME) convs: dx[i] = sum over taps a of
    # g[i - a + top] * kernel[a], a VALID conv of g padded by what the
    # forward window reached past x, kernel flipped and its channels swapped:
    # one GEMM of the forward's size, summed in float32.
    back = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in
                 zip((kh, kw), padding))
    g_patches = moved_as_bits(window_patches, g, back, kh, kw)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _dot_f32(g_patches.reshape(-1, kh * kw * cout),
                  flipped.reshape(-1, cin).astype(jnp.bfloat16))
    dx = dx.reshape(x_shape)
  else:
    # A shrinking (VALID) conv's flipped conv would run over the larger
    # input: the patches' gradient (a GEMM of the forward's size) and its
    # pad-and-add onto x instead, in float32.
    d_patches = jax.lax.dot_general(
        g.reshape(-1, cout), kernel.reshape(-1, cout).astype(jnp.bfloat16),
        (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    _, to_x = jax.vjp(lambda x: window_patches(x, padding, kh, kw),
                      jnp.zeros(x_shape, jnp.float32))
    dx, = to_x(d_patches.reshape(*patches.shape[:3], -1))
  g, patches = g.reshape(-1, cout), patches.reshape(-1, kh * kw * cin)
  (m, k), n = patches.shape, cout
  if n * (m + k) < m * k:
    # Transposing g and then the [N, K] product moves fewer elements than
    # transposing the patches: most convs (wide patches, many rows).
    dw = _unfoldable_transpose(
        _dot_f32(moved_as_bits(_unfoldable_transpose, g), patches))
  else:
    dw = _dot_f32(moved_as_bits(_unfoldable_transpose, patches), g)
  return (dx.astype(jnp.bfloat16),
          dw.reshape(kernel.shape).astype(kernel.dtype))


bf16_im2col_conv.defvjp(_bf16_im2col_conv_fwd, _bf16_im2col_conv_bwd)


class Im2colConv(nn.Module):
  """nn.Conv (stride 1, VALID or SAME) as one GEMM over gathered patches.

  Same parameters and the same sums as nn.Conv. Its backward pass is a GEMM
  for the kernel, a GEMM for the patches and pad-and-add for the input (in
  bfloat16, `bf16_im2col_conv`'s form of it), which XLA:CPU runs at GEMM
  speed; lax.conv's backward convolutions are slower there, and much slower
  inside a loop body.

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
    padding = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)) if (
        self.padding == 'SAME') else ((0, 0), (0, 0))
    h = x.shape[1] + sum(padding[0]) - kh + 1
    w = x.shape[2] + sum(padding[1]) - kw + 1
    activation = self.activation or (lambda y: y)

    def conv(x):
      x = x.astype(self.dtype)
      if jnp.dtype(self.dtype) == jnp.bfloat16:
        # The bias joins the float32 sums before the one rounding to bf16.
        y = activation(bf16_im2col_conv(x, kernel, padding) + bias)
        return y.astype(self.dtype)
      patches = window_patches(x, padding, kh, kw)
      return activation(
          patches @ kernel.reshape(-1, self.features).astype(self.dtype)
          + bias.astype(self.dtype))

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
