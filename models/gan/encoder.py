"""Encoder4GAN, the trainable CNN that turns generated images into VCT's image tokens:
stride-2 4x4 convolutions with BatchNorm (ReLU after the first two and the last), then
ResBlock, BN, ResBlock, BN. Published: five stages (256 px -> an 8x8 grid of 256-d tokens);
the module layout matches it, so its state dicts load strictly."""
from einops import rearrange
from torch import nn

from models.vqvae import ResBlock


class Encoder4GAN(nn.Module):
    """``d`` channels throughout; ``downsamples`` stride-2 stages (published 5)."""

    def __init__(self, d, bn=True, num_channels=3, downsamples=5):
        super().__init__()
        if downsamples < 1:
            raise ValueError(f"Encoder4GAN needs at least one downsampling stage, got {downsamples}")
        layers = []
        for stage in range(downsamples):
            layers += [nn.Conv2d(num_channels if stage == 0 else d, d, kernel_size=4, stride=2, padding=1),
                       nn.BatchNorm2d(d)]
            if stage < 2 or stage == downsamples - 1:
                layers.append(nn.ReLU(inplace=True))
        layers += [ResBlock(d, d, bn=bn), nn.BatchNorm2d(d), ResBlock(d, d, bn=bn), nn.BatchNorm2d(d)]
        self.encoder = nn.Sequential(*layers)
        self.d, self.downsamples = d, downsamples

    def forward(self, x):
        """(B, C, H, W) -> feature map (B, d, H / 2^downsamples, W / 2^downsamples)."""
        return self.encoder(x)

    def tokens(self, x):
        """(B, C, H, W) -> image tokens (B, h*w, d), row-major over the feature map."""
        return rearrange(self.encoder(x), "b d h w -> b (h w) d")
