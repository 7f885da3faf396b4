"""The optimised training step (training/objectives.py + losses.py) computes the same losses
and gradients as the straightforward formulation in reference_step.py, for the same seed."""
import pytest
import torch

from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from tests.training.reference_step import ReferenceVCTStep, make_random_vqvae_informative
from training.objectives import VCTObjective
from training.tokenizers.vq import VQTokenizer

WIDTHS = dict(latent_dim=16, cross_dim_head=8, latent_heads=2, latent_dim_head=8)


def tiny_objective(seed=0, concepts=5, activation_checkpointing=False):
    torch.manual_seed(seed)
    vqvae = VQ_CVAE(d=16, k=12).double().eval()
    images = torch.rand(6, 3, 16, 16, dtype=torch.float64) * 2 - 1
    make_random_vqvae_informative(vqvae, images, seed)
    encoder = VCT_Encoder(z_index_dim=concepts, dim=16, depth=3,
                          activation_checkpointing=activation_checkpointing, **WIDTHS)
    decoder = VCT_Decoder(index_num=12, z_index_dim=16, dim=16, depth=2, ce_loss=True,
                          activation_checkpointing=activation_checkpointing, **WIDTHS)
    with torch.no_grad():  # small logits: the Gumbel samples (and so the distances) vary
        decoder.fc_layer.weight.mul_(0.05)
    objective = VCTObjective(encoder, decoder, VQTokenizer(vqvae)).double().train()
    return objective, images


def grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("seed, activation_checkpointing", [(0, False), (1, False), (0, True)])
def test_optimised_step_matches_straightforward_losses_and_gradients(seed, activation_checkpointing):
    objective, images = tiny_objective(seed, activation_checkpointing=activation_checkpointing)
    loss, logs = objective(images, torch.Generator().manual_seed(seed))
    loss.backward()
    ours = grads(objective)
    assert logs["swaps_kept"].item() == images.shape[0]  # every swap used: the whole loss is compared

    objective.zero_grad(set_to_none=True)
    reference = ReferenceVCTStep(objective.encoder, objective.decoder, objective.tokenizer.vqvae)
    im_loss, dis_loss = reference.losses(images, torch.Generator().manual_seed(seed))
    (im_loss + dis_loss).backward()
    theirs = grads(objective)

    torch.testing.assert_close(logs["im_loss"], im_loss.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(logs["dis_loss"], dis_loss.detach(), rtol=1e-10, atol=1e-12)
    assert dis_loss.item() > 0
    assert ours.keys() == theirs.keys()
    assert not any(name.startswith("setting.") for name in ours)  # the tokenizer stays frozen
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-8, atol=1e-11, msg=name)


def test_gradients_differ_when_the_swaps_differ():
    """The comparison above can fail: another seed's swaps give other encoder gradients."""
    objective, images = tiny_objective(0)
    objective(images, torch.Generator().manual_seed(0))[0].backward()
    first = grads(objective.encoder)
    objective.zero_grad(set_to_none=True)
    objective(images, torch.Generator().manual_seed(5))[0].backward()
    second = grads(objective.encoder)
    assert any(not torch.allclose(first[n], second[n]) for n in first)
