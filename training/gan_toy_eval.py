"""The CPU toy's figure of merit: which ground-truth factor each learned direction changes.

For every concept direction d_j and each of ``n`` latents w, the toy's factor probe labels
G(w) and G(w + alpha d_j) for the traversal alphas (alpha != 0). ``change[j, f]`` is how often
the label of factor f differs from G(w)'s, divided by how often it differs between two random
generated images (so factors with few values are not favoured). Each (direction, latent)
traversal votes for the factor it changed most (relative to that rate); the score is the
accuracy of the majority-vote classifier direction -> factor, as in the FactorVAE metric
(1: every direction always changes the same single factor). The same numbers for random
orthogonal directions are reported beside them as the baseline."""
import numpy as np
import torch

from training.setting import Evaluation
from training.tokenizers.gan import traversal_alphas

ACTIVE_CHANGE = 0.25  # a direction is active if it changes some factor this often (relative)


@torch.no_grad()
def factor_changes(source, probe, directions, latents, alphas, chunk=512):
    """(base labels (n, F), change indicators (K, n, F) averaged over the alphas)."""
    base = probe.predict(source.render(latents, fixed_noise=True))
    changes = []
    for j in range(directions.shape[1]):
        moved = (latents[:, None] + alphas[None, :, None] * directions[:, j]).flatten(0, 1)
        images = torch.cat([source.render(part, fixed_noise=True) for part in moved.split(chunk)])
        labels = probe.predict(images).view(len(latents), len(alphas), -1)
        changes.append((labels != base[:, None]).float().mean(dim=1))
    return base, torch.stack(changes)


def random_pair_rate(labels, factor_sizes):
    """(F,) probability that two random images' labels differ, per factor."""
    rates = []
    for f, size in enumerate(factor_sizes):
        share = torch.bincount(labels[:, f], minlength=size).float() / len(labels)
        rates.append(1.0 - share.pow(2).sum())
    return torch.stack(rates).clamp(min=1e-3)


def direction_scores(base, changes, factor_sizes):
    """{'matrix' (K, F), 'votes' (K, F), 'score', 'active_directions', 'factors_covered'}."""
    relative = changes / random_pair_rate(base, factor_sizes)            # (K, n, F)
    matrix = relative.mean(dim=1)
    moved = changes.amax(dim=-1) > 0                                      # traversals that changed a label
    votes = torch.zeros_like(matrix)
    winners = relative.argmax(dim=-1)
    for j in range(matrix.shape[0]):
        votes[j] = torch.bincount(winners[j][moved[j]], minlength=matrix.shape[1]).float()
    total = votes.sum()
    score = float(votes.amax(dim=1).sum() / total) if total > 0 else 0.0
    active = matrix.amax(dim=1) >= ACTIVE_CHANGE
    covered = {int(f) for f in matrix.argmax(dim=1)[active]}
    return {"score": score, "active_directions": int(active.sum()), "factors_covered": len(covered),
            "matrix": np.round(matrix.numpy(), 3).tolist(), "votes": votes.int().tolist()}


def random_directions(dim, count, seed):
    """``count`` orthonormal random directions (dim, count): the untrained baseline."""
    rng = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=rng))
    return q[:, :count]


def direction_factor_evaluation(ctx, objective, gan):
    """The direction-factor scores of the run's directions (and of random ones), or None
    when the config names no factor probe (the published GAN settings have no factors)."""
    if not gan.probe_path:
        return None
    from training.gan_toy import load_probe
    probe, record = load_probe(gan.probe_path, objective.source.image_size, ctx.device)
    rng = torch.Generator(device=ctx.device).manual_seed(ctx.seed + 1)
    latents = objective.source.sample_latents(gan.eval_latents, rng)
    alphas = traversal_alphas(gan, ctx.device)
    alphas = alphas[alphas != 0]
    sizes = record["factor_sizes"]
    learned = objective.deformator.matrix()[:, :objective.num_concepts]
    baseline = random_directions(learned.shape[0], learned.shape[1], ctx.seed).to(ctx.device)
    results = {}
    for name, directions in (("direction_factor", learned), ("direction_factor_random", baseline)):
        base, changes = factor_changes(objective.source, probe, directions, latents, alphas)
        results[name] = direction_scores(base.cpu(), changes.cpu(), sizes)
    results["direction_factor"]["factor_names"] = list(record["factor_names"])
    settings = {"latents_per_direction": gan.eval_latents, "alphas": alphas.tolist(),
                "probe": str(gan.probe_path), "probe_heldout_accuracy": record["heldout_accuracy"],
                "active_change": ACTIVE_CHANGE}
    return Evaluation(results, settings)
