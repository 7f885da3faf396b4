"""CLIP as VCT's image tokenizer (main_vct_clip.py).

A frozen CLIP image encoder turns each image into one global feature; one small MLP per token
(``MLP_layers``) turns that feature into the image tokens VCT_Encoder reads. The published
setting: open_clip's ViT-B-32 (224 px input, 512-d feature) and 36 tokens of width 256
(Linear 512->256, GELU, Linear 256->256 each).

Images in [-1, 1] (any size, 1 or 3 channels) are mapped to [0, 1], resized with bicubic
interpolation (antialiased, as PIL resizes for CLIP's own preprocessing; the shorter side to
224 px, then a centre crop) and normalised with CLIP's channel statistics. (The published
script normalised with ImageNet's statistics instead.)

The encoder never trains: its parameters do not require gradients, it runs under no_grad in
float32 (also under bf16 autocast, so cached features do not depend on the precision) and it
stays in eval mode when the module around it is put in training mode. Only the MLP trains.
"""
import contextlib
import hashlib
import logging

import torch
import torch.nn.functional as F
from torch import nn

from models.visual_concept_tokenizor import MLP_layers

CLIP_MODEL_NAME = "ViT-B-32"
# open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD (every ViT-B-32 tag uses them).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Bumped when the preprocessing changes, so cached features of the old one are not reused.
PREPROCESS_VERSION = 1


class _DropNoPretrainedWarning(logging.Filter):
    def filter(self, record):
        return "No pretrained weights loaded" not in str(record.msg)


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs a warning for every model built without pretrained weights; here that is
    intended (the weights are loaded afterwards, or random on purpose)."""
    quiet = _DropNoPretrainedWarning()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def clip_image_tower(model_name=CLIP_MODEL_NAME, quick_gelu=True, seed=0):
    """open_clip's image encoder of ``model_name`` with random weights drawn from ``seed``
    (the same weights for the same seed; the global RNG is left as it was). ``quick_gelu``:
    the activation OpenAI's CLIP weights were trained with (True) or plain GELU (False)."""
    import open_clip

    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    return model.visual


def state_sha256(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state_dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class CLIPImageTokenizer(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> image tokens (B, num_tokens, token_dim).

    ``tower``: an open_clip image encoder (``clip_image_tower``, with loaded weights or not);
    ``mean``/``std``: the normalisation its weights were trained with. ``images_encoded``
    counts the images run through the tower (tests read it to check the feature cache)."""

    def __init__(self, tower: nn.Module, num_tokens=36, token_dim=256, mean=CLIP_MEAN, std=CLIP_STD):
        super().__init__()
        self.tower = tower.eval()
        self.tower.requires_grad_(False)
        self.image_size = int(tower.image_size[0]) if isinstance(tower.image_size, (tuple, list)) \
            else int(tower.image_size)
        self.feature_dim = int(tower.output_dim)
        self.num_tokens = num_tokens
        self.token_dim = token_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.mlp = MLP_layers(z_dim=self.feature_dim, latent_dim=token_dim, num_latents=num_tokens)
        self.weights_sha256 = state_sha256(self.tower)
        self.images_encoded = 0

    def train(self, mode=True):  # the tower stays frozen in eval mode; only the MLP trains
        super().train(mode)
        self.tower.eval()
        return self

    @property
    def features_id(self) -> str:
        """Names everything a feature depends on (weights, activation, preprocessing): equal
        ids give equal features, so the id keys cached features."""
        modules = sorted({type(m).__name__ for m in self.tower.modules()})
        parts = [self.weights_sha256, ",".join(modules), str(self.image_size), str(self.mean.flatten().tolist()),
                 str(self.std.flatten().tolist()), f"preprocess{PREPROCESS_VERSION}"]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def preprocess(self, images):
        """[-1, 1] images of any size -> CLIP input (B, 3, 224, 224), normalised."""
        x = ((images.float() + 1) / 2).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        height, width = x.shape[-2:]
        size = self.image_size
        scale = size / min(height, width)
        resized = (max(size, round(height * scale)), max(size, round(width * scale)))
        x = F.interpolate(x, size=resized, mode="bicubic", align_corners=False, antialias=True)
        top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
        x = x[..., top:top + size, left:left + size].clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def features(self, images):
        """Images -> CLIP image features (B, feature_dim), float32, without gradient."""
        with torch.autocast(images.device.type, enabled=False):
            features = self.tower(self.preprocess(images)).float()
        self.images_encoded += images.shape[0]
        return features

    def tokens(self, features):
        """CLIP features (B, feature_dim) -> image tokens (B, num_tokens, token_dim)."""
        return self.mlp(features)

    def forward(self, images):
        return self.tokens(self.features(images))
