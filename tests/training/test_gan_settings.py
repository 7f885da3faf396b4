"""The pretrained-GAN settings end to end on random tiny generators: each entry script trains,
writes the published checkpoint keys and a traversal grid, and resumes; weights errors are one
line; the generator never trains; BigGAN-deep-256 itself runs one step."""
import json
import math
from fractions import Fraction

import pytest
import torch
from PIL import Image

import main_biggan_based
import main_ffhq_gan_based
import main_gan_based
from tests.training.conftest import build_setting, run_in_process, run_with_output
from training import checkpoint as ckpt
from training.run_log import read_scalars


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py

TINY_GAN = """
get_args.name = 'synthetic_shapes3d'
get_args.data_dir = '{data}'
make_synthetic_shapes3d.size = 32
make_synthetic_shapes3d.factor_sizes = [2, 2, 2, 1, 2, 2]
get_args.batch_size = 4
get_args.hidden = 8
get_args.concepts_num = 3
get_args.lr = 1e-3
get_args.max_steps = 2
get_args.log_interval = 1
get_args.save_interval = 1000
VCT_Encoder.depth = 2
VCT_Encoder.latent_dim = 8
VCT_Encoder.cross_dim_head = 4
VCT_Encoder.latent_heads = 2
VCT_Encoder.latent_dim_head = 4
VCT_Encoder.ce_loss = True
gan_args.generator_weights = 'random'
gan_args.size = 16
gan_args.style_dim = 8
gan_args.n_mlp = 2
gan_args.channels = {{4: 8, 8: 8, 16: 4}}
gan_args.encoder_downsamples = 1
gan_args.biggan_channel_width = 4
gan_args.traversal_range = (-2.0, 2.5, 1.0)
"""
SCRIPTS = {"gan": main_gan_based, "ffhq_gan": main_ffhq_gan_based, "biggan": main_biggan_based}


@pytest.fixture(scope="module")
def gan_config(tmp_path_factory):
    base = tmp_path_factory.mktemp("gan")
    config = base / "tiny_gan_ce.gin"
    config.write_text(TINY_GAN.format(data=base / "data"))
    return config


def entry(setting):
    from training.cli import vct_entry
    return vct_entry(setting)


@pytest.mark.parametrize("setting", ["gan", "ffhq_gan", "biggan"])
def test_each_entry_script_trains_saves_the_published_keys_and_resumes(setting, gan_config, tmp_path, capsys):
    out = tmp_path / "run"
    biggan = ["--gin_bindings", "gan_args.encoder_downsamples = 5"] if setting == "biggan" else []
    code, printed, err = run_with_output(entry(setting), ["--config", gan_config, "--out", out, "--device", "cpu",
                                                          *biggan], capsys)
    assert code == 0, err[-5:]
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(out))
    for key in ("encoder_state_dict", "mlp_state_dict", "encoder_model_clip_state_dict", "optimizer_state_dict"):
        assert key in state
    assert state["setting"] == setting and state["step"] == 2
    assert json.loads((out / "run_args.json").read_text())["setting"] == setting
    grid = Image.open(out / "images" / "traversal_00000002.png")
    side = 256 if setting == "biggan" else 16
    assert grid.size == (2 + 5 * (side + 2), 2 + 3 * (side + 2))  # 5 alphas per row, one row per concept
    assert {"loss", "shift_accuracy"} <= set(read_scalars(out)[2])

    code, err = run_in_process(entry(setting), ["--resume", out, "--max_steps", 3], capsys)
    assert code == 0, err[-5:]
    assert sorted(read_scalars(out)) == [1, 2, 3]
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(out))["step"] == 3


def test_the_entry_scripts_run_their_settings():
    for setting, module in SCRIPTS.items():
        assert f'vct_entry("{setting}")' in open(module.__file__).read()


def test_a_missing_weights_file_is_one_line_naming_what_to_fetch_and_where(gan_config, tmp_path, capsys):
    missing = tmp_path / "gan" / "convert_church_256_config-f.pt"
    code, err = run_in_process(entry("gan"), ["--config", "church_ce.gin", "--out", tmp_path / "r", "--device", "cpu",
                                              "--generator_weights", str(missing), "--gin_bindings",
                                              f"get_args.data_dir = '{tmp_path / 'data'}'"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: StyleGAN2 256 px generator weights not found: ")
    assert str(missing) in err[0] and "stylegan2-church-config-f.pkl" in err[0] and "--generator_weights" in err[0]


def test_a_pickle_is_refused_as_weights(gan_config, tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save({"g_ema": Fraction(1, 3)}, path)  # a pickled object: weights-only loading refuses it
    code, err = run_in_process(entry("gan"), ["--config", gan_config, "--out", tmp_path / "r", "--device", "cpu",
                                              "--generator_weights", str(path)], capsys)
    assert code == 2 and len(err) == 1 and str(path) in err[0], err


def test_without_the_shift_prediction_loss_there_is_nothing_to_train(gan_config, tmp_path, capsys):
    code, err = run_in_process(entry("gan"), ["--config", gan_config, "--out", tmp_path / "r", "--device", "cpu",
                                              "--wo_dis_loss"], capsys)
    assert code == 2 and len(err) == 1 and "shift-prediction" in err[0], err


@pytest.mark.parametrize("binding", ["get_args.dis_weight = 2.0", "get_args.dis_start_step = 10",
                                     "get_args.dis_soft_retokens = True",
                                     "get_args.concept_similarity_weight = 0.5",
                                     "get_args.recon_focal_gamma = 2.0"])
def test_concept_swap_options_are_refused_not_ignored(gan_config, tmp_path, capsys, binding):
    code, err = run_in_process(entry("gan"), ["--config", gan_config, "--out", tmp_path / "r", "--device", "cpu",
                                              "--gin_bindings", binding], capsys)
    assert code == 2 and len(err) == 1, err
    assert binding.split(" =")[0] in err[0] and "do not apply to the GAN settings" in err[0]


def test_a_saved_generator_loads_and_no_gradient_reaches_it(gan_config, tmp_path):
    objective, _ = build_setting("gan", gan_config)
    weights = tmp_path / "g.pt"
    torch.save(objective.source.generator.state_dict(), weights)
    objective, ctx = build_setting("gan", gan_config, [f"gan_args.generator_weights = '{weights}'"])
    generator = objective.source.generator
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-2)
    objective.train()
    assert not generator.training and all(not p.requires_grad for p in generator.parameters())
    loss, _ = objective(torch.zeros(4, 3, 32, 32), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in generator.parameters())
    assert objective.deformator.log_mat_half.grad.abs().sum() > 0  # through the frozen generator
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert all(p.grad is None for p in objective.encoder.fc_layer.parameters())  # published, unused


def test_shift_prediction_loss_is_ln_k_at_init_and_decreases_on_a_fixed_batch(gan_config):
    objective, _ = build_setting("gan", gan_config, ["get_args.concepts_num = 6"])
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=3e-3)
    objective.train()
    losses = []
    for _ in range(15):
        loss, _ = objective(torch.zeros(8, 3, 32, 32), torch.Generator().manual_seed(0))  # the same batch
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] == pytest.approx(math.log(6), rel=0.05)
    assert losses[-1] < losses[0] - 0.05


def test_too_many_concepts_for_the_latent_is_one_line(gan_config, tmp_path, capsys):
    code, err = run_in_process(entry("gan"), ["--config", gan_config, "--out", tmp_path / "r", "--device", "cpu",
                                              "--concepts_num", 9], capsys)
    assert code == 2 and len(err) == 1 and "at most 8" in err[0], err


def test_biggan_deep_256_builds_from_its_config_with_random_weights_and_runs_one_step(gan_config):
    objective, _ = build_setting("biggan", gan_config, ["gan_args.biggan_channel_width = 128",
                                                        "gan_args.encoder_downsamples = 5"])
    model = objective.source.generator
    assert model.config.output_dim == 256 and len(model.generator.layers) == 13  # 12 blocks + attention
    assert sum(p.numel() for p in model.parameters()) > 50_000_000
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-3)
    objective.train()
    loss, logs = objective(torch.zeros(1, 3, 32, 32), torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and objective.deformator.log_mat_half.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("script", ["main_gan_based.py", "main_ffhq_gan_based.py", "main_biggan_based.py"])
def test_help_names_the_settings_config_and_imports_no_torch(script):
    from tests.test_project import help_output
    output = help_output(script)
    assert "--generator_weights" in output
    assert {"main_gan_based.py": "church_ce.gin", "main_ffhq_gan_based.py": "ffhq_low_ce.gin",
            "main_biggan_based.py": "imgnet_ce.gin"}[script] in output
