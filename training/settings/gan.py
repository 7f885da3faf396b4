"""The pretrained-GAN settings (main_gan_based.py, main_ffhq_gan_based.py, main_biggan_based.py):
a frozen generator makes image pairs that differ along one learned latent direction, and VCT
learns concept tokens that tell which direction moved. Their knobs are ``gan_args.*``
(``GANConfig``); the working parts are in training/tokenizers/gan.py (and training/gan_toy*.py
for the CPU toy). Light: gin and dataclasses only, so --help imports no torch."""
import dataclasses
from pathlib import Path
from typing import Optional

import gin

from training.cli import add_gin_flag
from training.setting import Setting, register_setting


@gin.configurable("gan_args")
@dataclasses.dataclass
class GANConfig:
    """What a GAN config binds as ``gan_args.<name>`` (the rest is ``get_args``: concepts_num,
    hidden = the CNN's width and token width, batch_size, lr, schedule)."""
    # generator weights: a weights-only file, or 'random' / 'random:SEED' (random weights, tests)
    generator_weights: str = ""
    weights_source: str = "a converted generator state_dict"   # what to fetch (named in the error)
    # StyleGAN2 (the PyTorch port's Generator arguments)
    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    channels: Optional[dict] = None          # {resolution: channels}; None = the port's table
    randomize_noise: bool = True             # fresh per-pixel noise for every generated image (published)
    # BigGAN-deep-256
    biggan_class: int = 253                  # ImageNet class of every image (see the README)
    biggan_truncation: float = 0.4
    biggan_channel_width: int = 128
    # CNN image encoder (Encoder4GAN; width get_args.hidden)
    encoder_downsamples: int = 5             # stride-2 stages: 256 px -> 8x8 tokens
    # shifts and traversal grids
    shift_scale: float = 6.0                 # magnitude = shift_scale * N(0, 1) ...
    min_shift: float = 0.5                   # ... at least this in absolute value
    traversal_range: tuple = (-16.0, 16.0, 3.0)   # alphas: torch.arange(start, stop, step)
    # CPU toy: train the generator (and the factor probe) first when their files are missing
    train_toy_if_missing: bool = False
    toy_steps: int = 1000                    # stage 1: synthesis network + encoder (autoencoder in W)
    toy_mapping_steps: int = 300             # stage 2: mapping network fitted to the codes
    toy_batch_size: int = 64
    toy_lr: float = 3e-3
    toy_jitter: float = 0.1                  # Gaussian noise on the codes while decoding
    toy_pull: float = 0.01                   # weight of the codes' mean square
    probe_path: str = ""                     # factor probe; '' = no direction-factor evaluation
    probe_steps: int = 600
    eval_latents: int = 64                   # latents per direction in the direction-factor score


def _absolute_if_file(value):
    return str(Path(value).resolve()) if Path(value).is_file() else value


class _GANSetting(Setting):
    """The three GAN settings differ only in their generator and entry script."""
    generator_kind = "stylegan2"

    def add_arguments(self, parser):
        add_gin_flag(parser, "--generator_weights", "gan_args.generator_weights", convert=_absolute_if_file,
                     help="generator weights: a weights-only state_dict file (a converted checkpoint; default: "
                          "the config's gan_args.generator_weights), or 'random' / 'random:SEED' for random "
                          "weights of the same architecture (tests)")

    def build(self, ctx):
        from training.tokenizers.gan import gan_objective
        return gan_objective(ctx, GANConfig(), self.generator_kind)

    def image_grids(self, ctx, objective):
        from training.tokenizers.gan import traversal_grids
        return traversal_grids(ctx, objective, GANConfig())

    def evaluate(self, ctx, objective, cache_key):
        from training.gan_toy_eval import direction_factor_evaluation
        return direction_factor_evaluation(ctx, objective, GANConfig())


@register_setting
class StyleGANSetting(_GANSetting):
    name = "gan"
    prog = "main_gan_based.py"
    run_tag = "-gan"
    example_config = "church_ce.gin"
    description = ("Train VCT concept tokens over a frozen pretrained StyleGAN2 (LSUN church / cat 256 px, or "
                   "the CPU toy's): a learned orthogonal latent deformator shifts W along one concept's "
                   "direction, a CNN + VCT encoder see the original and the shifted image, and the "
                   "shift-prediction loss asks which concept moved. Saves traversal grids.")


@register_setting
class FFHQGANSetting(_GANSetting):
    name = "ffhq_gan"
    prog = "main_ffhq_gan_based.py"
    run_tag = "-ffhq_gan"
    example_config = "ffhq_low_ce.gin"
    description = ("Train VCT concept tokens over a frozen pretrained StyleGAN2 of FFHQ (256 px, channel "
                   "multiplier 1), with the shift-prediction loss; saves traversal grids.")


@register_setting
class BigGANSetting(_GANSetting):
    name = "biggan"
    prog = "main_biggan_based.py"
    run_tag = "-biggan"
    example_config = "imgnet_ce.gin"
    generator_kind = "biggan"
    description = ("Train VCT concept tokens over a frozen BigGAN-deep-256 (pytorch-pretrained-biggan; one "
                   "ImageNet class, truncation 0.4): shifts of its 128-d z along learned orthogonal "
                   "directions, with the shift-prediction loss; saves traversal grids.")
