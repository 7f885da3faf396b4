import math

import pytest
import torch

from training.losses import (concept_disentangling_loss, concept_off_axis_share, concept_similarity, sample_swaps,
                             swap_concepts)
from training.tokenizers.vq import gumbel_argmax


def test_gumbel_argmax_samples_the_softmax_distribution():
    probs = torch.tensor([0.1, 0.2, 0.7])
    gen = torch.Generator().manual_seed(0)
    draws = gumbel_argmax(probs.log().expand(200_000, 3), gen)
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    torch.testing.assert_close(freq, probs, atol=5e-3, rtol=0)


def test_gumbel_argmax_is_reproducible_with_a_generator():
    logits = torch.randn(4, 9, 7)
    a = gumbel_argmax(logits, torch.Generator().manual_seed(3))
    b = gumbel_argmax(logits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_sample_swaps_partner_is_never_self_and_covers_others():
    gen = torch.Generator().manual_seed(0)
    concept, partner = sample_swaps(5, 3, gen)
    assert concept.min() >= 0 and concept.max() < 3
    seen = set()
    for _ in range(200):
        concept, partner = sample_swaps(5, 3, gen)
        assert torch.all(partner != torch.arange(5))
        seen.update(zip(range(5), partner.tolist()))
    assert len(seen) == 5 * 4  # every ordered pair (b, s != b) occurs


def test_swap_concepts_replaces_exactly_one_concept_per_sample():
    concepts = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    concept = torch.tensor([1, 3, 0])
    partner = torch.tensor([2, 0, 1])
    swapped = swap_concepts(concepts, concept, partner)
    for b in range(3):
        for j in range(4):
            expected = concepts[partner[b], j] if j == concept[b] else concepts[b, j]
            assert torch.equal(swapped[b, j], expected)


class _IdentitySetting:
    """Detokenize/retokenize that hand the decoder output straight back as tokens."""

    def detokenize(self, decoded, generator=None):
        return decoded

    def retokenize(self, images):
        return images


def test_loss_is_cross_entropy_of_normalised_distances_hand_computed():
    # encoder = identity, decoder = identity: c_org - c_swap differs only at the swapped concept,
    # so d is one-hot at c_b after normalisation, and CE = -log softmax(onehot)[c_b].
    gen = torch.Generator().manual_seed(0)
    concepts = torch.randn(4, 5, 3, requires_grad=True)
    identity = torch.nn.Identity()
    stats = {}
    loss, kept = concept_disentangling_loss(identity, identity, _IdentitySetting(), concepts, gen, stats=stats)
    assert kept == 4
    expected = -math.log(math.e / (math.e + 4))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["swap_accuracy"].item() == 1.0  # the largest distance is always the swapped one
    assert stats["swaps_unseen"].item() == 0.0


def grid_concepts():
    """The full 8 x 8 grid of two factors a, b: concept 0 holds a (one-hot), concept 1 holds b
    (one-hot, offset), concept 2 a rotated, scaled copy of concept 0, concept 3 a constant."""
    a, b = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    c0 = torch.nn.functional.one_hot(a.flatten(), 8).float()
    c1 = torch.nn.functional.one_hot(b.flatten(), 8).float() + 3.0
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))[0]
    c2 = 2.5 * c0 @ rotation
    c3 = torch.full((64, 8), 7.0)
    return torch.stack([c0, c1, c2, c3], dim=1)  # (64, 4, 8)


def test_concept_similarity_counts_copies_and_ignores_independent_and_constant_concepts():
    concepts = grid_concepts()
    independent = concept_similarity(concepts[:, [0, 1]]).item()
    assert 0 <= independent < 0.02  # independent factors: debiased CKA ~0
    # one pair of copies (0, 2) adds exactly 1; the constant concept adds nothing
    assert concept_similarity(concepts).item() == pytest.approx(1.0 + 2 * independent, abs=1e-4)
    assert concept_similarity(concepts[:, [0, 1, 3]]).item() == pytest.approx(independent, abs=1e-6)
    # far from 0 (as concept tokens are) the same numbers: the estimate is centred first
    assert concept_similarity(concepts + 300.0).item() == pytest.approx(concept_similarity(concepts).item(), abs=1e-3)
    concepts.requires_grad_(True)
    concept_similarity(concepts).backward()
    assert torch.isfinite(concepts.grad).all() and concepts.grad[:, 2].abs().sum() > 0


def test_off_axis_share_by_hand():
    # concept 0 varies along one line (variance 36 in all); concept 1 equally along two axes
    # (variance 2 on each): 2 of the 40 units of variance lie off the concepts' own first axes
    line = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [3.0, 0.0], [-3.0, 0.0]])
    plane = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    concepts = torch.stack([line, plane], dim=1) + torch.tensor([5.0, -2.0])  # (4, 2, 2), off centre
    assert concept_off_axis_share(concepts).item() == pytest.approx(2.0 / 40.0, abs=1e-6)
    assert concept_off_axis_share(concepts[:, 1:]).item() == pytest.approx(0.5, abs=1e-6)
    assert concept_off_axis_share(concepts[:, :1]).item() == pytest.approx(0.0, abs=1e-6)
    # the tokens' scale does not change it, so shrinking them cannot lower it
    assert concept_off_axis_share(10.0 * concepts).item() == pytest.approx(2.0 / 40.0, abs=1e-6)
    concepts.requires_grad_(True)
    concept_off_axis_share(concepts).backward()
    assert torch.isfinite(concepts.grad).all() and concepts.grad[:, 1].abs().sum() > 0


def test_swaps_the_tokenizer_cannot_see_are_counted():
    class HalfBlind(_IdentitySetting):  # re-tokenising forgets the second half of the batch
        def retokenize(self, images):
            images = images.clone()
            half = images.shape[0] // 2  # originals, then swapped: swaps 1 and 3 look unchanged
            images[half + 1::2] = images[1:half:2]
            return images
    stats = {}
    identity = torch.nn.Identity()
    concept_disentangling_loss(identity, identity, HalfBlind(), torch.randn(4, 5, 3),
                               torch.Generator().manual_seed(0), stats=stats)
    assert stats["swaps_unseen"].item() == 0.5


def test_swap_accuracy_counts_the_swaps_whose_largest_distance_is_elsewhere():
    class Scrambled(_IdentitySetting):  # re-tokenising moves every concept one place on
        def retokenize(self, images):
            return images.roll(1, dims=1)
    gen = torch.Generator().manual_seed(0)
    stats = {}
    identity = torch.nn.Identity()
    concept_disentangling_loss(identity, identity, Scrambled(), torch.randn(6, 5, 3), gen, stats=stats)
    assert stats["swap_accuracy"].item() == 0.0


def test_swaps_that_change_nothing_are_dropped():
    concepts = torch.ones(3, 2, 4)  # every sample identical: no swap changes anything
    identity = torch.nn.Identity()
    loss, kept = concept_disentangling_loss(identity, identity, _IdentitySetting(), concepts)
    assert kept == 0 and loss.item() == 0.0


class _MixingSetting(_IdentitySetting):
    """Re-tokenising spreads a swap over every token, as a real tokenizer does. (With a
    per-token map only the swapped concept moves, the normalised distance is one-hot whatever
    the weights, and its gradient is zero.)"""

    def retokenize(self, images):
        return images + images.mean(dim=1, keepdim=True)


def test_gradient_flows_only_through_retokenisation():
    torch.manual_seed(0)
    enc = torch.nn.Linear(3, 3)
    dec = torch.nn.Linear(3, 3)
    concepts = torch.randn(4, 5, 3, requires_grad=True)
    loss, _ = concept_disentangling_loss(enc, dec, _MixingSetting(), concepts,
                                         torch.Generator().manual_seed(1))
    loss.backward()
    assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
    assert dec.weight.grad is None  # detokenising is done without gradient
    assert concepts.grad is None
