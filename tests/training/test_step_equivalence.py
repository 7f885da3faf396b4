"""The optimised training step (training/objectives.py + losses.py) computes the same losses
and gradients as the straightforward formulation in reference_step.py, for the same seed."""
import pytest
import torch

from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from tests.training.reference_step import ReferenceVCTStep, make_random_vqvae_informative
from training.engine import staged_forward_backward
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


@pytest.mark.parametrize("seed, activation_checkpointing",
                         [(0, False), (1, False), (0, True), (0, "elementwise"), (0, "auto")])
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


@pytest.mark.parametrize("activation_checkpointing", [False, "elementwise"])
def test_staged_backward_gives_the_joint_losses_and_gradients(activation_checkpointing):
    """Backpropagating loss_stages one at a time (the engine's step in one process) gives the
    joint backward of forward's summed loss."""
    objective, images = tiny_objective(2, activation_checkpointing=activation_checkpointing)
    loss, logs = objective(images, torch.Generator().manual_seed(2))
    loss.backward()
    joint = grads(objective)
    objective.zero_grad(set_to_none=True)
    pauses = []
    staged_loss, staged_logs = staged_forward_backward(
        objective, images, torch.Generator().manual_seed(2), None, between_stages=lambda: pauses.append(1))
    staged = grads(objective)
    assert len(pauses) == 2  # reconstruction, then disentangling
    torch.testing.assert_close(staged_loss, loss.detach(), rtol=1e-12, atol=0)
    for name in ("loss", "im_loss", "dis_loss", "swaps_kept"):
        torch.testing.assert_close(staged_logs[name], logs[name], rtol=1e-12, atol=0)
    assert joint.keys() == staged.keys()
    for name in joint:
        torch.testing.assert_close(staged[name], joint[name], rtol=1e-10, atol=1e-13, msg=name)


def test_staged_backward_skips_a_stage_without_gradient():
    """No swap kept (a batch of one): the disentangling stage is a constant 0, as in forward."""
    objective, images = tiny_objective(0)
    loss, logs = staged_forward_backward(objective, images[:1], torch.Generator().manual_seed(0), None)
    assert logs["swaps_kept"].item() == 0 and logs["dis_loss"].item() == 0
    torch.testing.assert_close(loss, logs["im_loss"], rtol=0, atol=0)
    assert objective.decoder.fc_layer.weight.grad is not None  # the reconstruction stage ran


def peak_live_bytes(fn):
    """The most tensor memory alive at once while ``fn()`` runs, above what was alive before
    (from the profiler's allocation events)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def test_staged_backward_and_recomputation_lower_the_step_peak():
    """The point of both: the staged step holds the larger stage, not the sum, and element-wise
    recomputation keeps less of each block; together well under the joint step's peak."""
    def step(mode, staged):
        torch.manual_seed(0)
        vqvae = VQ_CVAE(d=32, k=16).eval()
        images = torch.rand(16, 3, 32, 32) * 2 - 1
        make_random_vqvae_informative(vqvae, images, 0)
        widths = dict(latent_dim=32, cross_dim_head=16, latent_heads=2, latent_dim_head=16)
        encoder = VCT_Encoder(z_index_dim=4, dim=32, depth=3, activation_checkpointing=mode, **widths)
        decoder = VCT_Decoder(index_num=16, z_index_dim=64, dim=32, depth=2, ce_loss=True,
                              activation_checkpointing=mode, **widths)
        objective = VCTObjective(encoder, decoder, VQTokenizer(vqvae)).train()
        generator = torch.Generator().manual_seed(0)
        if staged:
            return lambda: staged_forward_backward(objective, images, generator, None)
        return lambda: objective(images, generator)[0].backward()

    joint = peak_live_bytes(step(False, False))
    staged = peak_live_bytes(step(False, True))
    lean = peak_live_bytes(step("elementwise", True))
    assert staged < 0.8 * joint
    assert lean < 0.8 * staged


def test_auto_recomputes_only_large_blocks(monkeypatch):
    import models.visual_concept_tokenizor as vct
    calls = []
    real = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint",
                        lambda *a, **k: calls.append("context_fn" in k) or real(*a, **k))
    objective, images = tiny_objective(0, activation_checkpointing="auto")
    objective(images, torch.Generator().manual_seed(0))[0].backward()
    assert calls == []  # tiny blocks: nothing recomputed
    auto = grads(objective)
    objective.zero_grad(set_to_none=True)
    monkeypatch.setattr(vct, "AUTO_RECOMPUTE_MIN_VALUES", 1)
    objective(images, torch.Generator().manual_seed(0))[0].backward()
    assert calls and all(calls)  # every block, and selectively (with the keep-products policy)
    for name, grad in grads(objective).items():
        torch.testing.assert_close(grad, auto[name], rtol=1e-10, atol=1e-13, msg=name)


def test_auto_leaves_accelerator_blocks_alone(monkeypatch):
    """Off the CPU 'auto' keeps everything (a meta-device encoder stands in for a GPU one)."""
    import models.visual_concept_tokenizor as vct
    calls = []
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(vct, "AUTO_RECOMPUTE_MIN_VALUES", 1)
    encoder = VCT_Encoder(z_index_dim=3, dim=16, depth=2, **WIDTHS).to("meta")
    encoder(torch.randn(2, 16, 16, device="meta", requires_grad=True))
    assert calls == []


def test_a_bad_checkpointing_mode_is_refused():
    with pytest.raises(ValueError, match="VCT_Encoder.activation_checkpointing = 'yes'"):
        VCT_Encoder(activation_checkpointing="yes")
    with pytest.raises(ValueError, match="VCT_Decoder.activation_checkpointing = 2"):
        VCT_Decoder(activation_checkpointing=2)


def test_gradients_differ_when_the_swaps_differ():
    """The comparison above can fail: another seed's swaps give other encoder gradients."""
    objective, images = tiny_objective(0)
    objective(images, torch.Generator().manual_seed(0))[0].backward()
    first = grads(objective.encoder)
    objective.zero_grad(set_to_none=True)
    objective(images, torch.Generator().manual_seed(5))[0].backward()
    second = grads(objective.encoder)
    assert any(not torch.allclose(first[n], second[n]) for n in first)
