"""The CLIP tokenizer (main_vct_clip.py's setting): a frozen CLIP image encoder and one MLP per token make
the image tokens; the frozen VQ-VAE gives the reconstruction targets (its code indices) and
detokenises for the concept disentangling loss, whose images are re-tokenised through the same
CLIP path. Where the weights come from: clip_weights.py; the feature cache: clip_cache.py.
"""
import math

import numpy as np
import torch
from torch import nn

from models.clip_tokenizer import CLIPImageTokenizer, state_sha256
from training.errors import UserError
from training.tokenizers.clip_cache import CLIPFeatureCache, image_fingerprints, open_feature_cache
from training.tokenizers.clip_weights import RANDOM_WEIGHTS, load_clip_tower
from training.tokenizers.vq import VQTokenizer, vq_tokenizer, weights_loaded_later


class CLIPTokenizer(nn.Module):
    """The tokenizer interface of training/settings.py over CLIP: image tokens = MLP(CLIP
    feature), reconstruction targets = VQ-VAE code indices; detokenising goes through the
    VQ-VAE (hard Gumbel sample -> codebook -> decode) and re-tokenising through CLIP again,
    with gradient into the MLP only. The token MLP is the trainable part (``mlp_state_dict``).

    With a feature cache attached, features of dataset images are read from it or computed
    once and stored; ``dataset_images_encoded`` counts those computed."""

    def __init__(self, clip: CLIPImageTokenizer, vq: VQTokenizer):
        super().__init__()
        self.clip = clip
        self.vq = vq
        self.feature_cache = None
        self.dataset_images_encoded = 0

    def attach_feature_cache(self, cache: CLIPFeatureCache):
        self.feature_cache = cache

    def image_features(self, images, indices=None):
        """CLIP features (B, D) of ``images``, through the cache where there is one. Without
        ``indices`` the images are looked up by content (evaluation reads dataset images so)."""
        cache = self.feature_cache
        if cache is None:
            return self.clip.features(images)
        if indices is None:
            indices = cache.find(image_fingerprints(images))
        else:
            indices = np.asarray(indices.cpu() if torch.is_tensor(indices) else indices, dtype=np.int64)
        found, cached = cache.lookup(indices)
        features = torch.from_numpy(cached).to(images.device)
        missing = np.flatnonzero(~found)
        if len(missing):
            rows = torch.from_numpy(missing).to(images.device)
            computed = self.clip.features(images[rows])
            features[rows] = computed
            in_dataset = indices[missing] >= 0
            cache.store(indices[missing][in_dataset], computed.cpu().numpy()[in_dataset])
            self.dataset_images_encoded += int(in_dataset.sum())
        return features

    def tokenize(self, images, indices=None):
        codes = self.vq.tokenize(images)[1]
        return self.clip.tokens(self.image_features(images, indices)), codes

    def reconstruction_loss(self, logits, targets):
        return self.vq.reconstruction_loss(logits, targets)

    def detokenize(self, logits, generator=None):
        return self.vq.detokenize(logits, generator)

    def codes_to_images(self, codes):
        return self.vq.codes_to_images(codes)

    def retokenize(self, images):
        return self.clip(images)

    def model_state(self):
        return {"mlp_state_dict": self.clip.mlp.state_dict(), "clip_features_id": self.clip.features_id}

    def load_model_state(self, checkpoint, load):
        saved = checkpoint.get("clip_features_id")
        if saved is not None and saved != self.clip.features_id:
            raise UserError(f"this checkpoint's token MLP was trained on other CLIP weights (features id "
                            f"{saved[:12]}, here {self.clip.features_id[:12]}); use the --clip_weights it "
                            f"was trained with")
        load(self.clip.mlp, checkpoint["mlp_state_dict"], "CLIP token MLP")

    def bundle_bindings(self):
        """What a bundle must bind to rebuild this tower without its weight file: the activation
        (part of the architecture, not of the weights; a tag's own default is not in the config)."""
        quick_gelu = any(type(m).__name__ == "QuickGELU" for m in self.clip.tower.modules())
        return [f"clip_tower.quick_gelu = {quick_gelu!r}"]

    def weights_replaced(self):
        """The tower's weights were replaced after the build (from a bundle): its digest, and so
        ``features_id``, follows them."""
        self.clip.weights_sha256 = state_sha256(self.clip.tower)


def clip_tokenizer(ctx):
    """Frozen CLIP tower + token MLP (``get_args.clip_weights``, ``clip_tokens``) over the run's
    frozen VQ-VAE, with the dataset's feature cache attached (``get_args.clip_cache_dir``)."""
    cfg = ctx.cfg
    side = math.isqrt(cfg.clip_tokens)
    if side * side != cfg.clip_tokens:
        raise UserError(f"get_args.clip_tokens = {cfg.clip_tokens}: VCT_Encoder needs a square number of "
                        f"image tokens (published: 36, a 6x6 grid)")
    if cfg.dis_soft_retokens:
        raise UserError("get_args.dis_soft_retokens = True: the CLIP setting re-tokenises through CLIP, "
                        "not the VQ-VAE")
    vq = vq_tokenizer(ctx)
    # For a bundle: a random tower of the same architecture, whose weights (and mean/std) the
    # bundle replaces; features cached under its random digest would be misfiled, so no cache.
    tower, mean, std = load_clip_tower(RANDOM_WEIGHTS if weights_loaded_later() else cfg.clip_weights)
    tokenizer = CLIPTokenizer(CLIPImageTokenizer(tower, num_tokens=cfg.clip_tokens, mean=mean, std=std), vq)
    if cfg.clip_cache_dir and not weights_loaded_later():
        tokenizer.attach_feature_cache(open_feature_cache(cfg, ctx.batches, tokenizer.clip))
    return tokenizer
