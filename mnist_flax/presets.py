"""Named recipes: `--preset=NAME` starts from these values; flags given on
the command line still override them."""

from typing import Any

from mnist_flax.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # The study's recipe: the Config defaults.
    'seed': {},
    # The fastest recipe to 99% test accuracy measured on CPU
    # (benchmarks/time_to_99.py; figures in BENCHMARKS.md), in the spirit of
    # the GPU record (tuomaso/train_mnist_fast): a 54k-parameter network
    # (space-to-depth, two convs), Adam with betas (0.7, 0.9) and a one-cycle
    # rate, batch 256, 2 epochs, one test evaluation at the end; each epoch in
    # two lax.scan calls of 117 steps (im2col convs run as fast in a scan). No
    # TensorBoard files (TensorFlow's import costs seconds) and no plots
    # (results.json has the numbers).
    'speedrun': dict(arch='space_to_depth', dropout=0.0, batch_size=256,
                     optimizer='adam', learning_rate=0.01, adam_b1=0.7,
                     adam_b2=0.9, schedule='one-cycle', epochs=2,
                     loop='scan', scan_steps=117, eval_every=2,
                     robustness_examples=0, tensorboard=False, plots=False),
    # The most accurate recipe measured here (experiments/best.py), its
    # settings chosen on MNIST's validation split (experiments/search.py,
    # search_capacity_full.py, search_elastic.py): the full-width 4-conv seed
    # network (1.19M parameters) with BN after every conv, Nesterov with a
    # one-cycle schedule and weight decay, 15 epochs on on-device affine
    # augmentation with zoom and shear (shift 2 px, rotate 12 deg, scale 20%,
    # shear 10 deg), a mild elastic distortion (alpha 36, sigma 6) and
    # Gaussian noise (std 0.3) on a quarter of the images, which keeps the
    # noisy robustness set above 99%; the last epoch on clean images.
    # BENCHMARKS.md has its accuracy and time.
    'best': dict(width=1.0, depth=4, batchnorm='conv', dropout=0.2,
                 batch_size=128, optimizer='nesterov', learning_rate=0.1,
                 schedule='one-cycle', weight_decay=5e-4,
                 augment='affine(2,12,0.2,10),elastic(36,6),noise(0.3,0.25)',
                 clean_epochs=1,
                 epochs=15),
    # Matuzas77/MNIST-0.17's recipe, the literature's best final-epoch single
    # network (models.SEBlocksCNN); the rate cut 10x at 50% and 75% of the run,
    # Keras's augmentation plus the preset's noise. About 10 hours a run on a
    # 2-core CPU in float32 (5 with --dtype=bfloat16 on AMX, its accuracy
    # unmeasured): sized for an accelerator (experiments/search_literature.py).
    'literature': dict(
        arch='se_blocks', blocks='128,128,128|128,128,128|128,128,128',
        squeeze_excite=32, batch_size=32, optimizer='adam', learning_rate=1e-3,
        schedule='step', augment='affine(2.8,10,0.2,10,1),noise(0.3,0.25)',
        clean_epochs=1, epochs=20),
}


def preset(name: str) -> dict[str, Any]:
  if name not in PRESETS:
    raise ConfigError(f'--preset={name!r} is not valid; choose one of: '
                      + ', '.join(PRESETS))
  return PRESETS[name]
