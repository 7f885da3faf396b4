"""The recipe options beyond the published one (each off by default): the learning-rate
schedule, the disentangling loss's weight and its start step."""
import json
import math

import pytest
import torch

from tests.training.conftest import build_setting, run_in_process
from training.config import RunConfig
from training.errors import UserError
from training.runner import lr_scheduler


def rates(schedule, warmup, total, lr=1.0):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = lr_scheduler(optimizer, schedule, warmup, total)
    if scheduler is None:
        return None
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_the_published_constant_rate_has_no_scheduler():
    assert rates("constant", 0, 5) is None


def test_warm_up_then_cosine_by_hand():
    seen = rates("cosine", 2, 6)
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert seen == pytest.approx(expected)
    assert rates("constant", 3, 5) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("binding, fragment", [("lr_schedule = 'linear'", "lr_schedule"),
                                               ("lr_warmup_steps = -1", "lr_warmup_steps"),
                                               ("dis_weight = 0", "dis_weight"),
                                               ("dis_start_step = -1", "dis_start_step"),
                                               ("concept_similarity_weight = -1.0", "concept_similarity_weight"),
                                               ("concept_axis_weight = -1.0", "concept_axis_weight"),
                                               ("recon_focal_gamma = -1.0", "recon_focal_gamma"),
                                               ("concept_similarity_weight = False", "concept_similarity_weight")])
def test_bad_recipe_values_are_one_line(binding, fragment):
    field, value = (part.strip() for part in binding.split("="))
    with pytest.raises(UserError, match=fragment):
        RunConfig(**{field: eval(value)})


def test_the_dis_weight_scales_the_disentangling_loss(tiny_world, one_cpu_thread):
    losses = {}
    for weight in (1.0, 0.25):
        torch.manual_seed(0)  # the same initial weights for both
        objective, ctx = build_setting("vq", tiny_world["config"], [f"get_args.dis_weight = {weight}"])
        images = ctx.batches[list(range(8))][0]
        loss, logs = objective(images, torch.Generator().manual_seed(0))
        assert logs["dis_loss"] > 0
        losses[weight] = (loss.item(), logs["im_loss"].item(), logs["dis_loss"].item())
    (total, im, dis), (total_q, im_q, dis_q) = losses[1.0], losses[0.25]
    assert (im, dis) == pytest.approx((im_q, dis_q))  # same weights, same swaps
    assert total == pytest.approx(im + dis) and total_q == pytest.approx(im + 0.25 * dis)


def test_the_concept_similarity_penalty_refuses_a_batch_below_four():
    with pytest.raises(UserError, match="batch_size >= 4"):
        RunConfig(concept_similarity_weight=0.1, batch_size=3)
    RunConfig(concept_similarity_weight=0.1, batch_size=4)
    RunConfig(batch_size=3)  # without the penalty a batch of 3 is fine


@pytest.mark.parametrize("option, logged", [("concept_similarity_weight", "concept_similarity"),
                                            ("concept_axis_weight", "concept_off_axis")])
def test_a_concept_penalty_weight_adds_the_penalty_to_the_first_stage(tiny_world, one_cpu_thread, option, logged):
    seen = {}
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        objective, ctx = build_setting("vq", tiny_world["config"], [f"get_args.{option} = {weight}"])
        images = ctx.batches[list(range(8))][0]
        logs = {}
        stages = list(objective.loss_stages(images, torch.Generator().manual_seed(0), logs=logs))
        seen[weight] = (stages[0].item(), logs)
    (plain, plain_logs), (penalised, logs) = seen[0.0], seen[0.5]
    assert logged not in plain_logs and plain == pytest.approx(plain_logs["im_loss"].item())
    assert logs[logged] > 0
    assert penalised == pytest.approx(logs["im_loss"].item() + 0.5 * logs[logged].item())


def test_no_disentangling_loss_before_its_start_step(tiny_world, one_cpu_thread):
    torch.manual_seed(0)
    objective, ctx = build_setting("vq", tiny_world["config"], ["get_args.dis_start_step = 3"])
    images = ctx.batches[list(range(8))][0]
    seen = {}
    for step in (0, 2, 3, 7):
        objective.at_step(step)
        loss, logs = objective(images, torch.Generator().manual_seed(0))
        seen[step] = (loss.item(), logs["im_loss"].item(), "dis_loss" in logs)
    for step in (0, 2):  # before: the reconstruction loss alone
        assert not seen[step][2] and seen[step][0] == pytest.approx(seen[step][1])
    for step in (3, 7):  # from the start step on: the published loss
        assert seen[step][2] and seen[step][0] > seen[step][1] + 0.1
    assert objective.dis_start_step == 3


def test_a_run_logs_the_disentangling_loss_from_its_start_step_on(tiny_world, tmp_path, capsys, one_cpu_thread):
    from training.runner import vct_main
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", tmp_path / "r", "--device", "cpu",
                                          "--max_steps", 4, "--gin_bindings", "get_args.evaluate_at_end = False", "--gin_bindings",
                                          "get_args.dis_start_step = 2", "--gin_bindings", "get_args.log_interval = 1"],
                               capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "r" / "scalars.jsonl").read_text().splitlines()]
    logged = {row["step"]: "dis_loss" in row for row in rows if "im_loss" in row}
    assert logged == {1: False, 2: False, 3: True, 4: True}  # steps 0 and 1 ran without it


def test_soft_retokens_are_the_unquantised_encoder_vectors(tiny_world, one_cpu_thread):
    objective, ctx = build_setting("vq", tiny_world["config"], ["get_args.dis_soft_retokens = True"])
    tokenizer = objective.tokenizer
    images = ctx.batches[list(range(4))][0]
    soft = tokenizer.retokenize(images)
    with torch.no_grad():
        z_e = tokenizer.vqvae.encode(images)
        quantised, codes = tokenizer.vqvae.tokenize(images)
    assert soft.shape == quantised.shape
    torch.testing.assert_close(soft, z_e.flatten(2).transpose(1, 2))
    assert not torch.allclose(soft, quantised)
    # the training tokens and targets stay the quantised ones
    tokens, targets = tokenizer.tokenize(images)
    torch.testing.assert_close(tokens, quantised)
    assert torch.equal(targets, codes)
    published, _ = build_setting("vq", tiny_world["config"])
    torch.testing.assert_close(published.tokenizer.retokenize(images), quantised)


def test_a_start_step_at_or_after_the_last_step_is_refused(tiny_world, tmp_path, capsys, one_cpu_thread):
    from training.runner import vct_main
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", tmp_path / "r", "--device", "cpu",
                                          "--max_steps", 4, "--gin_bindings", "get_args.dis_start_step = 4"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "get_args.dis_start_step = 4" in err[0] and "(4)" in err[0] and "--wo_dis_loss" in err[0]
    assert not (tmp_path / "r" / "checkpoints").exists()  # refused before anything was trained


def test_focal_reconstruction_loss_by_hand():
    from training.tokenizers.vq import VQTokenizer
    from models.vqvae import VQ_CVAE
    # two images of two tokens, three codes: p(target) = 0.5, 0.9, 0.2, 0.7
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.05, 0.9, 0.05]],
                          [[0.4, 0.4, 0.2], [0.1, 0.2, 0.7]]], dtype=torch.float64)
    targets = torch.tensor([[0, 1], [2, 2]])
    logits = probs.log().requires_grad_(True)
    vqvae = VQ_CVAE(d=4, k=3)
    assert VQTokenizer(vqvae).reconstruction_loss(logits, targets).item() == pytest.approx(
        -math.log(0.5 * 0.9 * 0.2 * 0.7) / 4)  # gamma 0: the published mean CE
    p = [0.5, 0.9, 0.2, 0.7]
    weights = [(1 - q) ** 2 for q in p]
    expected = sum(w * -math.log(q) for w, q in zip(weights, p)) / sum(weights)
    loss = VQTokenizer(vqvae, focal_gamma=2.0).reconstruction_loss(logits, targets)
    assert loss.item() == pytest.approx(expected)
    assert expected > -math.log(0.5 * 0.9 * 0.2 * 0.7) / 4  # the poorly predicted tokens weigh more
    # the weights are constants: the gradient is the weighted mean of the per-token CE gradients
    loss.backward()
    token_grad = (probs - torch.nn.functional.one_hot(targets, 3)) * torch.tensor(weights).view(2, 2, 1)
    torch.testing.assert_close(logits.grad, token_grad / sum(weights))


def test_focal_gamma_reaches_the_vq_tokenizer(tiny_world, one_cpu_thread):
    objective, _ = build_setting("vq", tiny_world["config"], ["get_args.recon_focal_gamma = 1.5"])
    assert objective.tokenizer.focal_gamma == 1.5
    published, _ = build_setting("vq", tiny_world["config"])
    assert published.tokenizer.focal_gamma == 0.0
