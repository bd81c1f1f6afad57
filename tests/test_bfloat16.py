"""bfloat16 on CPU: the im2col GEMMs stay bf16 x bf16 -> f32 dots, which
XLA:CPU runs on AVX512-BF16 and AMX, with their float32 results, and the
step's compiler options change the speed, not the result."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_digits
from mnist_flax import distributed
from mnist_flax import layers
from mnist_flax import models
from mnist_flax import state as state_lib
from mnist_flax import steps
from mnist_flax.config import Config


# (kernel, padding, Cin, Cout): the weight gradient transposes the output
# gradient for wide patches and the patches for a narrow first conv (Cin 1
# into 32 channels); the input gradient is a conv for SAME and a pad-and-add
# for VALID; an even kernel pads SAME unevenly.
_CONVS = [((3, 3), 'SAME', 8, 6), ((3, 3), 'VALID', 8, 6),
          ((2, 3), 'SAME', 8, 6), ((3, 3), 'SAME', 1, 32),
          ((3, 3), 'VALID', 1, 32)]


def _padding(kernel_size, padding):
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  return tuple(((k - 1) // 2, k // 2) for k in kernel_size)


@pytest.mark.parametrize('kernel_size,padding,cin,cout', _CONVS)
def test_bf16_im2col_conv_is_the_float32_conv_of_its_bfloat16_operands(
    kernel_size, padding, cin, cout):
  """Forward and both gradients against lax's float32 conv of the same bf16
  values: the sums and the kernel's gradient in float32 (only their order
  may differ), the input's gradient rounded once to bf16 (a SAME conv's as
  the conv of the output gradient, a VALID one's as the pad-and-add of the
  patches' gradient); the incoming gradient is rounded to bf16 as a bf16
  product's is."""
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (3, 9, 8, cin)).astype(jnp.bfloat16)
  kernel = jax.random.normal(keys[1], (*kernel_size, cin, cout))
  pads = _padding(kernel_size, padding)
  y, vjp = jax.vjp(
      lambda x, k: layers.bf16_im2col_conv(x, k, pads), x, kernel)
  g = jax.random.normal(keys[2], y.shape)
  dx, dk = vjp(g)

  def lax_conv(x, k):
    return jax.lax.conv_general_dilated(
        x, k, (1, 1), pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision=jax.lax.Precision.HIGHEST)

  y32, vjp32 = jax.vjp(lax_conv, x.astype(jnp.float32),
                       kernel.astype(jnp.bfloat16).astype(jnp.float32))
  dx32, dk32 = vjp32(g.astype(jnp.bfloat16).astype(jnp.float32))
  assert y.dtype == dk.dtype == jnp.float32 and dx.dtype == jnp.bfloat16
  assert y.shape == y32.shape and dx.shape == x.shape
  np.testing.assert_allclose(y, y32, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, dk32, rtol=1e-5, atol=1e-5)
  # One rounding to bf16 (half an ulp, 2**-9 of the value) of float32 sums.
  np.testing.assert_allclose(dx.astype(jnp.float32), dx32, rtol=2**-8,
                             atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU only')
@pytest.mark.parametrize('kernel_size,padding,cin,cout', _CONVS)
def test_bf16_im2col_conv_and_its_gradients_stay_bfloat16_dots_on_cpu(
    kernel_size, padding, cin, cout):
  """All three GEMMs of a bf16 im2col conv reach XLA:CPU as bf16 x bf16 -> f32
  dots (which it runs on AVX512-BF16/AMX) rather than upcast f32 GEMMs, on
  either weight-gradient path, and no convolution is left. A network's first
  conv (one input channel) has no input gradient in training, and its
  one-column GEMM would be a matrix-vector product, so only its kernel's is
  taken."""
  x = jnp.zeros((16, 9, 8, cin), jnp.bfloat16)
  kernel = jnp.zeros((*kernel_size, cin, cout))
  pads = _padding(kernel_size, padding)
  argnums = (1,) if cin == 1 else (0, 1)

  def loss(x, k):
    return jnp.sum(layers.bf16_im2col_conv(x, k, pads) ** 2)

  hlo = jax.jit(jax.grad(loss, argnums=argnums)).lower(
      x, kernel).compile().as_text()
  dots = [line for line in hlo.splitlines() if ' dot(' in line]
  assert len(dots) == 1 + len(argnums), dots
  assert ' convolution(' not in hlo
  # Operand types are on the dot's computation signature: computations
  # taking two bf16 operands and returning f32, and no f32 GEMM anywhere.
  bf16_dots = re.findall(
      r'\(param_\S+: bf16\[[\d,]+\], param_\S+: bf16\[[\d,]+\]\) -> f32', hlo)
  assert len(bf16_dots) == len(dots), hlo


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU only')
def test_the_bf16_step_options_keep_reductions_where_xla_puts_them():
  """The bf16 step's YNNPACK option replaces XLA's default list; a float32
  reduction (a bias gradient, BN's statistics) must stay a YNNPACK fusion as
  under the defaults, not fall back to XLA's loop (about 25x slower at a
  128-channel 28x28 map, benchmarks/conv_passes.py's shape)."""
  g = jnp.zeros((64, 7, 7, 32))

  def root(compiler_options):
    hlo = jax.jit(lambda g: g.sum((0, 1, 2)),
                  compiler_options=compiler_options).lower(g).compile()
    entry = hlo.as_text().split('ENTRY')[1]
    return next(line for line in entry.splitlines() if 'ROOT' in line)

  default, bf16 = root(None), root(dict(steps.compiler_options('bfloat16')))
  assert ('__ynn_fusion' in bf16) == ('__ynn_fusion' in default), (default,
                                                                    bf16)


def _updates_after_two_steps(dtype, compiler_options=None):
  config = Config(width=0.5, depth=3, batchnorm='conv', dtype=dtype,
                  batch_size=32, conv_impl='im2col')
  options = steps.StepOptions.from_config(config)
  if compiler_options is not None:
    options = options._replace(compiler_options=compiler_options)
  create = functools.partial(
      state_lib.create_train_state, config, models.create_model(config, 10),
      image_shape=(28, 28, 1), total_steps=10)
  images, labels = synthetic_digits(64, seed=0)
  args = (jnp.asarray(images[..., None]), jnp.asarray(labels.astype(np.int32)),
          jnp.arange(64, dtype=jnp.int32))
  state = jax.jit(create)(jax.random.PRNGKey(0))
  before = jax.tree.map(np.array, state.params)  # The step donates state.
  step = steps._make_train_step(distributed.make_mesh(), options)  # pylint: disable=protected-access
  for i in range(2):
    state, _ = step(state, *args, i)
  return jax.tree.map(lambda a, b: np.asarray(a) - b, state.params, before)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU only')
def test_the_bf16_step_options_change_its_speed_not_its_accuracy():
  """With YNNPACK's elementwise fusion the bf16 step's update stays as close
  to the float32 step's as the bf16 step's without it."""
  assert steps.StepOptions.from_config(
      Config(dtype='bfloat16')).compiler_options
  assert not steps.StepOptions.from_config(
      Config(dtype='float32')).compiler_options
  exact = _updates_after_two_steps('float32')
  fused = _updates_after_two_steps('bfloat16')
  plain = _updates_after_two_steps('bfloat16', compiler_options=())
  compared = 0
  for f32, a, b in zip(*map(jax.tree.leaves, (exact, fused, plain))):
    scale = np.linalg.norm(f32)
    if scale < 1e-6:  # A conv bias before BN: no gradient in exact math.
      continue
    compared += 1
    assert (np.linalg.norm(a - f32) / scale
            <= 1.5 * np.linalg.norm(b - f32) / scale + 0.02)
  assert compared >= 10
