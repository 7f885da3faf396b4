"""VQ-VAE image tokenizer (``VQ_CVAE``) with the published layout.

A 64x64 image becomes a 16x16 grid of ``d``-dim vectors, each snapped to the nearest of ``k``
codebook entries: 256 image tokens and their code indices (VCT's reconstruction targets).
"""
import gin
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class ResBlock(nn.Module):
    """x + [ReLU, Conv3x3, (BN), ReLU, Conv1x1](x)."""

    def __init__(self, in_channels, out_channels, mid_channels=None, bn=False):
        super().__init__()
        mid_channels = out_channels if mid_channels is None else mid_channels
        layers = [
            nn.ReLU(),
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, kernel_size=1, stride=1, padding=0),
        ]
        if bn:
            layers.insert(2, nn.BatchNorm2d(out_channels))
        self.convs = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.convs(x)


def nearest_code_indices(vectors, codebook):
    """Index of the L2-nearest codebook column for every row of ``vectors``.

    vectors (n, d), codebook (d, k) -> (n,) int64. Uses argmin_j ||e_j||^2 - 2 x.e_j (the
    ||x||^2 term is constant per row), one matmul instead of an (n, d, k) difference tensor.
    """
    code_sq_norms = (codebook * codebook).sum(dim=0)
    scores = torch.addmm(code_sq_norms, vectors, codebook, beta=1.0, alpha=-2.0)
    return scores.argmin(dim=1)


class _GatherCodesAveragedGrad(torch.autograd.Function):
    """codebook (d, k) gathered at ``indices`` -> (..., d). Backward as published: each code's
    gradient is the *mean* (not the sum) of the output gradients of the positions that chose
    it, so a popular code is not pushed harder than a rare one."""

    @staticmethod
    def forward(ctx, codebook, indices):
        ctx.save_for_backward(indices)
        ctx.num_codes = codebook.shape[1]
        return F.embedding(indices, codebook.t())

    @staticmethod
    def backward(ctx, grad_out):
        (indices,) = ctx.saved_tensors
        flat_idx = indices.reshape(-1)
        flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
        summed = flat_grad.new_zeros(ctx.num_codes, flat_grad.shape[1]).index_add_(0, flat_idx, flat_grad)
        counts = torch.bincount(flat_idx, minlength=ctx.num_codes).clamp_(min=1).to(summed.dtype)
        return (summed / counts[:, None]).t(), None


class NearestEmbed(nn.Module):
    """Codebook ``weight`` of shape (d, k) (dim first, as published).

    ``forward(z_e, weight_sg)`` returns the nearest codes (B, d, H, W) and their indices
    (B, H, W). The value is always the code; gradients are straight-through to ``z_e`` and,
    unless ``weight_sg``, also reach the selected codebook columns.
    """

    def __init__(self, num_embeddings, embeddings_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(embeddings_dim, num_embeddings))

    def indices(self, z_e):
        flat = rearrange(z_e, "b d h w -> (b h w) d")
        idx = nearest_code_indices(flat.detach(), self.weight.detach().to(flat.dtype))
        return idx.view(z_e.shape[0], *z_e.shape[2:])

    def embed(self, indices):
        """Code vectors for integer indices (B, ...) -> (B, d, ...)."""
        codes = _GatherCodesAveragedGrad.apply(self.weight, indices)
        return torch.movedim(codes, -1, 1)

    def forward(self, z_e, weight_sg=False):
        idx = self.indices(z_e)
        codes = self.embed(idx).to(z_e.dtype)
        if weight_sg:
            codes = codes.detach()
        # Straight-through: the value is exactly ``codes``; d(out)/d(z_e) is the identity.
        out = codes + (z_e - z_e.detach())
        return out, idx


@gin.configurable
class VQ_CVAE(nn.Module):
    """Convolutional VQ-VAE: ``d`` hidden channels, ``k`` codes, ``num_channels`` image channels.

    ``forward(x)`` -> (reconstruction, z_e, codes-with-codebook-gradient, indices), as published;
    ``loss_function`` -> MSE + vq_coef * vq + commit_coef * commit.
    """

    def __init__(self, d=256, k=128, bn=True, vq_coef=1.0, commit_coef=0.5, num_channels=3):
        super().__init__()
        self.d = d
        self.k = k
        self.vq_coef = vq_coef
        self.commit_coef = commit_coef
        self.encoder = nn.Sequential(
            nn.Conv2d(num_channels, d, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(d),
            nn.ReLU(inplace=True),
            nn.Conv2d(d, d, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(d),
            nn.ReLU(inplace=True),
            ResBlock(d, d, bn=bn),
            nn.BatchNorm2d(d),
            ResBlock(d, d, bn=bn),
            nn.BatchNorm2d(d),
        )
        self.decoder = nn.Sequential(
            ResBlock(d, d),
            nn.BatchNorm2d(d),
            ResBlock(d, d),
            nn.ConvTranspose2d(d, d, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(d),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(d, num_channels, kernel_size=4, stride=2, padding=1),
        )
        self.emb = NearestEmbed(k, d)
        self.reset_parameters()

    def reset_parameters(self):
        # Published init: Conv2d/Linear weights N(0, 0.02) and zero bias (transposed convs keep
        # PyTorch's default init), the last encoder BN scaled to 1/40, codebook N(0, 0.02).
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module.weight.normal_(0.0, 0.02)
                    nn.init.zeros_(module.bias)
            self.encoder[-1].weight.fill_(1.0 / 40)
            self.emb.weight.normal_(0.0, 0.02)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z_q):
        return torch.tanh(self.decoder(z_q))

    def quantize(self, z_e):
        """Straight-through quantisation: (codes (B, d, H, W), indices (B, H, W)).
        The codebook gets no gradient through this path."""
        return self.emb(z_e, weight_sg=True)

    def tokenize(self, x):
        """Images (B, C, H, W) -> image tokens (B, H'*W', d) and code indices (B, H'*W')."""
        codes, idx = self.quantize(self.encode(x))
        return rearrange(codes, "b d h w -> b (h w) d"), idx.flatten(1)

    def decode_tokens(self, tokens):
        """Image tokens (B, N, d) on a square grid -> images (B, C, H, W)."""
        side = int(round(tokens.shape[1] ** 0.5))
        return self.decode(rearrange(tokens, "b (h w) d -> b d h w", h=side, w=side))

    def forward(self, x):
        z_e = self.encode(x)
        z_q, idx = self.emb(z_e, weight_sg=True)
        codes, _ = self.emb(z_e.detach())
        return self.decode(z_q), z_e, codes, idx

    def loss_terms(self, x, recon_x, z_e, emb):
        """{'mse', 'vq', 'commit'} with their graphs. Per position, vq = ||sg(z_e) - e||^2 (trains
        the codebook) and commit = ||z_e - sg(e)||^2 (trains the encoder), averaged over positions."""
        return {
            "mse": F.mse_loss(recon_x, x),
            "vq": (emb - z_e.detach()).pow(2).sum(dim=1).mean(),
            "commit": (emb.detach() - z_e).pow(2).sum(dim=1).mean(),
        }

    def loss_function(self, x, recon_x, z_e, emb, argmin=None):
        """MSE(recon, x) + vq_coef * vq + commit_coef * commit (published signature)."""
        terms = self.loss_terms(x, recon_x, z_e, emb)
        self.last_losses = {name: value.detach() for name, value in terms.items()}
        return terms["mse"] + self.vq_coef * terms["vq"] + self.commit_coef * terms["commit"]
