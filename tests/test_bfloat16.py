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


# (M, K, N): the weight gradient transposes g for wide patches (K = 40) and
# x for narrow ones (K = 9, a first conv's).
_SHAPES = [(300, 40, 24), (300, 9, 24)]


@pytest.mark.parametrize('m,k,n', _SHAPES)
def test_bf16_matmul_is_the_float32_product_of_its_bfloat16_operands(m, k, n):
  """Forward and both gradients: bf16 inputs, f32 sums (only their order may
  differ); the incoming gradient is rounded to bf16 as a bf16 product's is."""
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (m, k)).astype(jnp.bfloat16)
  w = jax.random.normal(keys[1], (k, n)).astype(jnp.bfloat16)
  g = jax.random.normal(keys[2], (m, n))
  y, vjp = jax.vjp(layers.bf16_matmul, x, w)
  dx, dw = vjp(g)
  x32, w32 = x.astype(jnp.float32), w.astype(jnp.float32)
  g32 = g.astype(jnp.bfloat16).astype(jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  assert y.dtype == jnp.float32
  assert dx.dtype == dw.dtype == jnp.bfloat16
  np.testing.assert_allclose(y, jnp.dot(x32, w32, precision=hi), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(dx.astype(jnp.float32),
                             jnp.dot(g32, w32.T, precision=hi).astype(
                                 jnp.bfloat16).astype(jnp.float32),
                             rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(dw.astype(jnp.float32),
                             jnp.dot(x32.T, g32, precision=hi).astype(
                                 jnp.bfloat16).astype(jnp.float32),
                             rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU only')
@pytest.mark.parametrize('m,k,n', [(512, 288, 64), (2000, 9, 32)])
def test_bf16_matmul_and_its_gradients_stay_bfloat16_dots_on_cpu(m, k, n):
  """All three GEMMs of a bf16 im2col conv reach XLA:CPU as bf16 x bf16 -> f32
  dots (which it runs on AVX512-BF16/AMX) rather than upcast f32 GEMMs, on
  either weight-gradient path (g transposed for wide patches, x for narrow)."""
  x = jnp.zeros((m, k), jnp.bfloat16)
  w = jnp.zeros((k, n), jnp.bfloat16)

  def loss(x, w):
    return jnp.sum(layers.bf16_matmul(x, w) ** 2)

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
  dots = [line for line in hlo.splitlines() if ' dot(' in line]
  assert len(dots) == 3, dots
  # Operand types are on the dot's computation signature: three computations
  # taking two bf16 operands and returning f32, and no f32 GEMM anywhere.
  bf16_dots = re.findall(
      r'\(param_\S+: bf16\[[\d,]+\], param_\S+: bf16\[[\d,]+\]\) -> f32', hlo)
  assert len(bf16_dots) == 3, hlo



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
