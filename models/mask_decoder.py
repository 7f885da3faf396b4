"""Mask decoder of VCT's scene-decomposition setting (main_vct_mask.py).

Every concept token is decoded on its own into an RGB image and a mask logit map; the masks
are a softmax over the concepts, and the image is the mask-weighted sum of the RGB images:

    >>> decoder = MaskDecoder(image_size=64)              # published sizes
    >>> out = decoder(torch.randn(2, 30, 256))            # (batch, concepts, concept dim)
    >>> out.image.shape, out.masks.shape                  # (2, 3, 64, 64), (2, 30, 64, 64)

Published wiring: a VCT_Decoder(index_num=256, z_index_dim=4, ce_loss=True) with the concept
token alone as its context; its (4 x 256) output read as a (64, 4, 4) feature map; then
ConvT(4, s2)+BN+ReLU twice (4 -> 16 px), ResBlock, BN, ResBlock, ConvT(4, s2)+BN+ReLU,
ConvT(4, s2) to 3 + 1 channels (64 px). Here the widths, the query count and the image size
are parameters: the number of upsampling stages follows from ``image_size / start_size`` (two
before the residual blocks, the last one to the output channels, any others in between), so a
toy setting can decode 32 px images with small widths.
"""
import math
from typing import NamedTuple

import gin
import torch
from torch import nn

from models.visual_concept_tokenizor import VCT_Decoder
from models.vqvae import ResBlock


class MaskOutput(NamedTuple):
    """What the mask decoder gives for (B, C) concept tokens."""
    image: torch.Tensor        # (B, channels, H, W) the mask-weighted sum of the RGB images
    rgb: torch.Tensor          # (B, C, channels, H, W) every concept's own image, in [-1, 1]
    masks: torch.Tensor        # (B, C, H, W) softmax over concepts: every pixel sums to 1
    mask_logits: torch.Tensor  # (B, C, H, W)


def compose(rgb, mask_logits):
    """The MaskOutput of per-concept images (B, C, ch, H, W) and mask logits (B, C, H, W)."""
    masks = mask_logits.float().softmax(dim=1).to(rgb.dtype)
    image = (masks.unsqueeze(2) * rgb).sum(dim=1)
    return MaskOutput(image, rgb, masks, mask_logits)


def _upsample(in_channels, out_channels):
    """ConvT(4, stride 2, padding 1): doubles the height and width."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)


@gin.configurable
class MaskDecoder(nn.Module):
    """Concept tokens (B, C, D) -> MaskOutput; each concept decoded independently.

    num_queries, query_features: the per-concept VCT_Decoder's ``z_index_dim`` and
      ``index_num`` (published 4 and 256); its output is read as a
      (num_queries * query_features / start_size**2, start_size, start_size) feature map.
    hidden: channels of the conv decoder (published 256).
    image_size: output side in pixels; image_size / start_size must be a power of two >= 2.
    concept_dim: width of the concept tokens (the per-concept VCT_Decoder's ``dim``); None
      leaves it to the VCT_Decoder gin bindings, like its other arguments (depth, widths).
    """

    def __init__(self, image_size=64, num_channels=3, hidden=256, num_queries=4,
                 query_features=256, start_size=4, concept_dim=None):
        super().__init__()
        stages = math.log2(image_size / start_size) if image_size >= start_size else -1
        if stages < 1 or stages != int(stages):
            raise ValueError(f"MaskDecoder: image_size / start_size must be a power of two >= 2, got "
                             f"{image_size} / {start_size}")
        features = num_queries * query_features
        if features % (start_size * start_size):
            raise ValueError(f"MaskDecoder: num_queries * query_features = {features} cannot be read as "
                             f"a feature map of {start_size}x{start_size}")
        self.image_size = image_size
        self.num_channels = num_channels
        self.start_size = start_size
        self.map_channels = features // (start_size * start_size)
        self.num_queries = num_queries
        self.query_features = query_features
        width = {} if concept_dim is None else {"dim": concept_dim}
        self.query_decoder = VCT_Decoder(index_num=query_features, z_index_dim=num_queries, ce_loss=True, **width)
        stages = int(stages)
        before = min(2, stages - 1)  # published: 4 -> 16 px before the residual blocks
        layers = []
        channels = self.map_channels
        for _ in range(before):
            layers += [_upsample(channels, hidden), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
            channels = hidden
        layers += [ResBlock(channels, hidden), nn.BatchNorm2d(hidden), ResBlock(hidden, hidden)]
        for _ in range(stages - before - 1):
            layers += [_upsample(hidden, hidden), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        layers.append(_upsample(hidden, num_channels + 1))
        self.conv_decoder = nn.Sequential(*layers)

    def decode_each(self, concepts):
        """(B, C, D) -> per-concept images (B, C, ch, H, W) in [-1, 1] and mask logits (B, C, H, W)."""
        batch, num_concepts, dim = concepts.shape
        single = concepts.reshape(batch * num_concepts, 1, dim)  # each concept alone as context
        queries = self.query_decoder(single)                      # (B*C, num_queries, query_features)
        feature_map = queries.reshape(-1, self.map_channels, self.start_size, self.start_size)
        out = self.conv_decoder(feature_map)
        out = out.view(batch, num_concepts, self.num_channels + 1, *out.shape[-2:])
        return torch.tanh(out[:, :, :self.num_channels]), out[:, :, self.num_channels]

    def forward(self, concepts):
        return compose(*self.decode_each(concepts))
