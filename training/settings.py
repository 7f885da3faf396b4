"""Image tokenizers as VCT sees them.

A setting gives VCT four things: ``tokenize(images, indices=None)`` -> (image tokens,
reconstruction targets), ``reconstruction_loss(decoder_output, targets)`` and, for the concept
disentangling loss, ``detokenize(decoder_output, generator)`` -> images (always without
gradient) followed by ``retokenize(images)`` -> image tokens (called with gradient enabled, so
a setting with a trainable tokenizer part trains it there too; a frozen one wraps it in
no_grad). ``model_state()`` / ``load_model_state(checkpoint, load)`` save and restore trainable
parts of the setting ({} / nothing for a frozen tokenizer). The VQ-VAE setting is below; the
mask and CLIP settings implement the same methods.
"""
import functools

import torch
import torch.nn.functional as F
from torch import nn


def at_least_float32(x):
    """``x`` upcast to float32 when it is in a lower precision (bf16 under autocast); float64
    stays float64 (the equivalence tests run in it)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def full_precision(method):
    """Run a frozen-tokenizer method in fp32 (or fp64) even under bf16 autocast: code indices
    (the CE targets) must not depend on the training precision."""
    @functools.wraps(method)
    def wrapper(self, x, *args, **kwargs):
        x = at_least_float32(x)
        with torch.autocast(x.device.type, enabled=False):
            return method(self, x, *args, **kwargs)
    return wrapper


def gumbel_argmax(logits, generator=None):
    """Index of a hard Gumbel-softmax sample: argmax(logits + Gumbel noise). (The temperature
    does not change a hard sample's value, and no gradient is taken here.)"""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    exponential = -torch.log(uniform.clamp_(min=1e-20))
    gumbel = -torch.log(exponential.clamp_(min=1e-20))
    return (logits.float() + gumbel).argmax(dim=-1)


class VQTokenizer(nn.Module):
    """A frozen, eval-mode VQ_CVAE: image tokens are the quantised encoder vectors (B, N, d) and
    the reconstruction targets are their code indices (B, N)."""

    def __init__(self, vqvae):
        super().__init__()
        self.vqvae = vqvae.eval()
        self.vqvae.requires_grad_(False)

    def train(self, mode=True):  # stays frozen and in eval mode inside a training module
        return super().train(False)

    @property
    def token_dim(self):
        return self.vqvae.d

    @property
    def num_codes(self):
        return self.vqvae.k

    @torch.no_grad()
    @full_precision
    def tokenize(self, images, indices=None):
        return self.vqvae.tokenize(images)

    def reconstruction_loss(self, logits, targets):
        return F.cross_entropy(at_least_float32(logits).transpose(1, 2), targets)

    @torch.no_grad()
    @full_precision
    def detokenize(self, logits, generator=None):
        """Decoder logits (B, N, k) -> images, through a hard Gumbel sample of the codes."""
        codes = gumbel_argmax(logits, generator)
        return self.codes_to_images(codes)

    @torch.no_grad()
    def codes_to_images(self, codes):
        with torch.autocast(codes.device.type, enabled=False):
            tokens = self.vqvae.emb.embed(codes).transpose(1, 2)  # (B, N, d)
            return self.vqvae.decode_tokens(tokens)

    @torch.no_grad()
    @full_precision
    def retokenize(self, images):
        return self.vqvae.tokenize(images)[0]

    def model_state(self):
        return {}  # frozen: its weights live in the VQ-VAE checkpoint

    def load_model_state(self, checkpoint, load):
        pass
