"""A plain, functional re-statement of the published VCT forward passes ,
computed straight from a state_dict with explicit softmax(QK^T/sqrt(d))V attention.

It shares no code with ``models/`` so the tests compare two independent readings of the published architecture.
"""
import math

import torch
import torch.nn.functional as F


def layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"])


def plain_attention(q, k, v, heads):
    b, n, inner = q.shape
    d = inner // heads
    q = q.view(b, n, heads, d).transpose(1, 2)
    k = k.view(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.view(b, v.shape[1], heads, d).transpose(1, 2)
    sim = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(d)
    out = torch.einsum("bhij,bhjd->bhid", sim.softmax(dim=-1), v)
    return out.transpose(1, 2).reshape(b, n, heads * d)


def attention_block(x, context, sd, prefix, heads):
    """PreNorm(Attention): x + to_out(attn(to_q(norm(x)), to_kv(norm_context(context))))."""
    xn = layer_norm(x, sd, prefix + ".norm")
    if context is None:
        cn = xn
    else:
        cn = layer_norm(context, sd, prefix + ".norm_context")
    q = xn @ sd[prefix + ".fn.to_q.weight"].t()
    k, v = (cn @ sd[prefix + ".fn.to_kv.weight"].t()).chunk(2, dim=-1)
    out = plain_attention(q, k, v, heads)
    return x + out @ sd[prefix + ".fn.to_out.weight"].t() + sd[prefix + ".fn.to_out.bias"]


def ff_block(x, sd, prefix):
    xn = layer_norm(x, sd, prefix + ".norm")
    h = xn @ sd[prefix + ".fn.net.0.weight"].t() + sd[prefix + ".fn.net.0.bias"]
    a, gates = h.chunk(2, dim=-1)
    h = a * F.gelu(gates)
    return x + h @ sd[prefix + ".fn.net.2.weight"].t() + sd[prefix + ".fn.net.2.bias"]


def position_code(n_tokens, max_freq=10, bands=6):
    side = int(math.sqrt(n_tokens))
    coords = torch.linspace(-1, 1, side, dtype=torch.float64)
    feats = []
    for row in range(side):
        for col in range(side):
            token = []
            for c in (coords[row], coords[col]):
                scales = torch.linspace(1.0, max_freq / 2, bands, dtype=torch.float64)
                token += [torch.sin(c * scales * math.pi), torch.cos(c * scales * math.pi), c.view(1)]
            feats.append(torch.cat(token))
    return torch.stack(feats)


def encoder_forward(sd, data, depth, cross_heads=1, latent_heads=6, max_freq=10, bands=6):
    b, n, _ = data.shape
    pos = position_code(n, max_freq, bands).to(data.dtype)
    tokens = torch.cat([data, pos.expand(b, -1, -1)], dim=-1)
    concepts = sd["latents"].expand(b, -1, -1)
    for i in range(depth):
        concepts = attention_block(concepts, tokens, sd, f"cs_layers.{i}.0", cross_heads)
        concepts = ff_block(concepts, sd, f"cs_layers.{i}.1")
        if i != depth - 1:
            tokens = attention_block(tokens, None, sd, f"layers.{i}.0", latent_heads)
            tokens = ff_block(tokens, sd, f"layers.{i}.1")
    return concepts


def decoder_forward(sd, concepts, depth, cross_heads=1, latent_heads=6, ce_loss=True):
    b = concepts.shape[0]
    queries = sd["latents"].expand(b, -1, -1)
    for i in range(depth):
        queries = attention_block(queries, concepts, sd, f"cs_layers.{i}.0", cross_heads)
        queries = ff_block(queries, sd, f"cs_layers.{i}.1")
        queries = attention_block(queries, None, sd, f"layers.{i}.0", latent_heads)
        queries = ff_block(queries, sd, f"layers.{i}.1")
        if i != depth - 1:
            concepts = attention_block(concepts, None, sd, f"slayers.{i}.0", latent_heads)
            concepts = ff_block(concepts, sd, f"slayers.{i}.1")
    if ce_loss:
        return queries @ sd["fc_layer.weight"].t() + sd["fc_layer.bias"]
    return queries


def published_encoder_shapes(z_index_dim=20, depth=6, dim=256, latent_dim=256):
    """Key -> shape of the published VCT_Encoder state_dict (defaults), written out from the
    published parameter table rather than derived from our modules."""
    ctx = dim + 26
    shapes = {"latents": (z_index_dim, latent_dim)}
    for i in range(depth):
        p = f"cs_layers.{i}.0"
        shapes.update({
            f"{p}.fn.to_q.weight": (128, latent_dim), f"{p}.fn.to_kv.weight": (256, ctx),
            f"{p}.fn.to_out.weight": (latent_dim, 128), f"{p}.fn.to_out.bias": (latent_dim,),
            f"{p}.norm.weight": (latent_dim,), f"{p}.norm.bias": (latent_dim,),
            f"{p}.norm_context.weight": (ctx,), f"{p}.norm_context.bias": (ctx,)})
        p = f"cs_layers.{i}.1"
        shapes.update({
            f"{p}.fn.net.0.weight": (8 * latent_dim, latent_dim), f"{p}.fn.net.0.bias": (8 * latent_dim,),
            f"{p}.fn.net.2.weight": (latent_dim, 4 * latent_dim), f"{p}.fn.net.2.bias": (latent_dim,),
            f"{p}.norm.weight": (latent_dim,), f"{p}.norm.bias": (latent_dim,)})
    for i in range(depth - 1):
        p = f"layers.{i}.0"
        shapes.update({
            f"{p}.fn.to_q.weight": (768, ctx), f"{p}.fn.to_kv.weight": (1536, ctx),
            f"{p}.fn.to_out.weight": (ctx, 768), f"{p}.fn.to_out.bias": (ctx,),
            f"{p}.norm.weight": (ctx,), f"{p}.norm.bias": (ctx,)})
        p = f"layers.{i}.1"
        shapes.update({
            f"{p}.fn.net.0.weight": (8 * ctx, ctx), f"{p}.fn.net.0.bias": (8 * ctx,),
            f"{p}.fn.net.2.weight": (ctx, 4 * ctx), f"{p}.fn.net.2.bias": (ctx,),
            f"{p}.norm.weight": (ctx,), f"{p}.norm.bias": (ctx,)})
    return shapes


def published_decoder_shapes(index_num=256, z_index_dim=256, depth=4, dim=256):
    shapes = {"latents": (z_index_dim, dim), "fc_layer.weight": (index_num, dim),
              "fc_layer.bias": (index_num,)}

    def self_block(p):
        shapes.update({
            f"{p}.0.fn.to_q.weight": (768, dim), f"{p}.0.fn.to_kv.weight": (1536, dim),
            f"{p}.0.fn.to_out.weight": (dim, 768), f"{p}.0.fn.to_out.bias": (dim,),
            f"{p}.0.norm.weight": (dim,), f"{p}.0.norm.bias": (dim,),
            f"{p}.1.fn.net.0.weight": (8 * dim, dim), f"{p}.1.fn.net.0.bias": (8 * dim,),
            f"{p}.1.fn.net.2.weight": (dim, 4 * dim), f"{p}.1.fn.net.2.bias": (dim,),
            f"{p}.1.norm.weight": (dim,), f"{p}.1.norm.bias": (dim,)})

    for i in range(depth):
        p = f"cs_layers.{i}"
        shapes.update({
            f"{p}.0.fn.to_q.weight": (128, dim), f"{p}.0.fn.to_kv.weight": (256, dim),
            f"{p}.0.fn.to_out.weight": (dim, 128), f"{p}.0.fn.to_out.bias": (dim,),
            f"{p}.0.norm.weight": (dim,), f"{p}.0.norm.bias": (dim,),
            f"{p}.0.norm_context.weight": (dim,), f"{p}.0.norm_context.bias": (dim,),
            f"{p}.1.fn.net.0.weight": (8 * dim, dim), f"{p}.1.fn.net.0.bias": (8 * dim,),
            f"{p}.1.fn.net.2.weight": (dim, 4 * dim), f"{p}.1.fn.net.2.bias": (dim,),
            f"{p}.1.norm.weight": (dim,), f"{p}.1.norm.bias": (dim,)})
        self_block(f"layers.{i}")
    for i in range(depth - 1):
        self_block(f"slayers.{i}")
    return shapes
