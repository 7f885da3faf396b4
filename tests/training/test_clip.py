"""The CLIP setting (main_vct_clip.py) with random CLIP weights: the whole pipeline's shapes,
the frozen tower, the per-image feature cache (hit on the second epoch, shared with the next
run, invalidated by other weights, safe against half-written rows), where the weights come
from (file, tag, clear errors) and the entry script with --resume."""
import copy
import json

import numpy as np
import pytest
import torch

import training.tokenizers.clip_weights
from models.clip_tokenizer import CLIPImageTokenizer, clip_image_tower, state_sha256
from tests.training.conftest import build_setting, run_in_process, run_script, run_with_output
from training import checkpoint as ckpt
from training.cli import load_gin, run_main
from training.data import GroundTruthBatches, StepBatchSampler, build_dataset
from training.errors import UserError
from training.runner import vct_main
from training.tokenizers.clip import CLIPTokenizer
from training.tokenizers.clip_cache import CLIPFeatureCache, image_fingerprints, open_feature_cache
from training.tokenizers.clip_weights import load_clip_tower
from training.run_log import read_scalars

OPENAI_FILE_URL = "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors"


_TOWERS = {}


@pytest.fixture(autouse=True)
def _build_each_random_tower_once(monkeypatch):
    """Building a ViT-B-32 takes seconds on a CPU: in-process builds here copy a stored one."""
    def tower(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _TOWERS:
            _TOWERS[key] = clip_image_tower(*args, **kwargs)
        return copy.deepcopy(_TOWERS[key])
    monkeypatch.setattr(training.tokenizers.clip_weights, "clip_image_tower", tower)


@pytest.fixture(scope="module")
def clip_world(tiny_world, tmp_path_factory):
    """tiny_world's data and VQ-VAE with CLIP settings: random weights, 3 concepts, batch 8."""
    base = tmp_path_factory.mktemp("clip")
    config = base / "tiny_clip_ce.gin"
    config.write_text(f"include '{tiny_world['config']}'\n"
                      "get_args.clip_weights = 'random'\n"
                      f"get_args.clip_cache_dir = '{base / 'cache'}'\n"
                      "get_args.concepts_num_clip = 3\n")
    return {**tiny_world, "clip_config": config, "cache": base / "cache", "base": base}


def clip_main(argv):
    return vct_main(argv, setting="clip")


def clip_run(clip_world, *bindings):
    torch.manual_seed(0)
    objective, ctx = build_setting("clip", clip_world["clip_config"], bindings)
    return objective, ctx.batches, ctx.cfg


def test_whole_pipeline_shapes_frozen_tower_and_gradients(clip_world):
    objective, batches, cfg = clip_run(clip_world, "get_args.swap_min_change = 0.0", "get_args.clip_cache_dir = ''")
    images, _, indices = batches[np.arange(2)]
    setting = objective.tokenizer
    tokens, codes = setting.tokenize(images, indices)
    assert tokens.shape == (2, 36, 256) and codes.shape == (2, 64)
    concepts = objective.encoder(tokens)
    assert concepts.shape == (2, 3, 16)
    assert objective.decoder(concepts).shape == (2, 64, 8)  # logits over the VQ-VAE's 8 codes

    objective.train()
    seen = setting.clip.images_encoded
    loss, logs = objective(images, torch.Generator().manual_seed(0), indices)
    assert loss.shape == () and torch.isfinite(loss) and logs["swaps_kept"].item() == 2
    # no cache attached: the 2 images, then the 2 x 2 detokenised ones of the dis loss
    assert setting.clip.images_encoded == seen + 2 + 4
    loss.backward()
    assert not setting.clip.tower.training and not setting.vq.vqvae.training
    assert all(p.grad is None for p in setting.clip.tower.parameters())
    assert all(p.grad is None for p in setting.vq.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in setting.clip.mlp.parameters())
    assert objective.encoder.latents.grad is not None
    trained = {id(p) for p in objective.trainable_parameters()}
    assert trained == {id(p) for m in (objective.encoder, objective.decoder, setting.clip.mlp)
                       for p in m.parameters()}
    state = objective.model_state()
    assert set(state) == {"encoder_model_state_dict", "decoder_model_state_dict", "mlp_state_dict",
                          "clip_features_id"}

    def load(module, weights, what):
        module.load_state_dict(weights)
    objective.load_model_state(state, load)
    # resuming with other CLIP weights would pair the token MLP with features it never saw
    with pytest.raises(UserError, match="other CLIP weights"):
        objective.load_model_state({**state, "clip_features_id": "0" * 64}, load)


def test_feature_cache_is_hit_on_the_second_epoch_and_by_the_next_run(clip_world, tmp_path):
    objective, batches, cfg = clip_run(clip_world, "get_args.dis_loss = False", f"get_args.clip_cache_dir = '{tmp_path}'")
    setting, clip = objective.tokenizer, objective.tokenizer.clip
    setting.attach_feature_cache(open_feature_cache(cfg, batches, clip))
    sampler = StepBatchSampler(len(batches), 8, seed=0, start_step=0, total_steps=2 * 4)  # 2 epochs
    counts = []
    for step, indices in enumerate(sampler):
        images, _, indices = batches[indices]
        objective(images, None, indices)
        if step % 4 == 3:
            counts.append(clip.images_encoded)
    assert counts == [32, 32]  # epoch 1 runs every image through the ViT once, epoch 2 none
    assert setting.dataset_images_encoded == 32

    # with the dis loss, only its detokenised images run the ViT
    objective.use_dis_loss, objective.swap_min_change = True, 0.0
    images, _, indices = batches[np.arange(4)]
    _, logs = objective(images, torch.Generator().manual_seed(0), indices)
    assert clip.images_encoded == 32 + 2 * int(logs["swaps_kept"].item())
    assert setting.dataset_images_encoded == 32

    # evaluation hands images without indices: found by content, no ViT call
    before = clip.images_encoded
    tokens_by_content = setting.tokenize(images)[0]
    assert clip.images_encoded == before
    torch.testing.assert_close(tokens_by_content, setting.tokenize(images, indices)[0])
    setting.tokenize(images[:2] * 0.5)  # not dataset images: computed, not stored
    assert clip.images_encoded == before + 2 and setting.dataset_images_encoded == 32

    # the next run (a new process) with the same weights reads the same cache
    images, indices = images[:2], indices[:2]
    twin = CLIPTokenizer(CLIPImageTokenizer(clip.tower), setting.vq)
    twin.attach_feature_cache(open_feature_cache(cfg, batches, twin.clip))
    cached = twin.image_features(images, indices)
    assert twin.clip.images_encoded == 0
    torch.testing.assert_close(cached, clip.features(images), rtol=1e-4, atol=1e-5)

    # other weights: another cache, so every image is computed again
    tower = copy.deepcopy(clip.tower)
    with torch.no_grad():
        tower.proj.add_(0.01)
    other = CLIPTokenizer(CLIPImageTokenizer(tower), setting.vq)
    other.attach_feature_cache(open_feature_cache(cfg, batches, other.clip))
    assert other.feature_cache.directory != setting.feature_cache.directory
    other.image_features(images, indices)
    assert other.clip.images_encoded == 2 and other.dataset_images_encoded == 2


def test_cache_rows_are_shared_and_half_written_rows_are_never_read(clip_world, tmp_path):
    load_gin([clip_world["clip_config"]])  # the synthetic data's grid
    batches = GroundTruthBatches(build_dataset("synthetic_shapes3d", clip_world["data"]))
    cache = CLIPFeatureCache(tmp_path / "f", batches, 4, tmp_path / "fingerprints.npy")
    rows = np.random.RandomState(0).randn(3, 4).astype(np.float32)
    cache.store([2, 5, 7], rows)
    other_process = CLIPFeatureCache(tmp_path / "f", batches, 4, tmp_path / "fingerprints.npy")
    found, features = other_process.lookup([2, 5, 7, 9, -1])
    assert found.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(features[:3], rows)
    cache.features[5, 0] += 1.0  # a row changed without its checksum: a torn write
    assert other_process.lookup([2, 5])[0].tolist() == [True, False]
    images = batches[np.array([7, 3])][0]
    assert cache.find(image_fingerprints(images)).tolist() == [7, 3]
    assert cache.find(image_fingerprints(images * 0.5)).tolist() == [-1, -1]
    with pytest.raises(UserError, match="delete"):
        CLIPFeatureCache(tmp_path / "f", batches, 8, tmp_path / "fingerprints.npy")  # other width


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights folder holding random ViT-B-32 weights as the 'openai' file, and their hash."""
    from safetensors.torch import save_file
    load_gin([])
    tower, _, _ = load_clip_tower("random:3")
    root = tmp_path_factory.mktemp("clip_weights")
    path = root / "ViT-B-32-openai" / "open_clip_model.safetensors"
    path.parent.mkdir()
    save_file({f"visual.{k}": v.contiguous() for k, v in tower.state_dict().items()}, str(path))
    return root, path, state_sha256(tower)


def test_weights_from_a_file_and_from_a_tag_saved_where_the_error_says(weights_dir, monkeypatch):
    root, path, sha = weights_dir
    load_gin([], [f"clip_tower.weights_dir = '{root}'"])
    assert state_sha256(load_clip_tower(str(path))[0]) == sha
    assert state_sha256(load_clip_tower("openai")[0]) == sha  # found in weights_dir, no network

    import huggingface_hub.constants
    monkeypatch.setattr(training.tokenizers.clip_weights, "_hub_reachable", lambda timeout=5.0: False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "empty_hf_cache"))
    with pytest.raises(UserError) as err:
        load_clip_tower("laion2b_e16")
    message = str(err.value)
    assert "\n" not in message and "cannot be downloaded" in message
    assert "https://huggingface.co/timm/vit_base_patch32_clip_224.laion2b_e16/resolve/main/open_clip_model.safetensors" in message
    assert f"save it as {root / 'ViT-B-32-laion2b_e16' / 'open_clip_model.safetensors'}" in message


def test_bad_weights_files_are_clear_errors(tmp_path):
    from safetensors.torch import save_file
    load_gin([])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="cannot read CLIP weights"):
        load_clip_tower(str(corrupt))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(UserError, match="does not fit"):
        load_clip_tower(str(wrong))
    pickled = tmp_path / "pickled.pt"
    torch.save({"visual.proj": torch.zeros(3), "extra": object()}, pickled)  # needs a full unpickle
    with pytest.raises(UserError, match="cannot read CLIP weights"):
        load_clip_tower(str(pickled))
    with pytest.raises(UserError, match="random:1"):
        load_clip_tower("random:x")
    with pytest.raises(UserError, match="not 'random.*or an open_clip tag of ViT-B-32 .openai"):
        load_clip_tower("opneai")


def run_clip_in_process(argv, capsys):
    return run_in_process(clip_main, argv, capsys)


def test_missing_weights_file_is_one_clear_line(clip_world, capsys, tmp_path):
    missing = tmp_path / "none" / "open_clip_model.safetensors"
    code, err = run_clip_in_process(["--config", str(clip_world["clip_config"]), "--out", str(tmp_path / "r"),
                                     "--clip_weights", str(missing)], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: CLIP weights file not found") and OPENAI_FILE_URL in err[0]
    assert f"save it as {missing}" in err[0]


def test_soft_retokens_are_refused_as_clip_re_tokenises_through_clip(clip_world, capsys, tmp_path):
    code, err = run_clip_in_process(["--config", str(clip_world["clip_config"]), "--out", str(tmp_path / "r"),
                                     "--gin_bindings", "get_args.dis_soft_retokens = True"], capsys)
    assert code == 2 and len(err) == 1 and "get_args.dis_soft_retokens = True" in err[0], err


def test_clip_script_offers_concepts_num_clip_not_concepts_num(clip_world, capsys, tmp_path):
    code, err = run_clip_in_process(["--config", str(clip_world["clip_config"]), "--out", str(tmp_path / "r"),
                                     "--concepts_num", "5"], capsys)
    assert code == 2 and "unrecognized arguments: --concepts_num 5" in err[-1]
    with pytest.raises(SystemExit):
        clip_main(["--help"])
    usage = capsys.readouterr().out
    assert "--concepts_num_clip" in usage and "--concepts_num " not in usage
    assert "runs/<config>-clip-seed<seed>" in usage


def test_entry_script_runs_resumes_and_evaluates_with_its_clip_weights(clip_world, tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = ["--gin_bindings", "get_args.save_interval = 2"]
    done = run_script("main_vct_clip.py", "--config", clip_world["clip_config"], "--max_steps", "2",
                      "--clip_weights", "random:1", "--concepts_num_clip", "2", "--batch_size", "2",
                      "--device", "cpu", "--out", run_dir, *common)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "get_args.clip_weights = 'random:1'" in (run_dir / "config.gin").read_text()
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir))
    assert state["mlp_state_dict"]["nets.0.net.0.weight"].shape == (256, 512)
    assert state["encoder_model_state_dict"]["latents"].shape == (2, 16)

    # the resume keeps random:1 (other weights would fail the checkpoint's CLIP features check)
    # and the 2 concepts (the encoder would not load otherwise)
    run_main(clip_main, ["--resume", str(run_dir), "--max_steps", "3"])
    assert sorted(read_scalars(run_dir)) == [1, 2, 3]
    assert "get_args.max_steps = 3" in (run_dir / "config.gin").read_text()
    assert json.loads((run_dir / "run_args.json").read_text())["setting"] == "clip"

    # evaluate.py rebuilds the CLIP setting (random:1 weights, 2 concepts) from the run dir alone
    import evaluate
    code, printed, err = run_with_output(evaluate.main, ["--checkpoint", run_dir, "--metrics", "mig",
                                                         "--device", "cpu"], capsys)
    assert code == 0, err[-5:]
    assert "mig" in printed and "discrete_mig" in printed, printed
    saved = json.loads((run_dir / "metrics" / "evaluate_checkpoint_00000003.json").read_text())
    assert saved["settings"]["setting"] == "clip" and "discrete_mig" in saved["results"]["mig"]

