import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_flax import layers
from mnist_flax import models
from mnist_flax import presets
from mnist_flax.config import Config


def _init(config, num_classes=10):
  model = models.create_model(config, num_classes)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)),
                         train=False)
  return model, variables


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_seed_parameter_counts_match_the_study():
  _, variables = _init(Config())
  assert _count(variables['params']) == 2_388_042
  assert _count(variables['batch_stats']) == 128
  params = variables['params']
  assert params['conv1']['kernel'].shape == (3, 3, 1, 32)
  assert params['conv5']['kernel'].shape == (3, 3, 256, 512)
  # VALID convs leave 5x5x512 = 12,800 features before Flatten.
  assert params['dense1']['kernel'].shape == (12_800, 64)
  assert params['head']['kernel'].shape == (64, 10)


_slow = lambda overrides: pytest.param(overrides, marks=pytest.mark.slow)


@pytest.mark.parametrize('overrides', [
    _slow(dict(conv_activation='first')),
    _slow(dict(batchnorm='none')),
    dict(batchnorm='conv'),
    _slow(dict(padding='SAME')),
    _slow(dict(width=0.5)),
    _slow(dict(dropout=0.0)),
    dict(dtype='bfloat16'),
    dict(squeeze_excite=4, head='maxavg'),
    dict(arch='blocks', batchnorm='conv', head='maxavg', squeeze_excite=4),
    dict(arch='se_blocks', blocks='8,8|16|16', squeeze_excite=4),
])
def test_variants_give_logits_of_the_right_shape(overrides):
  # A narrow network: the shapes do not depend on the width.
  model, variables = _init(Config(**{'width': 0.25, **overrides}),
                           num_classes=7)
  x = jnp.ones((3, 28, 28, 1))
  logits, _ = model.apply(variables, x, train=True, mutable=['batch_stats'],
                          rngs={'dropout': jax.random.PRNGKey(1)})
  assert logits.shape == (3, 7)
  assert logits.dtype == jnp.float32


def test_blocks_flag_sets_each_blocks_conv_widths():
  _, variables = _init(Config(arch='blocks', batchnorm='conv', head='maxavg',
                              blocks='8,8|16,16,16', width=0.5))
  params = variables['params']
  assert [params[f'conv{i}']['kernel'].shape[-1] for i in range(1, 6)] == [
      4, 4, 8, 8, 8]
  assert 'conv6' not in params
  # Global max and average of the last block's 8 channels.
  assert params['dense1']['kernel'].shape == (2 * 8, 32)


def test_literature_network_has_the_originals_layers_and_size():
  model, variables = _init(Config(**presets.preset('literature')))
  params = variables['params']
  # Matuzas77/MNIST-0.17's Keras model: 1,188,748 trainable parameters.
  assert _count(params) == 1_188_748
  assert [params[f'conv{i}']['kernel'].shape for i in (1, 2, 9)] == [
      (3, 3, 1, 128), (3, 3, 128, 128), (3, 3, 128, 128)]
  assert 'conv10' not in params
  # One BN and one gate of 128 // 32 units per block, none per conv.
  assert sorted(variables['batch_stats']) == ['bn_block1', 'bn_block2',
                                              'bn_block3']
  assert params['se_block2']['Dense_0']['kernel'].shape == (128, 4)
  # Max and average of 128 channels straight into Dense-10, no bias.
  assert params['head'] == {'kernel': params['head']['kernel']}
  assert params['head']['kernel'].shape == (256, 10)
  # Blocks 1 and 2 at 28x28, block 3 at 14x14: the first pool comes after
  # block 2.
  _, state = model.apply(variables, jnp.ones((1, 28, 28, 1)), train=False,
                         capture_intermediates=True, mutable=['intermediates'])
  shapes = {k: v['__call__'][0].shape for k, v in
            state['intermediates'].items() if k.startswith('conv')}
  assert shapes['conv6'] == (1, 28, 28, 128)
  assert shapes['conv7'] == (1, 14, 14, 128)


def test_blocks_network_pools_between_its_blocks():
  _, variables = _init(Config(arch='blocks', batchnorm='conv'))
  params = variables['params']
  assert [params[f'conv{i}']['kernel'].shape[-1] for i in range(1, 6)] == [
      64, 64, 128, 128, 256]
  # SAME convs, pooled twice: 28 -> 14 -> 7.
  assert params['dense1']['kernel'].shape == (7 * 7 * 256, 64)
  assert _count(params) == 1_358_986
  assert _count(variables['batch_stats']) == 2 * (64 + 64 + 128 + 128 + 256)
  _, narrow = _init(Config(arch='blocks', width=0.75, head='maxavg'))
  assert narrow['params']['conv5']['kernel'].shape == (3, 3, 96, 192)
  assert narrow['params']['dense1']['kernel'].shape == (2 * 192, 48)


@pytest.mark.slow
def test_variants_change_what_they_say():
  _, no_bn = _init(Config(batchnorm='none'))
  assert 'batch_stats' not in no_bn
  assert _count(no_bn['params']) == 2_388_042 - 128
  _, conv_bn = _init(Config(batchnorm='conv'))
  assert _count(conv_bn['batch_stats']) == 2 * (32 + 64 + 128 + 256 + 512)
  _, same = _init(Config(padding='SAME'))
  assert same['params']['dense1']['kernel'].shape == (14 * 14 * 512, 64)


@pytest.mark.slow
def test_first_only_activation_differs_from_all():
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 28, 28, 1))
  model_all, variables = _init(Config(conv_activation='all'))
  model_first, _ = _init(Config(conv_activation='first'))
  out_all = model_all.apply(variables, x, train=False)
  out_first = model_first.apply(variables, x, train=False)
  assert not np.allclose(out_all, out_first)


def test_dropout_is_active_only_in_training():
  model, variables = _init(Config(batchnorm='none', dropout=0.5))
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 28, 28, 1))
  a = model.apply(variables, x, train=False)
  b = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(a, b)
  c = model.apply(variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(4)})
  assert not np.allclose(a, c)


@pytest.mark.parametrize('arch', ['seed', 'blocks'])
@pytest.mark.parametrize('batchnorm, finetune, frozen_bn', [
    ('conv', 'full', False), ('conv', 'head+last', True),
    ('conv', 'linear', True), ('head', 'full', False),
    ('head', 'head+last', False), ('head', 'linear', True)])
def test_frozen_batchnorm_layers_normalise_with_their_statistics_in_training(
    arch, batchnorm, finetune, frozen_bn):
  """A linear probe trains the head on the features evaluation will see;
  head+last trains the head's BN (bn_head) but not the convs' BNs."""
  config = Config(arch=arch, batchnorm=batchnorm, dropout=0.0, width=0.25,
                  depth=3, finetune=finetune)
  model, variables = _init(config)
  # Statistics unlike any batch's, so that the two kinds of BN differ.
  variables = {**variables, 'batch_stats': jax.tree.map(
      lambda v: v + 0.5, variables['batch_stats'])}
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 28, 28, 1))
  train, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  evaluation = model.apply(variables, x, train=False)
  assert np.allclose(train, evaluation, rtol=1e-5, atol=1e-6) == frozen_bn


@pytest.mark.parametrize('depth, flat', [(1, 13 * 13 * 32), (3, 9 * 9 * 128),
                                         (6, 3 * 3 * 1024)])
def test_depth_sets_the_number_of_convs(depth, flat):
  _, variables = _init(Config(depth=depth))
  convs = [k for k in variables['params'] if k.startswith('conv')]
  assert len(convs) == depth
  assert variables['params']['dense1']['kernel'].shape == (flat, 64)


def test_gap_head_pools_before_the_dense_layer():
  _, variables = _init(Config(head='gap'))
  assert variables['params']['dense1']['kernel'].shape == (512, 64)


@pytest.mark.parametrize('overrides', [
    pytest.param(dict(padding='VALID', batchnorm='head'),
                 marks=pytest.mark.slow),
    pytest.param(dict(padding='SAME', batchnorm='head'),
                 marks=pytest.mark.slow),
    pytest.param(dict(padding='VALID', batchnorm='conv'),
                 marks=pytest.mark.slow),
    pytest.param(dict(padding='SAME', batchnorm='conv'),
                 marks=pytest.mark.slow),
    pytest.param(dict(conv_activation='first'), marks=pytest.mark.slow),
    dict(arch='space_to_depth'),
])
def test_im2col_convs_compute_what_lax_convs_compute(overrides):
  """Same parameters, same outputs and gradients: only the speed differs
  (an im2col conv applies the following ReLU itself unless BN intervenes)."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 28, 28, 1))
  lax_model, variables = _init(Config(conv_impl='lax', **overrides))
  im2col_model, im2col_variables = _init(Config(conv_impl='im2col',
                                                **overrides))
  assert (jax.tree.map(jnp.shape, variables) ==
          jax.tree.map(jnp.shape, im2col_variables))

  def logits(model, params):
    return model.apply({**variables, 'params': params}, x, train=False)

  np.testing.assert_allclose(logits(im2col_model, variables['params']),
                             logits(lax_model, variables['params']),
                             atol=1e-5)
  grads = [jax.grad(lambda p, m=m: logits(m, p).sum())(variables['params'])
           for m in (lax_model, im2col_model)]
  for name in sorted(set(grads[0]) & {'conv1', 'conv2', 'conv3', 'conv5',
                                          'dense1'}):
    np.testing.assert_allclose(grads[1][name]['kernel'],
                               grads[0][name]['kernel'], rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(
                                   grads[0][name]['kernel']).max()))


@pytest.mark.parametrize('limit,mapped', [(100_000, 4), (300_000, 4)])
def test_im2col_conv_past_its_patch_limit_goes_in_chunks(monkeypatch, limit,
                                                         mapped):
  """Above MAX_PATCH_BYTES the batch is convolved a chunk at a time (one
  image, or two and a padded third), with the same sums."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 28, 28, 1))
  lax_model, variables = _init(Config(conv_impl='lax'))
  im2col_model, _ = _init(Config(conv_impl='im2col'))
  apply = lambda model: model.apply(variables, x, train=False)
  maps = lambda: str(jax.make_jaxpr(
      lambda x: im2col_model.apply(variables, x, train=False))(x)).count(
          'scan[')
  assert maps() == 0
  # conv1's patches (26 x 26 x 9 floats an image) stay under either limit,
  # the wider convs' (11 x 11 x 288 floats and more) do not.
  monkeypatch.setattr(layers, 'MAX_PATCH_BYTES', limit)
  assert maps() == mapped
  np.testing.assert_allclose(apply(im2col_model), apply(lax_model),
                             atol=1e-5)


def test_2x2_pools_match_nn_pools():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 13, 12, 3))
  np.testing.assert_array_equal(layers.max_pool_2x2(x),
                                nn.max_pool(x, (2, 2), strides=(2, 2)))
  np.testing.assert_allclose(layers.avg_pool_2x2(x),
                             nn.avg_pool(x, (2, 2), strides=(2, 2)),
                             rtol=1e-6, atol=1e-7)


def test_auto_conv_impl_is_im2col_on_cpu_only():
  expected = 'im2col' if jax.default_backend() == 'cpu' else 'lax'
  assert models.resolve_conv_impl('auto') == expected
  assert models.resolve_conv_impl('lax') == 'lax'


def test_maxavg_head_concatenates_both_poolings():
  _, variables = _init(Config(head='maxavg'))
  assert variables['params']['dense1']['kernel'].shape == (2 * 512, 64)


def test_squeeze_excite_gates_every_conv_and_keeps_the_rest():
  plain_model, plain = _init(Config(width=0.25, batchnorm='none'))
  se_model, se = _init(Config(width=0.25, batchnorm='none', squeeze_excite=4))
  gates = sorted(k for k in se['params'] if k.startswith('se_'))
  assert gates == [f'se_conv{i}' for i in range(1, 6)]
  # Each gate: C -> C/4 -> C, with biases.
  channels = [8, 16, 32, 64, 128]
  assert _count(se['params']) - _count(plain['params']) == sum(
      c * (c // 4) + c // 4 + (c // 4) * c + c for c in channels)
  # With gates of exactly 1/2 (zero Dense weights and biases) each gated conv
  # halves its output; with the initial zero biases every layer is
  # positively homogeneous, so the logits are the plain network's / 2^5.
  zeroed = jax.tree.map(jnp.zeros_like, {k: se['params'][k] for k in gates})
  params = {**se['params'], **zeroed}
  for k in plain['params']:
    params[k] = plain['params'][k]
  x = jax.random.uniform(jax.random.PRNGKey(3), (2, 28, 28, 1))
  gated = se_model.apply({'params': params}, x, train=False)
  np.testing.assert_allclose(
      gated, plain_model.apply(plain, x, train=False) / 2**5, rtol=1e-5,
      atol=1e-9)


def test_space_to_depth_folds_each_2x2_block_into_channels():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  y = models.space_to_depth(x)
  assert y.shape == (2, 2, 3, 12)
  # Channel (dy * 2 + dx) * 3 + c of block (i, j) is pixel (2i + dy, 2j + dx).
  for i, j, dy, dx, c in [(0, 0, 0, 0, 0), (1, 2, 1, 0, 2), (0, 1, 1, 1, 1)]:
    assert y[1, i, j, (dy * 2 + dx) * 3 + c] == x[1, 2 * i + dy, 2 * j + dx, c]


def test_space_to_depth_cnn_has_its_documented_size_and_ignores_seed_fields():
  model, variables = _init(Config(arch='space_to_depth', dropout=0.0,
                                  depth=5, batchnorm='conv'))
  assert _count(variables['params']) == 53_866
  assert 'batch_stats' not in variables  # --batchnorm is the seed net's.
  assert variables['params']['conv1']['kernel'].shape == (3, 3, 4, 32)
  logits = model.apply(variables, jnp.ones((3, 28, 28, 1)), train=False)
  assert logits.shape == (3, 10)
