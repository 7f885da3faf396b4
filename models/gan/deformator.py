"""The orthogonal latent deformator: a one-hot shift on concept j, times a magnitude, becomes
that magnitude times the j-th column of an orthogonal matrix ``matrix_exp(A - A^T)`` (A learned),
so the concept directions stay unit-length and mutually orthogonal throughout training."""
import torch
import torch.nn.functional as F
from torch import nn


class LatentDeformator(nn.Module):
    """``dim``: the GAN latent's width (StyleGAN2 W: 512, BigGAN z: 128). The parameter is named
    ``log_mat_half`` as in the published deformator, so its state dicts load strictly;
    ``random_init`` draws A from N(0, 1) (published), otherwise from N(0, 0.001^2) (near identity)."""

    def __init__(self, dim, random_init=True):
        super().__init__()
        self.dim = dim
        self.log_mat_half = nn.Parameter((1.0 if random_init else 0.001) * torch.randn(dim, dim))

    def matrix(self):
        """The orthogonal (dim, dim) map; column j is concept j's direction."""
        return torch.linalg.matrix_exp(self.log_mat_half - self.log_mat_half.t())

    def forward(self, shifts):
        """(B, dim) shift vectors -> (B, dim) latent offsets."""
        return F.linear(shifts, self.matrix())
