"""The CLIP setting (main_vct_clip.py, spec section 8): a frozen CLIP image encoder and one MLP
per token make the image tokens; the frozen VQ-VAE gives the reconstruction targets (its code
indices) and detokenises for the concept disentangling loss, whose images are re-tokenised
through the same CLIP path.

Also here: where the CLIP weights come from (``--clip_weights``: an open_clip tag, a local
file, or ``random``), and the on-disk cache of the CLIP features of dataset images, so that
after the first epoch only the re-tokenised images of the disentangling loss run the ViT.
"""
import hashlib
import json
import math
import os
import socket
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlparse

import gin
import numpy as np
import torch
from torch import nn

from models.clip_tokenizer import CLIP_MEAN, CLIP_MODEL_NAME, CLIP_STD, CLIPImageTokenizer, clip_image_tower
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from training import checkpoint as ckpt
from training.cli import UserError, add_gin_binding_flag
from training.objectives import VCTObjective
from training.runs import add_vct_hooks, load_vqvae, vct_main
from training.settings import VQTokenizer

RANDOM_WEIGHTS = "random"
# What open_clip fetches from a tag's Hugging Face repository (safetensors preferred).
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


# ============================================================================ weights

@gin.configurable("clip_tower")
def clip_tower_settings(model_name=CLIP_MODEL_NAME, quick_gelu=None, weights_dir="checkpoints/clip"):
    """Knobs a .gin file sets as ``clip_tower.<name>``.

    model_name: the open_clip architecture (published: ViT-B-32).
    quick_gelu: the activation the weights were trained with; None = the tag's own setting for
      an open_clip tag, and QuickGELU (OpenAI's, the published weights) for a file or 'random'.
      Set False for a local file of a GELU-trained tag (e.g. laion2b_s34b_b79k).
    weights_dir: where a tag's weights file is looked for first:
      <weights_dir>/<model_name>-<tag>/open_clip_model.safetensors (or open_clip_pytorch_model.bin).
    """
    return {"model_name": model_name, "quick_gelu": quick_gelu, "weights_dir": weights_dir}


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _hub_source(model_name, tag):
    """(Hugging Face repo, candidate file names) open_clip downloads tag ``tag`` from; None if
    the tag has no Hugging Face entry."""
    import open_clip

    hub = open_clip.get_pretrained_cfg(model_name, tag).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # 'org/model/' names the repo; 'org/model/file' one file
    if not filename:
        return repo, HF_WEIGHT_FILES
    stem, suffix = os.path.splitext(filename)
    return repo, ((stem + ".safetensors", filename) if suffix in (".bin", ".pth") else (filename,))


def _hub_url(repo, filename):
    from huggingface_hub import constants
    return f"{constants.ENDPOINT}/{repo}/resolve/main/{filename}"


def _fetch_instruction(model_name, tag, weights_dir):
    """'fetch URL and save it as PATH' for the weights of ``tag``."""
    import open_clip

    source = _hub_source(model_name, tag)
    if source is not None:
        repo, names = source
        url, name = _hub_url(repo, names[0]), names[0]
    else:
        url = open_clip.get_pretrained_cfg(model_name, tag).get("url", "")
        name = os.path.basename(urlparse(url).path)
    return url, Path(weights_dir) / f"{model_name}-{tag}" / name


def _hub_reachable(timeout=5.0):
    """Whether the Hugging Face hub answers (a quick check, so that a machine without network
    gets the fetch instructions at once instead of after minutes of download retries)."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy: let the download itself try
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tag_weights_file(model_name, tag, weights_dir):
    """A local file with the weights of open_clip tag ``tag``: from ``weights_dir``, from the
    Hugging Face cache, or downloaded there. A clear UserError when there is none."""
    url, target = _fetch_instruction(model_name, tag, weights_dir)
    source = _hub_source(model_name, tag)
    names = source[1] if source is not None else (target.name,)
    for name in names:
        if (target.parent / name).is_file():
            return target.parent / name
    if source is not None:
        from huggingface_hub import hf_hub_download
        repo, names = source
        for offline in (True, False):
            if not offline and not _hub_reachable():
                break
            for name in names:
                try:
                    return Path(hf_hub_download(repo, name, local_files_only=offline))
                except Exception:  # not cached / not in the repository / network error
                    continue
    raise UserError(f"CLIP weights '{tag}' ({model_name}) are not on this machine and cannot be downloaded "
                    f"(no network?): fetch {url} and save it as {target} (then --clip_weights {tag} "
                    f"finds it; or pass --clip_weights PATH)")


def read_weights_file(path: Path) -> dict:
    """A state_dict from a .safetensors file or a weights-only torch file (never a pickle)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, a pickle, or TorchScript (OpenAI's .pt)
        raise UserError(f"cannot read CLIP weights {path}: {_first_line(err)} (expected a .safetensors "
                        f"file or a state_dict saved with torch.save)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"cannot read CLIP weights {path}: not a state_dict of tensors")
    return state


def _image_tower_state(state):
    """The image encoder's part of a CLIP state_dict (keys 'visual.*'; a bare image-encoder
    state_dict is taken as it is), in float32."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return {k: v.float() for k, v in (visual or state).items()}


def load_clip_tower(spec):
    """(image encoder, mean, std) for a ``--clip_weights`` value: 'random' or 'random:SEED'
    (random weights of the same architecture), a local weights file, or an open_clip tag of
    the configured model (``clip_tower.model_name``)."""
    import open_clip

    settings = clip_tower_settings()
    model_name, quick_gelu = settings["model_name"], settings["quick_gelu"]
    mean, std = CLIP_MEAN, CLIP_STD
    if spec == RANDOM_WEIGHTS or spec.startswith(RANDOM_WEIGHTS + ":"):
        seed_text = spec[len(RANDOM_WEIGHTS) + 1:] or "0"
        if not seed_text.lstrip("-").isdigit():
            raise UserError(f"--clip_weights {spec}: random weights take an integer seed, e.g. random:1")
        tower = clip_image_tower(model_name, True if quick_gelu is None else quick_gelu, seed=int(seed_text))
        return tower, mean, std
    tag = open_clip.get_pretrained_cfg(model_name, spec)
    if tag and not Path(spec).is_file():
        path = _tag_weights_file(model_name, spec, settings["weights_dir"])
        quick_gelu = bool(tag.get("quick_gelu")) if quick_gelu is None else quick_gelu
        mean, std = tag.get("mean") or mean, tag.get("std") or std
    else:
        path = Path(spec)
        if not path.is_file():
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)[:5])
            if not path.suffix and len(path.parts) == 1:  # a bare word: a mistyped tag?
                raise UserError(f"--clip_weights {spec}: no such file, and not 'random[:SEED]' or an "
                                f"open_clip tag of {model_name} ({tags}, ...)")
            url, _ = _fetch_instruction(model_name, "openai", settings["weights_dir"])
            raise UserError(f"CLIP weights file not found: {spec}; for the published {model_name} weights "
                            f"fetch {url} and save it as {spec}")
        quick_gelu = True if quick_gelu is None else quick_gelu
    weights = _image_tower_state(read_weights_file(path))
    tower = clip_image_tower(model_name, quick_gelu)
    ckpt.load_model_state(tower, weights, f"CLIP {model_name} image encoder", path)
    return tower, mean, std


# ============================================================================ feature cache

def image_fingerprints(images) -> np.ndarray:
    """A 64-bit content hash per image (B,) uint64, of the image quantised to 16 bits per value
    (so the same dataset image read through another code path hashes the same)."""
    levels = ((images.detach().float().clamp(-1, 1) + 1) * 32767.5).round().to(torch.int32)
    levels = levels.cpu().numpy().astype(np.uint16)
    return np.array([int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little")
                     for image in levels], dtype=np.uint64)


def _row_check(feature):
    """Non-zero checksum of one cached feature row (0 marks an empty row)."""
    return zlib.crc32(feature.tobytes()) | (1 << 32)


def _private_tmp(path: Path):
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _open_shared_array(path: Path, shape, dtype):
    """A .npy memory map shared by every process that opens it; created once (atomically: a
    process never opens a file another is still creating)."""
    if not path.exists():
        tmp = _private_tmp(path)
        np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: keep that one
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        array = np.load(path, mmap_mode="r+", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot open CLIP feature cache {path}: {_first_line(err)}; delete {path.parent} "
                        f"to rebuild it") from None
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise UserError(f"CLIP feature cache {path} holds {array.shape} {array.dtype}, not {tuple(shape)} "
                        f"{np.dtype(dtype)}; delete {path.parent} to rebuild it")
    return array


def _write_json_once(path: Path, content: dict):
    if not path.exists():
        tmp = _private_tmp(path)
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True))
        os.replace(tmp, path)


class CLIPFeatureCache:
    """The CLIP features of one dataset's images under one CLIP (weights and preprocessing), by
    dataset index, in ``directory``: features.npy (N, D) float32 and checks.npy (N,) uint64,
    memory maps every process shares (a distributed run's ranks fill disjoint rows).

    A row counts only when its checksum matches it, so a row a process was writing when it
    died (or that two processes wrote at once) is never read: it is computed again.

    Images without a dataset index (evaluation, image grids) are found by their content:
    ``fingerprint_file`` holds every dataset image's fingerprint, computed from ``batches``
    the first time it is needed and kept for every later run on this dataset."""

    def __init__(self, directory, batches, feature_dim, fingerprint_file):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.batches = batches
        self.fingerprint_file = Path(fingerprint_file)
        num_images = len(batches)
        self.features = _open_shared_array(self.directory / "features.npy", (num_images, feature_dim), np.float32)
        self.checks = _open_shared_array(self.directory / "checks.npy", (num_images,), np.uint64)
        self._content_index = None  # (sorted fingerprints, their dataset indices)

    def __len__(self):
        return self.features.shape[0]

    def lookup(self, indices):
        """(found (B,) bool, features (B, D) float32) for dataset ``indices`` (-1: none)."""
        indices = np.asarray(indices, dtype=np.int64)
        features = np.zeros((len(indices), self.features.shape[1]), np.float32)
        found = np.zeros(len(indices), bool)
        known = np.flatnonzero(indices >= 0)
        if len(known):
            rows, checks = self.features[indices[known]], self.checks[indices[known]]
            features[known] = rows
            found[known] = [int(check) == _row_check(row) for row, check in zip(rows, checks)]
        return found, features

    def store(self, indices, features):
        """Write the rows of dataset ``indices``: the features, then their checksums."""
        indices = np.asarray(indices, dtype=np.int64)
        features = np.ascontiguousarray(features, dtype=np.float32)
        self.features[indices] = features
        self.checks[indices] = [_row_check(row) for row in features]

    def dataset_fingerprints(self, chunk=512):
        """Every dataset image's fingerprint (N,) uint64, from the file or computed (once)."""
        if self.fingerprint_file.is_file():
            table = np.load(self.fingerprint_file, allow_pickle=False)
            if table.shape == (len(self),):
                return table
        table = np.concatenate([image_fingerprints(self.batches[np.arange(start, min(start + chunk, len(self)))][0])
                                for start in range(0, len(self), chunk)])
        tmp = _private_tmp(self.fingerprint_file)
        with open(tmp, "wb") as file:
            np.save(file, table, allow_pickle=False)
        os.replace(tmp, self.fingerprint_file)
        return table

    def find(self, fingerprints):
        """Dataset indices of the images with these fingerprints (-1 for an image that is not
        in the dataset, e.g. a reconstruction)."""
        if self._content_index is None:
            table = self.dataset_fingerprints()
            order = np.argsort(table, kind="stable")
            self._content_index = (table[order], order)
        known, indices = self._content_index
        fingerprints = np.asarray(fingerprints, dtype=np.uint64)
        position = np.minimum(np.searchsorted(known, fingerprints), len(known) - 1)
        return np.where(known[position] == fingerprints, indices[position], -1)


def open_feature_cache(cfg, batches, clip: CLIPImageTokenizer):
    """The feature cache of this run's dataset (name, folder, size, a few images' content) and
    CLIP (``clip.features_id``: weights hash and preprocessing), under ``cfg.clip_cache_dir``:
    <dir>/<dataset name>/<dataset id>/<features id>/."""
    num_images = len(batches)
    probe = np.unique([0, num_images // 2, num_images - 1])
    images = batches[probe][0]
    dataset = {"name": cfg.name, "data_dir": str(Path(cfg.data_dir).resolve()), "num_images": num_images,
               "image_shape": list(images.shape[1:]),
               "probe_fingerprints": [int(v) for v in image_fingerprints(images)]}
    dataset_id = hashlib.sha256(json.dumps(dataset, sort_keys=True).encode()).hexdigest()
    dataset_dir = Path(cfg.clip_cache_dir) / cfg.name / dataset_id[:16]
    directory = dataset_dir / clip.features_id[:16]
    cache = CLIPFeatureCache(directory, batches, clip.feature_dim, dataset_dir / "fingerprints.npy")
    _write_json_once(dataset_dir / "dataset.json", dataset)
    _write_json_once(directory / "clip.json", {"clip_features_id": clip.features_id,
                                               "clip_weights_sha256": clip.weights_sha256})
    return cache


# ============================================================================ setting

class CLIPSetting(nn.Module):
    """The tokenizer interface of training/settings.py over CLIP: image tokens = MLP(CLIP
    feature), reconstruction targets = VQ-VAE code indices; detokenising goes through the
    VQ-VAE (hard Gumbel sample -> codebook -> decode) and re-tokenising through CLIP again,
    with gradient into the MLP only. The token MLP is the trainable part (``mlp_state_dict``).

    With a feature cache attached, features of dataset images are read from it or computed
    once and stored; ``dataset_images_encoded`` counts those computed."""

    def __init__(self, clip: CLIPImageTokenizer, vq: VQTokenizer):
        super().__init__()
        self.clip = clip
        self.vq = vq
        self.feature_cache = None
        self.dataset_images_encoded = 0

    def attach_feature_cache(self, cache: CLIPFeatureCache):
        self.feature_cache = cache

    def image_features(self, images, indices=None):
        """CLIP features (B, D) of ``images``, through the cache where there is one. Without
        ``indices`` the images are looked up by content (evaluation reads dataset images so)."""
        cache = self.feature_cache
        if cache is None:
            return self.clip.features(images)
        if indices is None:
            indices = cache.find(image_fingerprints(images))
        else:
            indices = np.asarray(indices.cpu() if torch.is_tensor(indices) else indices, dtype=np.int64)
        found, cached = cache.lookup(indices)
        features = torch.from_numpy(cached).to(images.device)
        missing = np.flatnonzero(~found)
        if len(missing):
            rows = torch.from_numpy(missing).to(images.device)
            computed = self.clip.features(images[rows])
            features[rows] = computed
            in_dataset = indices[missing] >= 0
            cache.store(indices[missing][in_dataset], computed.cpu().numpy()[in_dataset])
            self.dataset_images_encoded += int(in_dataset.sum())
        return features

    def tokenize(self, images, indices=None):
        codes = self.vq.tokenize(images)[1]
        return self.clip.tokens(self.image_features(images, indices)), codes

    def reconstruction_loss(self, logits, targets):
        return self.vq.reconstruction_loss(logits, targets)

    def detokenize(self, logits, generator=None):
        return self.vq.detokenize(logits, generator)

    def codes_to_images(self, codes):
        return self.vq.codes_to_images(codes)

    def retokenize(self, images):
        return self.clip(images)

    def model_state(self):
        return {"mlp_state_dict": self.clip.mlp.state_dict(), "clip_features_id": self.clip.features_id}

    def load_model_state(self, checkpoint, load):
        saved = checkpoint.get("clip_features_id")
        if saved is not None and saved != self.clip.features_id:
            raise UserError(f"this checkpoint's token MLP was trained on other CLIP weights (features id "
                            f"{saved[:12]}, here {self.clip.features_id[:12]}); use the --clip_weights it "
                            f"was trained with")
        load(self.clip.mlp, checkpoint["mlp_state_dict"], "CLIP token MLP")


# ============================================================================ the run

def build_clip_vct(cfg, device, num_channels=3, args=None):
    """The VCT objective of a CLIP run: frozen CLIP + token MLP, VCT encoder over its tokens,
    VCT decoder to the frozen VQ-VAE's codes."""
    if args is not None and getattr(args, "concepts_num", None) is not None:
        raise UserError("main_vct_clip.py sets the number of concepts with --concepts_num_clip "
                        "(get_args.concepts_num_clip), not --concepts_num")
    side = math.isqrt(cfg.clip_tokens)
    if side * side != cfg.clip_tokens:
        raise UserError(f"get_args.clip_tokens = {cfg.clip_tokens}: VCT_Encoder needs a square number of "
                        f"image tokens (published: 36, a 6x6 grid)")
    vqvae = load_vqvae(cfg.vqvae_path, cfg.hidden, cfg.k, num_channels, device)
    tower, mean, std = load_clip_tower(cfg.clip_weights)
    clip = CLIPImageTokenizer(tower, num_tokens=cfg.clip_tokens, mean=mean, std=std)
    encoder = VCT_Encoder(z_index_dim=cfg.concepts_num_clip, dim=clip.token_dim)
    decoder = VCT_Decoder(index_num=cfg.k, z_index_dim=cfg.shape_num, ce_loss=True)
    return VCTObjective(encoder, decoder, CLIPSetting(clip, VQTokenizer(vqvae)), dis_loss=cfg.dis_loss,
                        swap_min_change=cfg.swap_min_change)


def add_clip_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed):
    """Open the feature cache of this run's dataset (the dataset is first known here), then add
    the shared concept-swap grids and metrics."""
    if cfg.clip_cache_dir:
        objective.setting.attach_feature_cache(open_feature_cache(cfg, batches, objective.setting.clip))
    add_vct_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed)


def _absolute_if_file(value):
    return str(Path(value).resolve()) if Path(value).is_file() else value


def add_clip_arguments(parser):
    add_gin_binding_flag(parser, "--clip_weights", "get_args.clip_weights", convert=_absolute_if_file,
                         help="CLIP image encoder weights: an open_clip tag of ViT-B-32 (default from the "
                              "config, else 'openai', the published weights), a local .safetensors / "
                              "state_dict file, or 'random' / 'random:SEED' (random weights, for tests)")
    add_gin_binding_flag(parser, "--concepts_num_clip", "get_args.concepts_num_clip", type=int,
                         help="number of concept tokens (overrides get_args.concepts_num_clip; published 10)")
    add_gin_binding_flag(parser, "--clip_cache_dir", "get_args.clip_cache_dir",
                         help="folder of the per-image CLIP feature cache ('' turns it off; default "
                              "get_args.clip_cache_dir = checkpoints/clip/features)")


CLIP_DESCRIPTION = ("Train VCT concept tokens over a frozen CLIP ViT-B/32 image encoder (one small MLP per "
                    "token maps its 512-d feature to 36 image tokens); the frozen VQ-VAE gives the "
                    "reconstruction targets and detokenises for the concept disentangling loss. The CLIP "
                    "features of dataset images are cached on disk. Evaluates the concepts on "
                    "ground-truth factors.")


def clip_main(argv=None):
    return vct_main(argv, prog="main_vct_clip.py", description=CLIP_DESCRIPTION, build=build_clip_vct,
                    add_hooks=add_clip_hooks, add_arguments=add_clip_arguments, run_tag="-clip")
