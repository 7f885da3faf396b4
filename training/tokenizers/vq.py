"""The VQ-VAE tokenizer (main_vct.py's setting, and the base of the others): a frozen VQ-VAE gives the image tokens (its quantised
encoder vectors) and the reconstruction targets (their code indices); the VCT decoder predicts
the codes, and the disentangling loss detokenises through a hard Gumbel sample of them.

A tokenizer, as the objective and the disentangling loss see it, has
``tokenize(images, indices=None)`` -> (image tokens, reconstruction targets),
``reconstruction_loss(decoder_output, targets)``, ``detokenize(decoder_output, generator)`` ->
images (always without gradient), ``retokenize(images)`` -> image tokens (called with gradient
enabled, so a trainable tokenizer part trains there; a frozen one wraps it in no_grad) and
``model_state()`` / ``load_model_state(checkpoint, load)`` for its trainable parts. The mask and
CLIP tokenizers implement the same methods.
"""
import contextlib
import contextvars
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from datasets import GroundTruthData
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from training import checkpoint as ckpt
from training.data import fixed_batch
from training.errors import UserError
from training.evaluate import evaluate_encoder
from training.objectives import VCTObjective
from training.precision import at_least_float32, full_precision
from training.setting import Evaluation, build_derived
from training.visualize import reconstruction_grid, swap_grid


def gumbel_argmax(logits, generator=None):
    """Index of a hard Gumbel-softmax sample: argmax(logits + Gumbel noise). (The temperature
    does not change a hard sample's value, and no gradient is taken here.)"""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    exponential = -torch.log(uniform.clamp_(min=1e-20))
    gumbel = -torch.log(exponential.clamp_(min=1e-20))
    return (logits.float() + gumbel).argmax(dim=-1)


class VQTokenizer(nn.Module):
    """A frozen, eval-mode VQ_CVAE: image tokens are the quantised encoder vectors (B, N, d) and
    the reconstruction targets are their code indices (B, N). ``soft_retokens`` (a recipe
    option, ``get_args.dis_soft_retokens``; published False): the disentangling loss re-tokenises
    detokenised images to the encoder's unquantised vectors, so that a swap whose images
    quantise to the same codes still moves the re-encoded concepts. ``focal_gamma`` (a recipe
    option, ``get_args.recon_focal_gamma``; published 0): see ``reconstruction_loss``."""

    def __init__(self, vqvae, soft_retokens=False, focal_gamma=0.0):
        super().__init__()
        self.soft_retokens = soft_retokens
        self.focal_gamma = focal_gamma
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
        """Cross-entropy of the decoder's code logits (B, N, k) against the codes (B, N): the
        published mean when ``focal_gamma`` is 0. Otherwise the mean weighted by (1 - p)^gamma,
        p each token's predicted probability of its code, the weights held constant. The few
        tokens that show a small object, which the decoder gets wrong longest, then outweigh
        the background; dividing by the summed weights keeps a mean's scale, so the balance
        with the other loss terms stays as tuned."""
        logits = at_least_float32(logits).transpose(1, 2)
        if self.focal_gamma == 0:
            return F.cross_entropy(logits, targets)
        per_token = F.cross_entropy(logits, targets, reduction="none")
        weight = (1 - torch.exp(-per_token.detach())) ** self.focal_gamma
        return (weight * per_token).sum() / weight.sum().clamp(min=1e-12)

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
        if self.soft_retokens:
            return self.vqvae.encode(images).flatten(2).transpose(1, 2)  # (B, N, d), unquantised
        return self.vqvae.tokenize(images)[0]

    def model_state(self):
        return {}  # frozen: its weights live in the VQ-VAE checkpoint

    def load_model_state(self, checkpoint, load):
        pass


_WEIGHTS_LOADED_LATER = contextvars.ContextVar("frozen_weights_loaded_later", default=False)


@contextlib.contextmanager
def frozen_weights_loaded_later():
    """Inside: the frozen parts (VQ-VAE, CLIP tower, GAN generator) are built at their configured
    sizes without reading their weight files, and no file is trained or cached for them. A
    bundle's model.safetensors holds every weight and replaces them right after the build
    (training/bundle.py)."""
    token = _WEIGHTS_LOADED_LATER.set(True)
    try:
        yield
    finally:
        _WEIGHTS_LOADED_LATER.reset(token)


def weights_loaded_later() -> bool:
    """Whether the build is inside ``frozen_weights_loaded_later``."""
    return _WEIGHTS_LOADED_LATER.get()


def load_vqvae(path, hidden, k, num_channels=3, device="cpu"):
    """A frozen-to-be VQ_CVAE of the given size with weights from ``path`` (our checkpoint or
    a published raw state_dict). Clear errors for a missing file or a size mismatch."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"VQ-VAE checkpoint not found: {path} (train one with "
                        f"python train_vqvae.py --dataset NAME --out {path.parent})")
    state = ckpt.load_checkpoint(path)
    weights = state.get("model_state_dict", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
        raise UserError(f"{path} is not a VQ-VAE checkpoint (expected train_vqvae.py's vqvae.pt or a "
                        f"state_dict of tensors)")
    model = VQ_CVAE(d=hidden, k=k, num_channels=num_channels)
    ckpt.load_model_state(model, weights, f"VQ-VAE (configured d={hidden}, k={k})", path)
    return model.to(device).eval()


def vq_tokenizer(ctx):
    """The run's frozen VQ-VAE (``get_args.vqvae_path``, ``hidden``, ``k``), after checking that
    the images give ``get_args.shape_num`` tokens (the VQ-VAE downsamples by 4)."""
    cfg, (height, width, channels) = ctx.cfg, ctx.image_shape
    if height % 4 or width % 4:
        raise UserError(f"the VQ-VAE downsamples by 4, so image sides must be multiples of 4; the "
                        f"{cfg.name} images are {height}x{width}")
    tokens = (height // 4) * (width // 4)
    if tokens != cfg.shape_num:
        raise UserError(f"get_args.shape_num = {cfg.shape_num}, but {height}x{width} images give "
                        f"{tokens} VQ-VAE tokens")
    if weights_loaded_later():
        vqvae = VQ_CVAE(d=cfg.hidden, k=cfg.k, num_channels=channels).to(ctx.device)
    else:
        vqvae = load_vqvae(cfg.vqvae_path, cfg.hidden, cfg.k, channels, ctx.device)
    return VQTokenizer(vqvae, cfg.dis_soft_retokens, cfg.recon_focal_gamma)


def concept_encoder(concepts, concepts_knob, token_dim, token_knob):
    """VCT_Encoder over image tokens of width ``token_dim`` with ``concepts`` concept tokens;
    its other arguments (depth, widths) come from the ``VCT_Encoder.*`` gin bindings."""
    return build_derived(VCT_Encoder, z_index_dim=(concepts, concepts_knob), dim=(token_dim, token_knob))


def concept_width(encoder):
    """Width of the encoder's concept tokens (``VCT_Encoder.latent_dim``)."""
    return encoder.latents.shape[-1]


def code_decoder(encoder, num_codes, num_tokens):
    """VCT_Decoder from the encoder's concept tokens to logits over ``num_codes`` VQ codes at
    ``num_tokens`` image tokens; depth and widths from the ``VCT_Decoder.*`` gin bindings."""
    return build_derived(VCT_Decoder, dim=(concept_width(encoder), "VCT_Encoder.latent_dim"),
                         index_num=(num_codes, "get_args.k"), z_index_dim=(num_tokens, "get_args.shape_num"),
                         ce_loss=(True, "the setting"))


def concept_grids(ctx, objective, count=8):
    """The concept-swap grid and the reconstruction grid of ``count`` fixed training images."""
    sources = fixed_batch(ctx.batches, count, ctx.seed).to(ctx.device)
    swaps = swap_grid(objective.encode_images, objective.decode_concepts, sources, sources.roll(1, dims=0))
    recon = objective.decode_concepts(objective.encode_images(sources))
    return {"swap": swaps, "recon": reconstruction_grid(sources, recon)}


def disentanglement(ctx, objective, cache_key):
    """The disentanglement metrics (``evaluation.*`` gin knobs) of the objective's concepts on
    a dataset with ground-truth factors; None for a dataset without them (scenes)."""
    if not isinstance(ctx.data, GroundTruthData):
        return None
    cache_dir = str(Path(ctx.run_dir) / "eval_cache") if ctx.run_dir is not None else None
    results, settings = evaluate_encoder(objective.encode_images, ctx.data, ctx.device,
                                         cache_dir=cache_dir, cache_key=cache_key)
    return Evaluation(results, settings)
