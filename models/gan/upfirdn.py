"""The FIR resampling StyleGAN2 uses between resolutions, written with standard ops (no
compiled extension): upsample by zero insertion, pad (or crop), filter, downsample."""
import torch
import torch.nn.functional as F
from torch import nn


def make_kernel(taps):
    """A 2-D FIR kernel summing to 1: the outer product of 1-D ``taps`` (or ``taps`` itself)."""
    kernel = torch.as_tensor(taps, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """(B, C, H, W) -> upsample by ``up`` (zeros between samples), pad ``pad = (before, after)``
    on both axes (negative values crop), convolve every channel with the square ``kernel`` (a
    true convolution: the kernel is flipped), keep every ``down``-th sample.

    Upsampling is a depthwise stride-``up`` transposed convolution, which equals filtering the
    zero-stuffed signal without computing the products with the inserted zeros."""
    channels, taps = x.shape[1], kernel.shape[-1]
    before, after = pad
    if up > 1:
        weight = kernel.to(x).expand(channels, 1, taps, taps)
        x = F.conv_transpose2d(x, weight, stride=up, groups=channels)
        # the transposed convolution's output starts taps - 1 samples before the padded signal's
        crop = (before - taps + 1, up + after - taps)
        x = F.pad(x, crop + crop)
    else:
        x = F.pad(x, (before, after, before, after))
        x = F.conv2d(x, torch.flip(kernel, (0, 1)).to(x).expand(channels, 1, taps, taps), groups=channels)
    return x[:, :, ::down, ::down]


class Upsample(nn.Module):
    """2x FIR upsampling (ToRGB's skip path); the kernel is the buffer ``kernel``."""

    def __init__(self, taps, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        excess = self.kernel.shape[0] - factor
        self.pad = ((excess + 1) // 2 + factor - 1, excess // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    """FIR low-pass filter with padding ``pad`` (after a transposed convolution, the kernel is
    scaled by ``upsample_factor`` squared to keep the signal's gain)."""

    def __init__(self, taps, pad, upsample_factor=1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)
