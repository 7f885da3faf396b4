"""Where the CLIP image encoder's weights come from (``--clip_weights``): an open_clip tag
(looked for on disk, then in the Hugging Face cache, then downloaded), a local weights file
(.safetensors or a weights-only torch file, never a pickle), or ``random`` for tests."""
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import gin
import torch

from models.clip_tokenizer import CLIP_MEAN, CLIP_MODEL_NAME, CLIP_STD, clip_image_tower
from training import checkpoint as ckpt
from training.errors import UserError, first_line

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
        raise UserError(f"cannot read CLIP weights {path}: {first_line(err)} (expected a .safetensors "
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
