"""Export bundles (export.py, training/bundle.py): a tiny trained run exported and loaded back
gives the same concept tokens and, through evaluate.py, the same metrics as its checkpoint,
without its VQ-VAE file or dataset; tied weights survive; nothing in a bundle folder is ever
unpickled; bad folders are one error line; the model card shows the metrics and commands."""
import builtins
import json
import pickle
import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import evaluate
import export
import visualize
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from tests.training.conftest import TINY_SCENES, TINY_SHARED, run_in_process, run_with_output
from training import bundle as bundle_module
from training.bundle import VCTBundle
from training.cli import load_gin
from training.config import RunConfig
from training.data import batches_for, build_dataset
from training.errors import UserError
from training.evaluate_run import load_saved_run
from training.runner import vct_main

pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def write_diverse_vqvae(config, path):
    """An untrained VQ-VAE whose codebook is 8 of its own encoder outputs on the config's images,
    so that different images get different tokens (a random codebook gives every position the
    same code) without training one."""
    load_gin([config])
    cfg = RunConfig()
    batches = batches_for(build_dataset(cfg.name, cfg.data_dir))
    images = batches[np.arange(min(16, len(batches)))][0]
    torch.manual_seed(0)
    vqvae = VQ_CVAE(d=cfg.hidden, k=cfg.k).eval()
    with torch.no_grad():
        vectors = vqvae.encode(images).permute(0, 2, 3, 1).reshape(-1, cfg.hidden)
        vqvae.emb.weight.copy_(vectors[torch.randperm(len(vectors))[:cfg.k]].t())
    torch.save(vqvae.state_dict(), path)
    return images


def trained_and_exported(base, config_text, setting, *bindings):
    """{'run', 'bundle', 'vqvae', 'data', 'images'}: a 2-step run of ``setting`` (evaluated at
    the end) over a diverse untrained VQ-VAE, exported with export.py."""
    config, vqvae = base / "tiny_ce.gin", base / "vqvae.pt"
    config.write_text(config_text.format(data=base / "data", vqvae=vqvae))
    images = write_diverse_vqvae(config, vqvae)
    argv = ["--config", str(config), "--max_steps", "2", "--out", str(base / "run"), "--device", "cpu",
            "--gin_bindings", "get_args.evaluate_at_end = True"]
    for binding in bindings:
        argv += ["--gin_bindings", binding]
    vct_main(argv, setting=setting)
    export.main(["--checkpoint", str(base / "run"), "--out", str(base / "bundle")])
    return {"run": base / "run", "bundle": base / "bundle", "vqvae": vqvae, "data": base / "data", "images": images}


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    """The tiny world's VQ setting, evaluated on MIG (its constant factor rules out DCI)."""
    return trained_and_exported(tmp_path_factory.mktemp("bundle_vq"), TINY_SHARED, "vq",
                                "evaluation.metrics = ['mig']", "mig.num_train = 64")


@contextmanager
def moved_away(*paths):
    """The files or folders are renamed for the block (the bundle must not need them)."""
    for path in paths:
        path.rename(path.with_name(path.name + ".away"))
    try:
        yield
    finally:
        for path in paths:
            path.with_name(path.name + ".away").rename(path)


def checkpoint_objective(run):
    return load_saved_run(run, device="cpu")[2]


def test_a_bundle_gives_the_checkpoints_concepts_without_its_vqvae_or_data(vq_run):
    reference = checkpoint_objective(vq_run["run"])
    images = vq_run["images"]
    expected = reference.encode_images(images)
    assert not torch.equal(expected[0], expected[1])  # the images' tokens differ: a real comparison
    with moved_away(vq_run["vqvae"], vq_run["data"]):
        bundle = VCTBundle.from_pretrained(vq_run["bundle"])
    assert bundle.setting.name == "vq" and bundle.config["step"] == 2
    assert isinstance(bundle.encoder, VCT_Encoder) and isinstance(bundle.decoder, VCT_Decoder)
    assert torch.equal(bundle.encode(images), expected)
    assert torch.equal(bundle.decode(expected), reference.decode_concepts(expected))
    saved_vqvae = torch.load(vq_run["vqvae"], weights_only=True)
    assert torch.equal(bundle.objective.tokenizer.vqvae.emb.weight, saved_vqvae["emb.weight"])


def test_the_bundles_encoder_loads_strictly_into_an_encoder_of_its_gin_config(vq_run):
    from safetensors.torch import load_file
    config = json.loads((vq_run["bundle"] / "config.json").read_text())
    load_gin([], config["export_bindings"], config_text=config["gin_config"], trusted=False)
    cfg = RunConfig()
    encoder = VCT_Encoder(z_index_dim=cfg.concepts_num, dim=cfg.hidden)
    weights = load_file(str(vq_run["bundle"] / "model.safetensors"))
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")},
                            strict=True)
    assert torch.equal(encoder.latents, checkpoint_objective(vq_run["run"]).encoder.latents)


def test_evaluate_and_visualize_take_a_bundle_with_the_runs_numbers(vq_run, tmp_path, capsys):
    code, _, err = run_with_output(evaluate.main, ["--checkpoint", vq_run["run"], "--device", "cpu",
                                                   "--out", tmp_path / "run.json"], capsys)
    assert code == 0, err[-5:]
    code, printed, err = run_with_output(evaluate.main, ["--checkpoint", vq_run["bundle"], "--device", "cpu"], capsys)
    assert code == 0, err[-5:]
    from_bundle = vq_run["bundle"] / "metrics" / "evaluate_model.json"  # the --help's default
    assert f"results: {from_bundle}" in printed
    results = json.loads(from_bundle.read_text())["results"]
    assert results == json.loads((tmp_path / "run.json").read_text())["results"]
    assert np.isfinite(np.asarray(results["mig"]["mutual_information_matrix"], dtype=float)).any()

    code, printed, err = run_with_output(visualize.main, ["--checkpoint", vq_run["bundle"], "--device", "cpu",
                                                          "--out", tmp_path / "v"], capsys)
    assert code == 0, err[-5:]
    assert (tmp_path / "v" / "report" / "traversals.png").is_file()


def test_the_model_card_shows_the_metrics_and_the_commands(vq_run):
    card = (vq_run["bundle"] / "README.md").read_text()
    config = json.loads((vq_run["bundle"] / "config.json").read_text())
    assert config["metrics"]["file"] == "metrics_00000002.json" and "synthetic_shapes3d" in card
    saved = json.loads((vq_run["run"] / "metrics" / "metrics_00000002.json").read_text())["results"]
    assert config["metrics"]["results"] == saved
    value = saved["mig"]["discrete_mig"]
    assert f"| mig | discrete_mig | {'n/a' if value is None else f'{value:.4f}'} |" in card
    folder = str(vq_run["bundle"])
    for command in (f"python evaluate.py --checkpoint {folder}", f"python visualize.py --checkpoint {folder}",
                    f'VCTBundle.from_pretrained("{folder}")', f"hf upload USER/REPO {folder}", "upload_folder("):
        assert command in card, command
    assert config["provenance"]["export"]["git_commit"] in card and "steps | 2 |" in card


class WritesMarker:
    """Unpickling this creates the marker file (open(marker, 'w'))."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


PICKLE_NAMES = ("model.pt", "pytorch_model.bin", "model.bin", "model.pkl", "checkpoint.pt", "vqvae.pt",
                "checkpoints/checkpoint_00000002.pt")


def test_pickles_in_a_bundle_folder_are_never_unpickled(vq_run, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(WritesMarker(marker))
    pickle.loads(payload)  # the payload works: loading it makes the marker
    assert marker.is_file()
    marker.unlink()
    folder = tmp_path / "bundle"
    shutil.copytree(vq_run["bundle"], folder)
    for name in PICKLE_NAMES:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(payload)
    VCTBundle.from_pretrained(folder)
    code, _, err = run_with_output(evaluate.main, ["--checkpoint", folder, "--device", "cpu", "--out",
                                                   tmp_path / "e.json"], capsys)
    assert code == 0, err[-5:]
    assert not marker.exists()

    for name in ("model.safetensors", "config.json"):  # a pickle under the names a bundle is read from
        broken = tmp_path / f"broken_{name}"
        shutil.copytree(vq_run["bundle"], broken)
        (broken / name).write_bytes(payload)
        with pytest.raises(UserError, match=name):
            VCTBundle.from_pretrained(broken)
        code, _, err = run_with_output(evaluate.main, ["--checkpoint", broken, "--device", "cpu"], capsys)
        assert code == 2 and len(err) == 1 and name in err[0], err
    assert not marker.exists()


def test_a_hub_id_fetches_only_the_bundles_files(vq_run, monkeypatch):
    import huggingface_hub
    calls = []

    def offline_snapshot(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(vq_run["bundle"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline_snapshot)
    assert VCTBundle.from_pretrained("someone/vct-toy", revision="v1").config["step"] == 2
    assert calls == [("someone/vct-toy", "v1", ["model.safetensors", "config.json", "README.md"])]


def test_bad_folders_and_paths_are_one_error_line(vq_run, tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # no model.safetensors: no bundle
    for script in (evaluate, visualize):
        for path in (tmp_path / "half", tmp_path / "missing"):
            code, _, err = run_with_output(script.main, ["--checkpoint", path, "--device", "cpu"], capsys)
            assert code == 2 and len(err) == 1 and str(path) in err[0], (script, err)
    with pytest.raises(UserError, match="neither a bundle folder nor a Hugging Face repo id"):
        VCTBundle.from_pretrained(tmp_path / "missing")
    with pytest.raises(UserError, match="not a VCT bundle"):
        VCTBundle.from_pretrained(tmp_path / "half")
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "x").write_text("")
    for checkpoint, out, says in ((tmp_path / "missing", tmp_path / "o", "not found"),
                                  (vq_run["run"], tmp_path / "nonempty", "not empty"),
                                  (vq_run["bundle"], tmp_path / "o2", "a bundle already")):
        code, err = run_in_process(export.main, ["--checkpoint", checkpoint, "--out", out], capsys)
        assert code == 2 and len(err) == 1 and says in err[0], err
    config = json.loads((vq_run["bundle"] / "config.json").read_text())
    newer = tmp_path / "newer"
    shutil.copytree(vq_run["bundle"], newer, ignore=shutil.ignore_patterns("metrics", "eval_cache"))
    (newer / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(UserError, match="newer than this code reads"):
        VCTBundle.from_pretrained(newer)
    (newer / "config.json").write_text(json.dumps({**config, "pinned_bindings": ["import os"]}))
    with pytest.raises(UserError, match="not a module of this project"):
        VCTBundle.from_pretrained(newer)


def test_tied_weights_are_stored_once_and_loaded_back(tmp_path):
    encoder = VCT_Encoder(z_index_dim=3, dim=8, depth=3, latent_dim=16, latent_heads=2, latent_dim_head=8,
                          cross_dim_head=8, weight_tie_layers=True)
    tensors, metadata = bundle_module.safetensors_state(encoder)
    aliases = json.loads(metadata["aliases"])
    assert aliases and set(aliases.values()) <= set(tensors) and not set(aliases) & set(tensors)
    from safetensors.torch import save_file
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata=metadata)
    fresh = VCT_Encoder(z_index_dim=3, dim=8, depth=3, latent_dim=16, latent_heads=2, latent_dim_head=8,
                        cross_dim_head=8, weight_tie_layers=True)
    bundle_module.load_weights(fresh, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), encoder.state_dict().values()))


def test_a_mask_bundle_gives_the_checkpoints_decomposition(tmp_path_factory):
    run = trained_and_exported(tmp_path_factory.mktemp("bundle_mask"), TINY_SCENES, "mask")
    reference = checkpoint_objective(run["run"])
    images = run["images"][:4]
    with moved_away(run["vqvae"], run["data"]):
        bundle = VCTBundle.from_pretrained(run["bundle"])
    assert bundle.setting.name == "mask"
    assert torch.equal(bundle.encode(images), reference.encode_images(images))
    assert torch.equal(bundle.objective.concept_masks(images), reference.concept_masks(images))
    config = json.loads((run["bundle"] / "config.json").read_text())
    assert "scene_decomposition" in config["metrics"]["results"]


# A small CLIP tower with random weights and GELU (the bundle pins the activation it was built with).
TINY_CLIP = TINY_SHARED + """
get_args.clip_weights = 'random:2'
get_args.clip_cache_dir = ''
get_args.concepts_num_clip = 2
get_args.batch_size = 2
clip_tower.model_name = 'ViT-S-32'
clip_tower.quick_gelu = False
"""


def test_a_clip_bundle_holds_its_tower_and_checks_what_rebuilds_it(tmp_path_factory):
    run = trained_and_exported(tmp_path_factory.mktemp("bundle_clip"), TINY_CLIP, "clip", "get_args.max_steps = 1",
                               "get_args.evaluate_at_end = False")
    reference = checkpoint_objective(run["run"])
    images = run["images"][:2]
    with moved_away(run["vqvae"], run["data"]):
        bundle = VCTBundle.from_pretrained(run["bundle"])
    assert torch.equal(bundle.encode(images), reference.encode_images(images))
    assert bundle.objective.tokenizer.clip.features_id == reference.tokenizer.clip.features_id
    config = json.loads((run["bundle"] / "config.json").read_text())
    assert config["pinned_bindings"] == ["clip_tower.quick_gelu = False"]
    # another activation is another model: the features id recorded in the bundle tells
    other_activation = {**config, "pinned_bindings": ["clip_tower.quick_gelu = True"]}
    (run["bundle"] / "config.json").write_text(json.dumps(other_activation))
    with pytest.raises(UserError, match="clip_features_id"):
        VCTBundle.from_pretrained(run["bundle"])


def test_a_checkpoint_without_its_gin_configuration_exports_with_config(vq_run, tmp_path):
    old = tmp_path / "old_run" / "checkpoints"
    old.mkdir(parents=True)
    state = torch.load(sorted((vq_run["run"] / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    del state["gin_config"]  # as saved before checkpoints held their configuration
    torch.save(state, old / "checkpoint_00000002.pt")
    with pytest.raises(UserError, match="pass the run's --config"):
        export.main(["--checkpoint", str(old.parent), "--out", str(tmp_path / "refused")])
    export.main(["--checkpoint", str(old.parent), "--out", str(tmp_path / "bundle"),
                 "--config", str(vq_run["run"].parent / "tiny_ce.gin")])
    bundle = VCTBundle.from_pretrained(tmp_path / "bundle")
    images = vq_run["images"]
    assert torch.equal(bundle.encode(images), checkpoint_objective(vq_run["run"]).encode_images(images))
