"""What the GAN settings train on: a random concept per sample, shifted along its direction by a
random magnitude, and the loss that asks which concept was shifted."""
import torch
import torch.nn.functional as F


def sample_shift_magnitudes(count, generator=None, device=None, scale=6.0, min_magnitude=0.5):
    """``scale * N(0, 1)`` magnitudes, those smaller than ``min_magnitude`` in absolute value
    pushed out to +-``min_magnitude`` (keeping their sign; an exact 0 goes to +). The published
    sampler only did this for positive values (its negative-side condition could never hold)."""
    magnitudes = scale * torch.randn(count, generator=generator, device=device)
    sign = torch.where(magnitudes < 0, -1.0, 1.0).to(magnitudes)
    return torch.where(magnitudes.abs() < min_magnitude, sign * min_magnitude, magnitudes)


def one_hot_shifts(targets, magnitudes, dim):
    """(B,) concept indices and (B,) magnitudes -> (B, dim) shift vectors."""
    shifts = torch.zeros(targets.shape[0], dim, device=magnitudes.device, dtype=magnitudes.dtype)
    return shifts.scatter_(1, targets[:, None], magnitudes[:, None])


def shift_prediction_loss(concepts, shifted_concepts, targets):
    """Cross-entropy of the L2-normalised per-concept distances (B, K) between the concepts of
    the original and the shifted images against the shifted concept: the concept that moved
    most should be the one whose direction was used. Returns (loss, per-concept distances)."""
    distances = (concepts.float() - shifted_concepts.float()).norm(dim=-1)
    return F.cross_entropy(F.normalize(distances, dim=-1), targets), distances.detach()
