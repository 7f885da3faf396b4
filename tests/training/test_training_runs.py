import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.training.conftest import ROOT, build_setting, run_in_process, run_script
from training.config import RunConfig
from training.data import StepBatchSampler
from training.run_log import read_scalars
from training.runner import vct_main
from training.visualize import swap_grid


def tiny_objective(tiny_world, *bindings):
    objective, ctx = build_setting("vq", tiny_world["config"], bindings)
    return objective, ctx.batches, ctx.cfg


def test_training_steps_reduce_loss_on_a_fixed_batch(tiny_world):
    torch.manual_seed(0)
    objective, batches, _ = tiny_objective(tiny_world)
    images = batches[np.arange(8)][0]
    params = list(objective.encoder.parameters()) + list(objective.decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    objective.use_dis_loss = False
    first = objective(images, gen)[1]["im_loss"].item()
    for _ in range(15):
        loss, _ = objective(images, gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert objective(images, gen)[1]["im_loss"].item() < 0.8 * first


def test_dis_loss_is_on_by_default_and_off_with_flag(tiny_world):
    # (a 16-step tokenizer gives near-identical concepts, so no swap passes the default 1e-3)
    objective, batches, cfg = tiny_objective(tiny_world, "get_args.swap_min_change = 0.0")
    images = batches[np.arange(8)][0]
    assert RunConfig().dis_loss
    loss, logs = objective(images, torch.Generator().manual_seed(0))
    assert "dis_loss" in logs and logs["dis_loss"].item() > 0 and logs["swaps_kept"].item() == 8
    assert loss.item() == pytest.approx((logs["im_loss"] + logs["dis_loss"]).item(), rel=1e-6)
    objective, _, cfg = tiny_objective(tiny_world, "get_args.dis_loss = False")
    loss, logs = objective(images, torch.Generator().manual_seed(0))
    assert "dis_loss" not in logs and loss.item() == pytest.approx(logs["im_loss"].item())


def test_swap_grid_has_documented_shape(tiny_world):
    objective, batches, cfg = tiny_objective(tiny_world)
    sources = batches[np.arange(3)][0]
    grid = swap_grid(objective.encode_images, objective.decode_concepts, sources, sources.roll(1, 0), pad=2)
    rows, columns = 3, cfg.concepts_num + 2
    assert grid.shape == (3, rows * (32 + 2) + 2, columns * (32 + 2) + 2)
    assert 0 <= grid.min() and grid.max() <= 1
    # column 0 is the source image itself
    torch.testing.assert_close(grid[:, 2:34, 2:34], ((sources[0] + 1) / 2).clamp(0, 1))


def test_batch_order_is_deterministic_resumable_and_disjoint_across_ranks():
    full = StepBatchSampler(100, 8, seed=3, start_step=0, total_steps=30)
    resumed = StepBatchSampler(100, 8, seed=3, start_step=17, total_steps=30)
    assert [b.tolist() for b in full][17:] == [b.tolist() for b in resumed]
    r0 = StepBatchSampler(100, 8, seed=3, start_step=0, total_steps=6, rank=0, world_size=2)
    r1 = StepBatchSampler(100, 8, seed=3, start_step=0, total_steps=6, rank=1, world_size=2)
    for a, b in zip(r0, r1):
        assert not set(a.tolist()) & set(b.tolist())


def run_vct_in_process(argv, capsys):
    return run_in_process(vct_main, argv, capsys)


def test_missing_config_is_one_clear_line(capsys, tmp_path):
    code, err = run_vct_in_process(["--config", "no_such_config.gin", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and len(err) == 1 and "config 'no_such_config.gin' not found" in err[0]


def test_unknown_gin_binding_is_one_clear_line(tiny_world, capsys, tmp_path):
    code, err = run_vct_in_process(["--config", str(tiny_world["config"]), "--out", str(tmp_path / "r"),
                                    "--gin_bindings", "get_args.no_such_setting = 3"], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: bad gin configuration") and "no_such_setting" in err[0]


def test_missing_vqvae_checkpoint_is_one_clear_line(tiny_world, capsys, tmp_path):
    code, err = run_vct_in_process(["--config", str(tiny_world["config"]), "--out", str(tmp_path / "r"),
                                    "--gin_bindings", f"get_args.vqvae_path = '{tmp_path}/none.pt'"], capsys)
    assert code == 2 and len(err) == 1 and "VQ-VAE checkpoint not found" in err[0]


def test_vqvae_checkpoint_of_other_size_is_one_clear_line(tiny_world, capsys, tmp_path):
    code, err = run_vct_in_process(["--config", str(tiny_world["config"]), "--out", str(tmp_path / "r"),
                                    "--gin_bindings", "get_args.hidden = 32"], capsys)
    assert code == 2 and len(err) == 1
    assert "does not fit the configured model" in err[0] and "d=32" in err[0]


def test_corrupt_vqvae_checkpoint_is_one_clear_line(tiny_world, capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_world["vqvae"].read_bytes()[:200])
    code, err = run_vct_in_process(["--config", str(tiny_world["config"]), "--out", str(tmp_path / "r"),
                                    "--gin_bindings", f"get_args.vqvae_path = '{bad}'"], capsys)
    assert code == 2 and len(err) == 1 and "cannot read checkpoint" in err[0]


def test_existing_run_directory_is_not_overwritten(tiny_world, capsys, tmp_path):
    out = tmp_path / "r"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint_00000005.pt").write_bytes(b"x")
    code, err = run_vct_in_process(["--config", str(tiny_world["config"]), "--out", str(out)], capsys)
    assert code == 2 and "--resume" in err[0]


def test_sigkill_and_resume_reproduce_uninterrupted_losses(tiny_world, tmp_path):
    common = ["main_vct.py", "--config", tiny_world["config"], "--max_steps", "40",
              "--gin_bindings", "get_args.save_interval = 4", "--device", "cpu"]
    straight = tmp_path / "straight"
    done = run_script(*common, "--out", straight)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = read_scalars(straight)
    assert sorted(expected) == list(range(1, 41))
    # Throughput diagnostics logged with the losses: loader wait share and peak memory.
    assert 0.0 <= expected[40]["data_wait_fraction"] < 1.0
    assert 0.1 < expected[40]["peak_rss_gb"] < 8.0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *map(str, common), "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((killed / "checkpoints").glob("checkpoint_*.pt")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted((killed / "checkpoints").glob("checkpoint_*.pt"))
    assert saved and not (killed / "checkpoints" / "checkpoint_00000040.pt").exists(), \
        "the run finished before it could be killed"
    resumed = run_script("main_vct.py", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = read_scalars(killed)
    assert sorted(got) == list(range(1, 41))
    for step in range(1, 41):
        for name in ("im_loss", "dis_loss", "loss"):
            assert got[step][name] == pytest.approx(expected[step][name], rel=1e-6, abs=1e-7), (step, name)


def test_two_process_gloo_run_keeps_ranks_identical(tiny_world, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = run_script("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                        "main_vct.py", "--config", tiny_world["config"], "--max_steps", "3",
                        "--device", "cpu", "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads((out / "distributed_check.json").read_text())
    assert check["world_size"] == 2 and check["step"] == 3
    assert check["checksums"][0] == check["checksums"][1]
    assert (out / "checkpoints" / "checkpoint_00000003.pt").exists()


def test_evaluations_and_checkpoints_do_not_change_the_training(tiny_world, tmp_path):
    # The evaluation hooks encode the dataset and fit metrics mid-run; if they drew from the
    # training RNG or changed the model, the steps after them would change, and a config's
    # save_interval would silently change its results.
    common = ["main_vct.py", "--config", tiny_world["config"], "--max_steps", "12", "--device", "cpu",
              "--gin_bindings", "evaluation.metrics = ['mig']", "--gin_bindings", "mig.num_train = 64",
              # (a 16-step tokenizer gives near-identical concepts: without this no swap is kept
              # and the steps would draw no random numbers at all)
              "--gin_bindings", "get_args.swap_min_change = 0.0"]
    hooked = run_script(*common, "--out", tmp_path / "hooked", "--gin_bindings", "get_args.save_interval = 4",
                        "--gin_bindings", "get_args.eval_interval = 4")
    assert hooked.returncode == 0, hooked.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "hooked" / "metrics").glob("metrics_*.json"))[:2] == [
        "metrics_00000004.json", "metrics_00000008.json"]
    quiet = run_script(*common, "--out", tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not list((tmp_path / "quiet" / "metrics").glob("metrics_*.json"))
    hooked_losses, quiet_losses = read_scalars(tmp_path / "hooked"), read_scalars(tmp_path / "quiet")
    assert sorted(hooked_losses) == sorted(quiet_losses) == list(range(1, 13))
    assert all(quiet_losses[step]["swaps_kept"] > 0 for step in range(1, 13))
    for step in range(1, 13):
        # (the swap statistics show which swaps and Gumbel draws a step made)
        for name in ("im_loss", "dis_loss", "loss", "swaps_kept", "swap_accuracy"):
            assert hooked_losses[step][name] == quiet_losses[step][name], (step, name)
