"""A tiny world for training tests: 32 synthetic Shapes3D images at 32x32, a 2-step VQ-VAE,
and a gin config with minimal widths, made once per test session."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY_SHARED = """
make_synthetic_shapes3d.size = 32
make_synthetic_shapes3d.factor_sizes = [2, 2, 2, 1, 2, 2]
get_args.name = 'synthetic_shapes3d'
get_args.data_dir = '{data}'
get_args.batch_size = 8
get_args.hidden = 16
get_args.k = 8
get_args.shape_num = 64
get_args.vqvae_path = '{vqvae}'
get_args.concepts_num = 4
get_args.lr = 1e-3
get_args.num_epochs = 2
get_args.log_interval = 1
get_args.save_interval = 1000
get_args.evaluate_at_end = False
get_args.eval_interval = 0
VCT_Encoder.depth = 2
VCT_Encoder.latent_dim = 16
VCT_Encoder.cross_dim_head = 8
VCT_Encoder.latent_heads = 2
VCT_Encoder.latent_dim_head = 8
VCT_Decoder.depth = 1
VCT_Decoder.latent_dim = 16
VCT_Decoder.cross_dim_head = 8
VCT_Decoder.latent_heads = 2
VCT_Decoder.latent_dim_head = 8
"""


# The shapes3d tiny world's sizes and widths, on scenes, with the scene metrics on.
TINY_SCENES = TINY_SHARED + """
make_synthetic_scenes.size = 32
make_synthetic_scenes.num = 24
make_synthetic_scenes.num_test = 6
make_synthetic_scenes.progress = False
get_dataset.resolution = 32
get_args.name = 'synthetic_scenes'
get_args.evaluate_at_end = True
get_args.eval_interval = None
MaskDecoder.hidden = 8
MaskDecoder.query_features = 16
scene_evaluation.num_images = 6
scene_evaluation.batch_size = 4
scene_evaluation.grid_images = 2
"""


def make_world(tmp_path_factory, name, config_text, dataset):
    """{'config', 'data', 'vqvae', 'base'}: ``config_text`` (with {data} and {vqvae} filled in)
    as <name>_ce.gin, its synthetic ``dataset`` and a 16-step VQ-VAE trained on it."""
    from training.cli import load_gin
    from training.vqvae_training import VQVAE_EXPORT_NAME, train_vqvae

    base = tmp_path_factory.mktemp(name)
    data, vqvae = base / "data", base / "vqvae" / VQVAE_EXPORT_NAME
    config = base / f"{name}_ce.gin"
    config.write_text(config_text.format(data=data, vqvae=vqvae))
    load_gin([config])  # the synthetic data's size and grid come from the config
    train_vqvae(dataset, data, vqvae.parent, hidden=16, k=8, epochs=1, batch_size=8, max_steps=16,
                device="cpu", log_interval=4)
    return {"config": config, "data": data, "vqvae": vqvae, "base": base}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """32 synthetic Shapes3D images at 32x32 with the TINY_SHARED config."""
    return make_world(tmp_path_factory, "tiny", TINY_SHARED, "synthetic_shapes3d")


def run_script(*args, timeout=300, env=None):
    """Run a python script of the project in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_with_output(main, argv, capsys):
    """(exit code, stdout, stderr lines other than progress bars) of an entry point
    ``main(argv)`` run through run_main in this process (0 when it returns without exiting)."""
    from training.cli import run_main
    try:
        run_main(main, [str(a) for a in argv])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    return code, captured.out, [line for line in lines if not re.search(r"\d+%\|", line)]


def run_in_process(main, argv, capsys):
    """(exit code, stderr lines other than progress bars): ``run_with_output`` without stdout."""
    code, _, err = run_with_output(main, argv, capsys)
    return code, err


def build_setting(setting, config, bindings=(), run_dir=None):
    """(objective, RunContext) of ``setting`` (a registered name, or a Setting instance whose
    state the test reads afterwards) for ``config`` plus gin ``bindings``, on the CPU, as the
    runner builds them."""
    import torch
    from training.config import RunConfig
    from training.data import batches_for, build_dataset
    from training.setting import RunContext, get_setting
    from training.cli import load_gin
    load_gin([config], list(bindings))
    cfg = RunConfig()
    data = build_dataset(cfg.name, cfg.data_dir)
    ctx = RunContext(cfg, data, batches_for(data), torch.device("cpu"), 0, run_dir)
    setting = get_setting(setting) if isinstance(setting, str) else setting
    return setting.build(ctx), ctx
