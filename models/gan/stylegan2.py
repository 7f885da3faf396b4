"""StyleGAN2 generator, pure PyTorch, with the constructor, forward and state_dict layout of the
widely used PyTorch port (``style`` mapping network, ``input``, ``conv1``, ``to_rgb1``,
``convs``, ``to_rgbs``, ``noises.noise_{i}`` buffers), so its converted checkpoints load with
``strict=True`` and give the same images (up to float rounding)."""
import math

import torch
from torch import nn

from models.gan.layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB


def default_channels(channel_multiplier):
    """Feature channels per resolution of the port's config-f (``channel_multiplier=2``) and
    config-e (1) generators."""
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}


class Generator(nn.Module):
    """``Generator(size, style_dim=512, n_mlp=8, channel_multiplier=2)``: ``size`` a power of two
    >= 8. ``channels`` (not in the port) replaces the per-resolution channel table, for small
    generators such as the CPU toy's; the default is the port's table."""

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, blur_kernel=(1, 3, 3, 1),
                 lr_mlp=0.01, channels=None):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 8, got {size}")
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = {int(r): int(c) for r, c in (channels or default_channels(channel_multiplier)).items()}
        self.log_size = int(math.log2(size))
        missing = [2 ** i for i in range(2, self.log_size + 1) if 2 ** i not in self.channels]
        if missing:
            raise ValueError(f"no channel count for resolution(s) {missing}")
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            side = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, side, side))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def make_noise(self):
        """One fresh noise map per layer (batch 1)."""
        device = self.input.input.device
        return [torch.randn(1, 1, 2 ** ((layer + 5) // 2), 2 ** ((layer + 5) // 2), device=device)
                for layer in range(self.num_layers)]

    def fixed_noise(self):
        """The stored ``noises.noise_{i}`` maps (what ``randomize_noise=False`` uses)."""
        return [getattr(self.noises, f"noise_{layer}") for layer in range(self.num_layers)]

    def mean_latent(self, n_latent):
        """Mean W of ``n_latent`` mapped Gaussian samples (the truncation centre)."""
        return self.style(torch.randn(n_latent, self.style_dim, device=self.input.input.device)).mean(0, keepdim=True)

    def get_latent(self, z):
        return self.style(z)

    def _latent_stack(self, styles, inject_index):
        """(B, n_latent, style_dim): one style for every layer, or two mixed at ``inject_index``."""
        if len(styles) < 2:
            return styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        if inject_index is None:
            inject_index = int(torch.randint(1, self.n_latent, ()).item())
        first = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        second = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
        return torch.cat([first, second], 1)

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1, truncation_latent=None,
                input_is_latent=False, noise=None, randomize_noise=True):
        """``styles``: a list of one (or two, for style mixing) (B, style_dim) Z vectors, or W
        vectors with ``input_is_latent=True`` ((B, n_latent, style_dim) for per-layer W+).
        Returns (image (B, 3, size, size), the per-layer latents or None)."""
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = self._latent_stack(styles, inject_index)
        out = self.conv1(self.input(latent), latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for up_conv, conv, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                           noise[2::2], self.to_rgbs):
            out = conv(up_conv(out, latent[:, i], noise=noise1), latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)
