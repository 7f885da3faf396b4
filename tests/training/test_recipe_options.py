"""The recipe options beyond the published one (each off by default): the learning-rate
schedule and the disentangling loss's weight."""
import math

import pytest
import torch

from tests.training.conftest import build_setting
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
                                               ("dis_weight = 0", "dis_weight")])
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
