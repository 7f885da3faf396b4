"""VCT concept tokenizer (encoder) and detokenizer (decoder).

Perceiver-style modules with the published constructor arguments, forward semantics and
state_dict layout (see ``shared/design/VCT_SPEC.md`` sections 2-4), so checkpoints written by
the published classes load with ``strict=True``. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on CPU and CUDA).

    >>> enc = VCT_Encoder(z_index_dim=20)
    >>> dec = VCT_Decoder(index_num=256, z_index_dim=256, ce_loss=True)
    >>> z = enc(torch.randn(2, 256, 256))     # (2, 20, 256) concept tokens
    >>> logits = dec(z)                       # (2, 256, 256) logits over 256 codes
"""
import functools
import math

import gin
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange, repeat
from torch import nn


# ----------------------------------------------------------------------------- position code

def fourier_features(coords, max_freq, num_bands):
    """sin/cos of ``coords * pi * scale`` for ``num_bands`` scales in [1, max_freq/2], plus the
    raw coordinate: (..., ) -> (..., 2 * num_bands + 1)."""
    coords = coords.unsqueeze(-1)
    scales = torch.linspace(1.0, max_freq / 2, num_bands, device=coords.device, dtype=coords.dtype)
    angles = coords * scales * math.pi
    return torch.cat([angles.sin(), angles.cos(), coords], dim=-1)


def fourier_channels(num_bands, num_axes=2):
    """Width of the 2-D position code appended to every image token (26 with the defaults)."""
    return num_axes * (2 * num_bands + 1)


def grid_position_code(num_tokens, max_freq, num_bands, device=None, dtype=None):
    """(num_tokens, fourier_channels) position code of a square token grid, row-major
    (token n sits at row n // side, column n % side), axis 0's features first."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"VCT expects a square grid of image tokens, got {num_tokens} tokens "
            f"(not a perfect square)")
    axis = torch.linspace(-1.0, 1.0, steps=side, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)  # (side, side, 2)
    code = fourier_features(grid, max_freq, num_bands)  # (side, side, 2, 2*bands+1)
    return rearrange(code, "h w axes f -> (h w) (axes f)")


# ----------------------------------------------------------------------------- blocks

class PreNorm(nn.Module):
    """LayerNorm on the input (and, for cross-attention, a separate one on the context)."""

    def __init__(self, dim, fn, context_dim=None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x, **kwargs):
        x = self.norm(x)
        if self.norm_context is not None:
            kwargs["context"] = self.norm_context(kwargs["context"])
        return self.fn(x, **kwargs)


class GEGLU(nn.Module):
    def forward(self, x):
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult * 2),
            GEGLU(),
            nn.Linear(dim * mult, dim),
        )

    @property
    def output_projection(self):
        return self.net[2]

    def forward(self, x):
        return self.net(x)


class Attention(nn.Module):
    """Multi-head (cross-)attention: q from ``x``, k and v from one fused projection of
    ``context`` (``x`` itself when no context is given)."""

    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64):
        super().__init__()
        inner_dim = dim_head * heads
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim)

    @property
    def output_projection(self):
        return self.to_out

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        attn_mask = None
        if mask is not None:
            # (b, ...) boolean, True = attend; broadcast over heads and queries.
            attn_mask = rearrange(mask.bool(), "b ... -> b () () (...)")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))

    def attention_weights(self, x, context=None, mask=None):
        """softmax(q k^T * scale), (b, heads, queries, keys), computed explicitly: the weights
        ``forward`` applies, which its fused kernel does not return. For pictures only."""
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k = rearrange(self.to_kv(context).chunk(2, dim=-1)[0], "b n (h d) -> b h n d", h=self.heads)
        scores = torch.einsum("bhnd,bhmd->bhnm", q, k) * self.scale
        if mask is not None:
            scores = scores.masked_fill(~rearrange(mask.bool(), "b ... -> b () () (...)"), float("-inf"))
        return scores.softmax(dim=-1)


def _attention_blocks(dim, heads, dim_head, count, tie_weights):
    """``count`` [PreNorm(self-attention), PreNorm(FeedForward)] pairs; with ``tie_weights``
    every pair is the same module (the published ``weight_tie_layers``)."""
    def make_pair():
        return nn.ModuleList([
            PreNorm(dim, Attention(dim, heads=heads, dim_head=dim_head)),
            PreNorm(dim, FeedForward(dim)),
        ])
    if tie_weights and count > 0:
        shared = make_pair()
        return nn.ModuleList([shared] * count)
    return nn.ModuleList([make_pair() for _ in range(count)])


def _cross_attention_block(query_dim, context_dim, heads, dim_head):
    return nn.ModuleList([
        PreNorm(query_dim, Attention(query_dim, context_dim, heads=heads, dim_head=dim_head),
                context_dim=context_dim),
        PreNorm(query_dim, FeedForward(query_dim)),
    ])


def _products():
    """The ops selective recomputation keeps the outputs of: matrix products and fused
    attention, the work worth keeping. The rest of a block (LayerNorm, GELU and its product,
    adds, casts, layout copies) is element-wise and is recomputed in the backward pass."""
    aten = torch.ops.aten
    names = ("mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
             "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention")
    return frozenset(getattr(aten, name).default for name in names if hasattr(aten, name))


_PRODUCTS = _products()


def _keep_products_context(output_weight):
    """Selective-recomputation contexts that keep every product's output except the block's
    output projection's (``output_weight``): nothing in the backward pass reads that one, and
    recomputation stops once its input is rebuilt, so it is never redone."""
    policy = torch.utils.checkpoint.CheckpointPolicy
    weight = output_weight.untyped_storage().data_ptr()

    def keep_products(ctx, op, *args, **kwargs):
        if op not in _PRODUCTS:
            return policy.PREFER_RECOMPUTE
        if any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == weight for a in args):
            return policy.PREFER_RECOMPUTE
        return policy.MUST_SAVE

    return torch.utils.checkpoint.create_selective_checkpoint_contexts(keep_products)


# 'auto' recomputes selectively in CPU blocks from this many input values on: below, the per-op
# dispatch of recomputation costs more than the memory is worth (benchmarks/RESULTS.md). Not on
# an accelerator, where that dispatch would be a large share of a step of milliseconds and
# the activations fit its memory.
AUTO_RECOMPUTE_MIN_VALUES = 2 ** 20


def _call(block, x, checkpoint, **kwargs):
    """``block(x, **kwargs)`` (a PreNorm'd Attention or FeedForward). With gradients on,
    ``checkpoint`` chooses what its backward pass keeps: False, everything; True, only the
    input (all activations recomputed: one more forward of the block); 'elementwise', the
    outputs of its matrix products and attention (only element-wise work is recomputed);
    'auto', 'elementwise' for a CPU block whose input (or context) holds at least
    AUTO_RECOMPUTE_MIN_VALUES values, else False. The gradients are the same in every mode."""
    if checkpoint == "auto":
        context = kwargs.get("context")
        size = max(x.numel(), 0 if context is None else context.numel())
        checkpoint = "elementwise" if x.device.type == "cpu" and size >= AUTO_RECOMPUTE_MIN_VALUES else False
    if checkpoint and torch.is_grad_enabled():
        extra = {}
        if checkpoint == "elementwise":
            weight = block.fn.output_projection.weight
            extra["context_fn"] = functools.partial(_keep_products_context, weight)
        return torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, **kwargs, **extra)
    return block(x, **kwargs)


def _checkpoint_mode(value, cls):
    if not (isinstance(value, bool) or value in ("elementwise", "auto")):
        raise ValueError(f"{cls}.activation_checkpointing = {value!r}: one of False, True, "
                         f"'elementwise' or 'auto'")
    return value


def _residual(block_pair, x, checkpoint=False, **kwargs):
    attn, ff = block_pair
    x = _call(attn, x, checkpoint, **kwargs) + x
    return _call(ff, x, checkpoint) + x


def _check_last_dim(tokens, expected, what):
    if tokens.dim() != 3:
        raise ValueError(f"{what} must be a (batch, tokens, dim) tensor, got shape {tuple(tokens.shape)}")
    if tokens.shape[-1] != expected:
        raise ValueError(
            f"{what} have last dimension {tokens.shape[-1]}, but this module was built with "
            f"dim={expected}")


# ----------------------------------------------------------------------------- encoder

@gin.configurable
class VCT_Encoder(nn.Module):
    """Concept tokenizer: ``z_index_dim`` learned concept prototypes cross-attend to the image
    tokens (with a 2-D Fourier position code appended). Concepts never attend to each other;
    the image tokens are refined by self-attention between the cross-attention layers.

    ``index_num`` and ``ce_loss`` are kept for compatibility with the published signature:
    ``ce_loss=True`` creates the (unused) ``fc_layer`` the published class had, so its
    checkpoints load strictly. ``activation_checkpointing`` (not in the published class)
    chooses which activations the backward pass recomputes instead of storing (``_call``):
    the same gradients in every mode; the default 'auto' recomputes only element-wise work,
    and only in large blocks on CPU; True recomputes whole blocks (the least memory, one more
    forward); False keeps everything.

    ``centre_concepts`` (not in the published class, default off) subtracts the mean over the
    concepts from every concept token. The decoder's attention weights over the concepts sum
    to one, so a vector added to every concept reaches every image token whatever the
    weights: a cheap way to carry a factor that touches the whole image (a background colour).
    Centring closes that way, so such a factor has to sit in a concept of its own.
    """

    def __init__(self, *, index_num=10, depth=6, dim=256, z_index_dim=10, latent_dim=256,
                 cross_heads=1, latent_heads=6, cross_dim_head=128, latent_dim_head=128,
                 weight_tie_layers=False, ce_loss=False, max_freq=10, num_freq_bands=6,
                 activation_checkpointing="auto", centre_concepts=False):
        super().__init__()
        if not isinstance(centre_concepts, bool):
            raise ValueError(f"VCT_Encoder.centre_concepts = {centre_concepts!r}: True or False")
        self.centre_concepts = centre_concepts
        self.dim = dim
        self.depth = depth
        self.activation_checkpointing = _checkpoint_mode(activation_checkpointing, "VCT_Encoder")
        self.max_freq = max_freq
        self.num_freq_bands = num_freq_bands
        context_dim = dim + fourier_channels(num_freq_bands)

        self.latents = nn.Parameter(torch.randn(z_index_dim, latent_dim))
        self.cs_layers = nn.ModuleList([
            _cross_attention_block(latent_dim, context_dim, cross_heads, cross_dim_head)
            for _ in range(depth)])
        if ce_loss:
            self.fc_layer = nn.Linear(dim, index_num)
        self.layers = _attention_blocks(context_dim, latent_heads, latent_dim_head,
                                        max(depth - 1, 0), weight_tie_layers)

    def _inputs(self, data):
        """(image tokens with their position code, the concept prototypes) for ``data``."""
        _check_last_dim(data, self.dim, "image tokens")
        batch, num_tokens, _ = data.shape
        pos = grid_position_code(num_tokens, self.max_freq, self.num_freq_bands,
                                 device=data.device, dtype=data.dtype)
        tokens = torch.cat([data, pos.expand(batch, -1, -1)], dim=-1)
        return tokens, repeat(self.latents, "n d -> b n d", b=batch).to(data.dtype)

    def forward(self, data, mask=None):
        tokens, concepts = self._inputs(data)
        ckpt = self.activation_checkpointing
        for i in range(self.depth):
            concepts = _residual(self.cs_layers[i], concepts, ckpt, context=tokens, mask=mask)
            if i != self.depth - 1:
                tokens = _residual(self.layers[i], tokens, ckpt)
        if self.centre_concepts:
            concepts = concepts - concepts.mean(dim=1, keepdim=True)
        return concepts

    def cross_attention_maps(self, data, mask=None):
        """Opt-in, for pictures: the last cross-attention layer's weights over the image tokens,
        averaged over its heads, (batch, concepts, image tokens); each row sums to 1. They are
        computed explicitly (the fused attention of ``forward`` does not return them) after
        running the layers before it exactly as ``forward`` does."""
        if self.depth < 1:
            raise ValueError("an encoder of depth 0 has no cross-attention")
        tokens, concepts = self._inputs(data)
        for i in range(self.depth - 1):
            concepts = _residual(self.cs_layers[i], concepts, context=tokens, mask=mask)
            tokens = _residual(self.layers[i], tokens)
        prenorm = self.cs_layers[self.depth - 1][0]
        weights = prenorm.fn.attention_weights(prenorm.norm(concepts), prenorm.norm_context(tokens), mask)
        return weights.mean(dim=1)


# ----------------------------------------------------------------------------- decoder

@gin.configurable
class VCT_Decoder(nn.Module):
    """Concept detokenizer: ``z_index_dim`` learned image queries cross-attend to the concept
    tokens, then self-attend; between layers the concept tokens are refined by self-attention.
    With ``ce_loss=True`` a final linear layer gives logits over ``index_num`` VQ codes.
    ``activation_checkpointing`` as in VCT_Encoder."""

    def __init__(self, *, depth=4, index_num=10, dim=256, z_index_dim=64, latent_dim=256,
                 cross_heads=1, cross_dim_head=128, latent_heads=6, latent_dim_head=128,
                 ce_loss=False, fourier_encode_data=False, weight_tie_layers=False,
                 max_freq=10, num_freq_bands=6, activation_checkpointing="auto"):
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.activation_checkpointing = _checkpoint_mode(activation_checkpointing, "VCT_Decoder")
        self.ce_loss = ce_loss
        self.fourier_encode_data = fourier_encode_data
        self.max_freq = max_freq
        self.num_freq_bands = num_freq_bands

        self.latents = nn.Parameter(torch.randn(z_index_dim, latent_dim))
        if depth != 0:
            self.slayers = _attention_blocks(dim, latent_heads, latent_dim_head, depth - 1,
                                             weight_tie_layers)
        self.cs_layers = nn.ModuleList([
            _cross_attention_block(latent_dim, dim, cross_heads, cross_dim_head)
            for _ in range(depth)])
        if ce_loss:
            self.fc_layer = nn.Linear(dim, index_num)
        if depth != 0:
            self.layers = _attention_blocks(latent_dim, latent_heads, latent_dim_head, depth,
                                            weight_tie_layers)

    def forward(self, data, mask=None):
        batch = data.shape[0]
        if self.fourier_encode_data:
            # As published: a position code over a square grid of input tokens, appended to
            # them, so the tokens must be (dim - fourier width) wide.
            _check_last_dim(data, self.dim - fourier_channels(self.num_freq_bands), "concept tokens")
            pos = grid_position_code(data.shape[1], self.max_freq, self.num_freq_bands,
                                     device=data.device, dtype=data.dtype)
            data = torch.cat([data, pos.expand(batch, -1, -1)], dim=-1)
        else:
            _check_last_dim(data, self.dim, "concept tokens")
        queries = repeat(self.latents, "n d -> b n d", b=batch).to(data.dtype)
        concepts = data
        ckpt = self.activation_checkpointing
        for i in range(self.depth):
            queries = _residual(self.cs_layers[i], queries, ckpt, context=concepts, mask=mask)
            queries = _residual(self.layers[i], queries, ckpt)
            if i != self.depth - 1:
                concepts = _residual(self.slayers[i], concepts, ckpt)
        return self.fc_layer(queries) if self.ce_loss else queries


# ----------------------------------------------------------------------------- CLIP adapter

class MLP_layer(nn.Module):
    """Linear -> GELU -> Linear, mapping one global feature to one token."""

    def __init__(self, z_dim=512, latent_dim=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, latent_dim), nn.GELU(),
                                 nn.Linear(latent_dim, latent_dim))

    @property
    def output_projection(self):
        return self.net[2]

    def forward(self, x):
        return self.net(x)


@gin.configurable
class MLP_layers(nn.Module):
    """``num_latents`` independent MLPs turning one (B, z_dim) feature (e.g. CLIP's) into
    (B, num_latents, latent_dim) tokens. Parameters are laid out as published
    (``nets.{i}.net.{0,2}``); the forward runs all MLPs as two batched matmuls."""

    def __init__(self, z_dim=512, latent_dim=256, num_latents=16):
        super().__init__()
        self.nets = nn.ModuleList([MLP_layer(z_dim, latent_dim) for _ in range(num_latents)])

    def forward(self, x):
        first = [net.net[0] for net in self.nets]
        second = [net.net[2] for net in self.nets]
        w1 = torch.stack([layer.weight for layer in first])   # (T, hidden, z_dim)
        b1 = torch.stack([layer.bias for layer in first])     # (T, hidden)
        w2 = torch.stack([layer.weight for layer in second])  # (T, out, hidden)
        b2 = torch.stack([layer.bias for layer in second])    # (T, out)
        hidden = F.gelu(torch.einsum("bz,thz->bth", x, w1) + b1)
        return torch.einsum("bth,toh->bto", hidden, w2) + b2
