"""Bad inputs and faults, table-driven: each stops with exit status 2 and one `error:` line,
and leaves nothing half-written; exact resume survives kills at random moments."""
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import evaluate
from tests.training.conftest import ROOT, run_in_process, run_script
from training import checkpoint as ckpt
from training.run_log import read_scalars
from training.runner import vct_main

BAD_SETTINGS = [
    ("get_args.batch_size = 0", "get_args.batch_size = 0"),
    ("get_args.batch_size = 1", "use batch_size >= 2, or --wo_dis_loss"),
    ("get_args.log_interval = 0", "get_args.log_interval = 0"),
    ("get_args.save_interval = 0", "get_args.save_interval = 0"),
    ("get_args.save_interval = -1", "get_args.save_interval = -1"),
    ("get_args.concepts_num = 0", "get_args.concepts_num = 0"),
    ("get_args.concepts_num = -1", "get_args.concepts_num = -1"),
    ("get_args.lr = 0", "get_args.lr = 0"),
    ("get_args.lr = 'fast'", "get_args.lr = 'fast'"),
    ("get_args.lr = 1e999", "get_args.lr = inf"),
    ("get_args.num_workers = -1", "get_args.num_workers = -1"),
    ("get_args.max_steps = 0", "get_args.max_steps = 0"),
    ("get_args.dis_loss = 'no'", "get_args.dis_loss = 'no'"),
    ("get_args.lr = (", "bad gin configuration"),           # an unclosed bracket
    ("VCT_Encoder.z_index_dim = 30", "bind get_args.concepts_num instead"),
    ("VCT_Decoder.dim = 32", "bind VCT_Encoder.latent_dim instead"),
]


def leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")] if folder.exists() else []


def assert_one_line(code, err, expected):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0], err[0]


@pytest.mark.parametrize("binding, expected", BAD_SETTINGS, ids=[b for b, _ in BAD_SETTINGS])
def test_bad_setting_is_one_line_and_writes_nothing(tiny_world, tmp_path, capsys, binding, expected):
    out = tmp_path / "run"
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", out, "--device", "cpu",
                                          "--max_steps", 2, "--gin_bindings", binding], capsys)
    assert_one_line(code, err, expected)
    assert not (out / "checkpoints").exists() and not leftovers(tmp_path)


def test_bad_files_and_paths_are_one_line(tiny_world, tmp_path, capsys):
    base = ["--config", tiny_world["config"], "--device", "cpu", "--max_steps", 2]
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["--out", a_file / "run"], "Not a directory"),                                  # a path under a file
        (["--out", a_file], "File exists"),                                              # an existing file as --out
        (["--out", "/proc/vct_read_only/run"], "No such file or directory"),             # a folder nobody may create
        (["--out", tmp_path / "r1", "--gin_bindings", f"get_args.vqvae_path = '{listed}'"],
         "is not a VQ-VAE checkpoint"),                                                   # a list as the VQ-VAE
    ]
    for extra, expected in cases:
        code, err = run_in_process(vct_main, base + extra, capsys)
        assert_one_line(code, err, expected)
    code, err = run_in_process(evaluate.main, ["--checkpoint", tiny_world["vqvae"], "--device", "cpu"], capsys)
    assert_one_line(code, err, "is not a VCT checkpoint")
    assert not leftovers(tmp_path)


def started_run(tiny_world, tmp_path, capsys, steps=2):
    out = tmp_path / "run"
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", out, "--device", "cpu",
                                          "--max_steps", steps], capsys)
    assert code == 0, err
    return out


def test_bad_resumes_are_one_line_and_keep_the_run_resumable(tiny_world, tmp_path, capsys):
    out = started_run(tiny_world, tmp_path, capsys)
    config_before = (out / "config.gin").read_text()
    cases = [
        (["--config", tiny_world["config"]], "drop --config"),
        (["--seed", 5], "drop --seed 5"),
        (["--max_steps", 1], "at step 2 already"),
        (["--gin_bindings", "VCT_Encoder.depth = 3"], "does not fit the configured model"),
    ]
    for extra, expected in cases:
        code, err = run_in_process(vct_main, ["--resume", out, "--device", "cpu", *extra], capsys)
        assert_one_line(code, err, expected)
        assert (out / "config.gin").read_text() == config_before  # nothing rewritten by a failed resume
    code, err = run_in_process(vct_main, ["--resume", out, "--device", "cpu", "--max_steps", 3], capsys)
    assert code == 0, err
    assert sorted(read_scalars(out)) == [1, 2, 3]
    assert json.loads((out / "run_args.json").read_text())["config"] == str(tiny_world["config"])

    (out / "run_args.json").write_text("{not json")
    code, err = run_in_process(vct_main, ["--resume", out, "--device", "cpu", "--max_steps", 4], capsys)
    assert_one_line(code, err, "cannot read")


def test_run_dirs_that_cannot_be_resumed_say_what_to_do(tiny_world, tmp_path, capsys):
    code, err = run_in_process(vct_main, ["--resume", tmp_path / "nothing", "--device", "cpu"], capsys)
    assert_one_line(code, err, "not a run directory")
    early = tmp_path / "early"  # killed before its first checkpoint
    early.mkdir()
    (early / "run_args.json").write_text(json.dumps({"setting": "vq", "seed": 0, "precision": "fp32"}))
    code, err = run_in_process(vct_main, ["--resume", early, "--device", "cpu"], capsys)
    assert_one_line(code, err, "stopped before its first checkpoint")


def test_a_torn_scalars_line_does_not_block_a_resume(tiny_world, tmp_path, capsys):
    out = started_run(tiny_world, tmp_path, capsys)
    with open(out / "scalars.jsonl", "a") as f:
        f.write('{"step": 3, "split": "tr')  # a kill in the middle of a log write
    code, err = run_in_process(vct_main, ["--resume", out, "--device", "cpu", "--max_steps", 3], capsys)
    assert code == 0, err
    assert sorted(read_scalars(out)) == [1, 2, 3]


def test_a_second_process_on_a_run_dir_stops_and_the_first_loses_nothing(tiny_world, tmp_path, capsys):
    out = started_run(tiny_world, tmp_path, capsys)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with open(out / ".lock", "a") as held:  # the first process, still running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, err = run_in_process(vct_main, ["--resume", out, "--device", "cpu", "--max_steps", 4], capsys)
        assert_one_line(code, err, "in use by another process")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    assert sorted(read_scalars(out)) == [1, 2]


def test_a_diverging_run_stops_before_saving_a_broken_checkpoint(tiny_world, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", out, "--device", "cpu",
                                          "--max_steps", 8, "--gin_bindings", "get_args.lr = 1e30",
                                          "--gin_bindings", "get_args.save_interval = 2"], capsys)
    assert_one_line(code, err, "the loss is")
    for _, path in ckpt.step_checkpoints(out):
        state = ckpt.load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["encoder_model_state_dict"].values())


def test_an_evaluation_after_retraining_to_the_same_path_scores_the_new_weights(tiny_world, tmp_path, capsys):
    out = started_run(tiny_world, tmp_path, capsys)
    args = ["--checkpoint", out, "--device", "cpu", "--metrics", "mig", "--gin_bindings", "mig.num_train = 64"]
    assert run_in_process(evaluate.main, args, capsys)[0] == 0
    path = ckpt.latest_checkpoint(out)
    state = ckpt.load_checkpoint(path)
    state["encoder_model_state_dict"]["latents"] += 1.0  # other weights, same path, same step
    torch.save(state, path)
    assert run_in_process(evaluate.main, args, capsys)[0] == 0
    assert len(list((out / "eval_cache").iterdir())) == 2  # a second table, not the first one reused


def test_sigterm_keeps_the_newest_checkpoint_and_exits_cleanly(tiny_world, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "main_vct.py", "--config", str(tiny_world["config"]), "--out", str(out),
                             "--device", "cpu", "--max_steps", "400", "--gin_bindings", "get_args.save_interval = 2"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.step_checkpoints(out):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "the newest checkpoint is kept" in err
    assert ckpt.step_checkpoints(out) and not leftovers(out)


def test_kills_at_random_moments_then_resume_give_the_uninterrupted_losses(tiny_world, tmp_path):
    steps = 60
    common = ["main_vct.py", "--config", tiny_world["config"], "--max_steps", str(steps), "--device", "cpu",
              "--gin_bindings", "get_args.save_interval = 3"]
    straight = tmp_path / "straight"
    assert run_script(*common, "--out", straight).returncode == 0
    expected = read_scalars(straight)
    killed = tmp_path / "killed"
    rng = random.Random(0)
    command = [*common, "--out", killed]

    def finished():
        return (killed / "checkpoints" / f"checkpoint_{steps:08d}.pt").exists()

    for _ in range(4):
        proc = subprocess.Popen([sys.executable, *map(str, command)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 5.0))  # start-up, config writes, steps, logs and checkpoints
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if finished():  # a fast machine can finish before the kill
            break
        if ckpt.step_checkpoints(killed):
            command = ["main_vct.py", "--resume", killed, "--device", "cpu"]
        else:  # killed before its first checkpoint: start again
            subprocess.run(["rm", "-rf", str(killed)], check=True)
    if not finished():
        assert run_script(*command).returncode == 0
    got = read_scalars(killed)
    assert sorted(got) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        for name in ("im_loss", "dis_loss", "loss"):
            assert got[step][name] == pytest.approx(expected[step][name], rel=1e-6, abs=1e-7), (step, name)


def test_a_checkpoint_whose_config_imports_foreign_code_is_refused(tiny_world, tmp_path, capsys):
    out = started_run(tiny_world, tmp_path, capsys)
    path = ckpt.latest_checkpoint(out)
    state = ckpt.load_checkpoint(path)
    state["gin_config"] = f"import os\nimport antigravity\n{state['gin_config']}"
    torch.save(state, path)
    for main, argv in ((vct_main, ["--resume", out, "--max_steps", 3]), (evaluate.main, ["--checkpoint", out])):
        code, err = run_in_process(main, [*argv, "--device", "cpu"], capsys)
        assert_one_line(code, err, "imports 'os', which is not a module of this project")


def test_a_tensor_as_the_vqvae_file_is_one_line(tiny_world, tmp_path, capsys):
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", tmp_path / "r", "--device",
                                          "cpu", "--gin_bindings", f"get_args.vqvae_path = '{tensor}'"], capsys)
    assert_one_line(code, err, "is not a VQ-VAE checkpoint")


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["-k", "0"], "-k must be at least 2, got 0"),
    (["--lr", "0"], "--lr must be a finite number above 0"),
])
def test_train_vqvae_bad_numbers_are_one_line(tmp_path, capsys, argv, expected):
    from training.cli import vqvae_main
    code, err = run_in_process(vqvae_main, ["--dataset", "synthetic_shapes3d", "--out", tmp_path / "v", *argv], capsys)
    assert_one_line(code, err, expected)
    assert not (tmp_path / "v").exists()


def test_images_whose_sides_are_not_multiples_of_4_are_one_line(tiny_world, tmp_path, capsys):
    code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--out", tmp_path / "r", "--device", "cpu",
                                          "--gin_bindings", f"get_args.data_dir = '{tmp_path / 'data34'}'",
                                          "--gin_bindings", "make_synthetic_shapes3d.size = 34"], capsys)
    assert_one_line(code, err, "image sides must be multiples of 4; the synthetic_shapes3d images are 34x34")
