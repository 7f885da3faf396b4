"""Pretrained-GAN parts of VCT's third setting: a pure-PyTorch StyleGAN2 generator in the
layout of the widely used PyTorch port (its converted checkpoints load strictly), BigGAN-deep
through ``pytorch-pretrained-biggan``, the orthogonal latent deformator, the CNN image encoder
and the shift sampler / shift-prediction loss."""
from models.gan.deformator import LatentDeformator
from models.gan.encoder import Encoder4GAN
from models.gan.shifts import one_hot_shifts, sample_shift_magnitudes, shift_prediction_loss
from models.gan.stylegan2 import Generator

__all__ = ["Generator", "LatentDeformator", "Encoder4GAN", "sample_shift_magnitudes", "one_hot_shifts",
           "shift_prediction_loss"]
