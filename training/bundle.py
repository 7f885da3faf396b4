"""Export bundles: a trained run as a folder that loads without its run directory, its dataset
or its VQ-VAE (or CLIP, or generator) weight file, to share or upload to the Hugging Face hub.

    model.safetensors  every tensor of the rebuilt objective (the frozen tokenizer's too)
    config.json        setting, gin configuration, image shape, step, seed, metrics, provenance
    README.md          a model card

``python export.py`` writes one (``export_bundle``); ``VCTBundle.from_pretrained(folder or
hub id)`` loads one; evaluate.py and visualize.py take one as ``--checkpoint``
(training/evaluate_run.py). Only JSON and safetensors are ever read from a bundle, never a
pickle, and its gin configuration may import only this project's modules, so a bundle from
anyone is safe to load.
"""
import json
import re
from pathlib import Path

import gin
import torch

from common.atomic import atomic_write, atomic_write_text
from training import checkpoint as ckpt
from training.cli import check_config_imports, load_gin, load_run_args, pick_device
from training.config import RunConfig
from training.errors import UserError, first_line
from training.provenance import provenance
from training.setting import RunContext, get_setting
from training.tokenizers.vq import frozen_weights_loaded_later

FORMAT = "vct-bundle"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
BUNDLE_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_bundle(path) -> bool:
    """Whether ``path`` is a folder holding a bundle's config.json and model.safetensors."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


# ============================================================================ reading

def bundle_folder(name_or_path, revision=None) -> Path:
    """A local bundle folder as it is; a hub id (USER/REPO) downloaded (the bundle's three files
    only) into the Hugging Face cache."""
    path = Path(name_or_path)
    if path.is_dir():
        if not is_bundle(path):
            raise UserError(f"{path} is not a VCT bundle (no {CONFIG_NAME} and {WEIGHTS_NAME}; make one with "
                            f"python export.py --checkpoint RUN_DIR --out DIR)")
        return path
    if path.exists() or not _REPO_ID.match(str(name_or_path)):
        raise UserError(f"{name_or_path}: neither a bundle folder nor a Hugging Face repo id (USER/REPO)")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=list(BUNDLE_FILES)))
    except Exception as err:  # offline, no such repo, no access
        raise UserError(f"cannot fetch the bundle '{name_or_path}' from the Hugging Face hub: {first_line(err)} "
                        f"(a local folder of that name does not exist)") from None


def _config_problems(config) -> list:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        return [f"not a {FORMAT} config"]
    kinds = {"format_version": int, "setting": str, "gin_config": str, "export_bindings": list,
             "pinned_bindings": list, "seed": int, "image_shape": list, "model_ids": dict}
    problems = [f"'{key}' missing or not a {kind.__name__}" for key, kind in kinds.items()
                if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool)]
    if problems:
        return problems
    if config["format_version"] > FORMAT_VERSION:
        problems.append(f"format version {config['format_version']} is newer than this code reads "
                        f"({FORMAT_VERSION}); update the project")
    if not all(isinstance(b, str) for b in config["export_bindings"] + config["pinned_bindings"]):
        problems.append("a binding that is not a string")
    shape = config["image_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        problems.append(f"image_shape {shape!r} is not [H, W, C]")
    return problems


def read_config(folder) -> dict:
    """A bundle's config.json, checked: its keys and types, and that its gin bindings import
    nothing outside this project (its gin text is checked where it is parsed)."""
    folder = Path(folder)
    if not is_bundle(folder):
        raise UserError(f"{folder} is not a VCT bundle (no {CONFIG_NAME} and {WEIGHTS_NAME})")
    path = folder / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # not JSON (or not text)
        raise UserError(f"cannot read {path}: {first_line(err)}") from None
    problems = _config_problems(config)
    if problems:
        raise UserError(f"{path} is not a bundle config this code reads: {'; '.join(problems)}")
    check_config_imports("\n".join(config["export_bindings"] + config["pinned_bindings"]))
    return config


def rebuild_bindings(config, bindings=(), own_configuration=True) -> list:
    """The gin bindings a bundle is rebuilt with, after its gin text: those it was exported with
    (with its own configuration only), the caller's, then those pinning what its weights need
    (CLIP's activation), which nothing may override."""
    exported = config["export_bindings"] if own_configuration else []
    return [*exported, *bindings, *config["pinned_bindings"]]


def check_image_shape(config, image_shape, folder):
    """The dataset a bundle is evaluated on has the images it was trained on."""
    if list(image_shape) != config["image_shape"]:
        raise UserError(f"{folder} was trained on {tuple(config['image_shape'])} (H, W, C) images; the configured "
                        f"dataset's are {tuple(image_shape)}")


def _read_weights(path):
    """(tensors, aliases, non-persistent buffer names) of a bundle's safetensors file."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path), device="cpu")
        aliases = json.loads(metadata.get("aliases", "{}"))
        buffers = json.loads(metadata.get("non_persistent_buffers", "[]"))
    except Exception as err:  # not safetensors (a pickle under its name), truncated, bad metadata
        raise UserError(f"cannot read {path}: {first_line(err)} (a bundle's weights are one safetensors "
                        f"file)") from None
    names_ok = isinstance(aliases, dict) and isinstance(buffers, list) \
        and all(isinstance(name, str) for name in [*aliases, *aliases.values(), *buffers]) \
        and set(aliases.values()) <= set(tensors) and set(buffers) <= set(tensors) | set(aliases)
    if not names_ok:
        raise UserError(f"cannot read {path}: its metadata names tensors it does not hold")
    return tensors, aliases, buffers


def load_weights(objective, folder):
    """Load the bundle's model.safetensors into ``objective`` (load_state_dict(strict=True), its
    non-persistent buffers copied in); modules whose digest follows their weights are told."""
    path = Path(folder) / WEIGHTS_NAME
    tensors, aliases, buffers = _read_weights(path)
    for alias, name in aliases.items():
        tensors[alias] = tensors[name]
    extra = {name: tensors.pop(name) for name in buffers}
    ckpt.load_model_state(objective, tensors, "model", path)
    for name, value in extra.items():
        try:
            objective.get_buffer(name).copy_(value)
        except (AttributeError, RuntimeError) as err:
            raise UserError(f"{path}: buffer {name} does not fit the configured model ({first_line(err)})") from None
    for module in objective.modules():
        replaced = getattr(module, "weights_replaced", None)
        if callable(replaced):
            replaced()


def model_ids(objective) -> dict:
    """The plain values of the objective's checkpoint state (CLIP's features id): what the
    weights were made with, recorded in a bundle and checked when it is loaded."""
    state = objective.model_state() if hasattr(objective, "model_state") else {}
    return {key: value for key, value in state.items() if isinstance(value, (str, int, float, bool))}


def build_objective(setting, ctx, config, folder):
    """The setting's objective built for ``ctx`` without reading any frozen part's weight file,
    then given the bundle's weights, in eval mode on ``ctx.device``."""
    with frozen_weights_loaded_later():
        objective = setting.build(ctx)
    objective = objective.to(ctx.device).eval()
    load_weights(objective, folder)
    rebuilt = model_ids(objective)
    for key, value in config["model_ids"].items():
        if rebuilt.get(key) != value:
            raise UserError(f"{folder}: the rebuilt model's {key} is {str(rebuilt.get(key))[:16]}, the bundle's "
                            f"{str(value)[:16]}: its configuration does not rebuild the model it was exported from")
    return objective


class BundleContext(RunContext):
    """A RunContext without a dataset: the image shape comes from the bundle."""

    def __init__(self, cfg, device, seed, image_shape):
        super().__init__(cfg, None, None, device, seed, None)
        self._image_shape = tuple(image_shape)

    @property
    def image_shape(self):
        return self._image_shape


class VCTBundle:
    """A loaded bundle. ``objective``: the setting's module with the bundle's weights (eval
    mode); ``encoder``: its VCT_Encoder; ``decoder``: its VCT decoder (None for the GAN
    settings); ``setting``, ``config`` (config.json) and ``folder``.

        bundle = VCTBundle.from_pretrained("DIR")          # or "USER/REPO" on the hub
        concepts = bundle.encode(images)                   # (B, C, H, W) in [-1, 1]
        images = bundle.decode(concepts)
    """

    def __init__(self, objective, setting, config, folder):
        self.objective, self.setting, self.config, self.folder = objective, setting, config, Path(folder)

    @classmethod
    def from_pretrained(cls, name_or_path, device="cpu", revision=None, bindings=()):
        """Load a bundle folder, or a hub repo id (``revision``: its branch, tag or commit).
        Its gin configuration replaces any loaded one; ``bindings`` are applied after it.
        The global RNG is left as it was."""
        folder = bundle_folder(name_or_path, revision)
        config = read_config(folder)
        setting = get_setting(config["setting"])
        load_gin([], rebuild_bindings(config, list(bindings)), config_text=config["gin_config"], trusted=False)
        ctx = BundleContext(RunConfig(), pick_device(str(device)), config["seed"], config["image_shape"])
        with torch.random.fork_rng(devices=[]):
            objective = build_objective(setting, ctx, config, folder)
        return cls(objective, setting, config, folder)

    @property
    def encoder(self):
        return self.objective.encoder

    @property
    def decoder(self):
        return getattr(self.objective, "decoder", None)

    @property
    def device(self):
        return next(self.objective.parameters()).device

    def encode(self, images):
        """Images (B, C, H, W) in [-1, 1] -> concept tokens (B, concepts, dim)."""
        return self.objective.encode_images(images.to(self.device))

    def decode(self, concepts):
        """Concept tokens -> images (B, C, H, W) in [-1, 1]."""
        if not hasattr(self.objective, "decode_concepts"):
            raise UserError(f"the '{self.setting.name}' setting has no decoder: its concepts are not decoded")
        return self.objective.decode_concepts(concepts.to(self.device))


# ============================================================================ writing

def safetensors_state(objective):
    """(tensors, metadata) of everything the objective holds: its state_dict and its
    non-persistent buffers (CLIP's normalisation; named in the metadata). A tensor reachable
    under several names (tied weights) is stored once; the metadata maps the others to it."""
    state = objective.state_dict()
    extra = {name: buffer for name, buffer in objective.named_buffers() if name not in state}
    tensors, aliases, seen = {}, {}, {}
    for name, tensor in {**state, **extra}.items():
        tensor = tensor.detach()
        where = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                 tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if where in seen:
            aliases[name] = seen[where]
            continue
        seen[where] = name
        # own, contiguous storage: safetensors stores no views into a shared buffer
        tensors[name] = tensor.cpu().clone(memory_format=torch.contiguous_format)
    metadata = {"format": "pt", "aliases": json.dumps(aliases, sort_keys=True),
                "non_persistent_buffers": json.dumps(sorted(extra))}
    return tensors, metadata


def _metrics_of_run(run_dir, step):
    """(payload, file name) of the run's metrics JSON of ``step``, else its newest; None."""
    from training.report import newest_metrics, step_metrics_path
    own = step_metrics_path(run_dir, step) if isinstance(step, int) else None
    if own is not None and own.is_file():
        return json.loads(own.read_text()), own.name
    newest = newest_metrics(run_dir)
    return (newest[1], newest[0].name) if newest is not None else None


def _without_operative_config(record):
    return {key: value for key, value in (record or {}).items() if key != "operative_config"}


def _final_metrics(run_dir, step):
    """(the bundle's "metrics" entry, the provenance the metrics were computed with) of a run."""
    found = _metrics_of_run(run_dir, step)
    if found is None:
        return None, None
    payload, name = found
    settings = dict(payload.get("settings", {}))
    trained = settings.pop("provenance", None)
    return ({"file": name, "step": settings.get("step"), "results": payload.get("results", {}),
             "settings": settings}, _without_operative_config(trained) or None)


def bundle_config(setting, ctx, objective, checkpoint, state, bindings) -> dict:
    """config.json of a run's objective loaded from ``checkpoint`` (its ``state``)."""
    run_dir = ctx.run_dir
    run_args = load_run_args(run_dir) if (run_dir / "run_args.json").is_file() else {}
    operative = run_dir / "operative_config.gin"
    metrics, trained = _final_metrics(run_dir, state.get("step"))
    tokenizer = getattr(objective, "tokenizer", None)
    pinned = tokenizer.bundle_bindings() if hasattr(tokenizer, "bundle_bindings") else []
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "setting": setting.name,
        "gin_config": state["gin_config"], "export_bindings": list(bindings), "pinned_bindings": pinned,
        "operative_config": operative.read_text() if operative.is_file() else gin.operative_config_str(),
        "step": state.get("step"), "seed": ctx.seed, "image_shape": [int(v) for v in ctx.image_shape],
        "dataset": ctx.cfg.name, "config": Path(run_args["config"]).name if run_args.get("config") else None,
        "concepts": int(objective.encoder.latents.shape[0]), "decodes": hasattr(objective, "decode_concepts"),
        "source": {"run": run_dir.name, "checkpoint": Path(checkpoint).name, "run_id": run_args.get("run_id"),
                   "precision": run_args.get("precision")},
        "provenance": {"training": trained,
                       "export": _without_operative_config(provenance(ctx.seed, ctx.device, run_args.get("run_id")))},
        "metrics": metrics, "model_ids": model_ids(objective),
    }


def _empty_folder(out) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; give a new or empty folder")
    return out


def export_bundle(checkpoint, out, bindings=(), config=None) -> Path:
    """Write the bundle of a run directory (its newest checkpoint) or checkpoint file into the
    new or empty folder ``out``; ``bindings`` (gin) e.g. point at moved data or VQ-VAE files;
    ``config`` replaces the checkpoint's own gin configuration (one saved before it held one).
    config.json is written last: a folder an export stopped in is no bundle."""
    from safetensors.torch import save
    from training.evaluate_run import load_saved_run
    if is_bundle(checkpoint):
        raise UserError(f"{checkpoint} is a bundle already; export a run directory or checkpoint")
    out = _empty_folder(out)
    setting, ctx, objective, path, state = load_saved_run(checkpoint, config, list(bindings), device="cpu")
    if config is not None:  # the bundle records the configuration it was loaded with
        state = {**state, "gin_config": gin.config_str()}
    config = bundle_config(setting, ctx, objective, path, state, bindings)
    tensors, metadata = safetensors_state(objective)
    with atomic_write(out / WEIGHTS_NAME, "wb") as file:
        file.write(save(tensors, metadata=metadata))
    atomic_write_text(out / CARD_NAME, model_card(config, str(out)))
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return out


# ============================================================================ model card

def _card_value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{float(value):.4f}"


def _card_training(config) -> list:
    source = config["source"]
    rows = [("setting", config["setting"]), ("dataset", config["dataset"]), ("config", config.get("config")),
            ("steps", config.get("step")), ("seed", config["seed"]), ("concept tokens", config["concepts"]),
            ("image shape (H, W, C)", tuple(config["image_shape"])), ("precision", source.get("precision")),
            ("run", source.get("run")), ("checkpoint", source.get("checkpoint")), ("run id", source.get("run_id"))]
    return ["## Training", "", "| | |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows], "",
            "The whole gin configuration is `gin_config` in config.json (`operative_config`: every value the "
            "run used).", ""]


def _card_metrics(metrics) -> list:
    from training.report import metric_rows
    if metrics is None:
        return ["## Metrics", "", "The run was not evaluated (no metrics/*.json); `python evaluate.py "
                "--checkpoint` on this folder scores it.", ""]
    rows = metric_rows(metrics["results"])
    return ["## Metrics", "", f"From the run's `{metrics['file']}` (step {metrics.get('step')}).", "",
            "| metric | score | value |", "|---|---|---:|",
            *[f"| {metric} | {score} | {_card_value(value)} |" for metric, score, value in rows], ""]


def _card_provenance(provenance_record) -> list:
    lines = ["## Provenance", ""]
    for when in ("training", "export"):
        record = provenance_record.get(when)
        if not record:
            lines += [f"- {when}: not recorded", ""]
            continue
        versions = ", ".join(f"{name} {version}" for name, version in record.get("versions", {}).items() if version)
        lines += [f"- {when}: git commit `{record.get('git_commit')}` (uncommitted changes: "
                  f"{record.get('git_dirty')}), Python {record.get('python')}, {versions}; device "
                  f"{record.get('device')}"]
    return lines + [""]


def _card_usage(config, folder) -> list:
    data = "get_args.data_dir = 'PATH'"
    shape = config["image_shape"]
    decode = ["images = bundle.decode(concepts)"] if config.get("decodes", True) else []
    return ["## Use", "",
            "With the VCT project's code (a checkout of its repository; `hf download USER/REPO --local-dir "
            f"{folder}` fetches an uploaded bundle):", "", "```bash",
            f"python evaluate.py --checkpoint {folder}      # metrics -> {folder}/metrics/evaluate_model.json",
            f"python visualize.py --checkpoint {folder}     # report.html in {folder}", "```", "",
            f"evaluate.py and visualize.py build the `{config['dataset']}` dataset from the configuration; if it "
            f"is elsewhere here, add `--gin_bindings \"{data}\"`.", "", "```python",
            "from training.bundle import VCTBundle", "",
            f'bundle = VCTBundle.from_pretrained("{folder}")   # or "USER/REPO" on the Hugging Face hub',
            f"concepts = bundle.encode(images)   # images (B, {shape[2]}, {shape[0]}, {shape[1]}) in [-1, 1] "
            f"-> (B, {config['concepts']}, dim)", *decode, "```", "",
            "Upload (once `hf auth login`; only the bundle's three files):", "", "```bash",
            f"hf upload USER/REPO {folder} --include model.safetensors --include config.json --include README.md",
            "```", "", "```python", "from huggingface_hub import upload_folder", "",
            f'upload_folder(repo_id="USER/REPO", folder_path="{folder}", allow_patterns={list(BUNDLE_FILES)!r})',
            "```", ""]


def model_card(config, folder) -> str:
    """README.md of a bundle (``folder``: its path, in the commands): what it was trained on,
    its final metrics, provenance and the commands that evaluate, visualize, load and upload it."""
    header = ["---", "tags:", "- vct", "- visual-concepts-tokenization", "- disentanglement", "---", "",
              f"# VCT concept tokens: {config['dataset']} ({config['setting']} setting)", "",
              f"Visual Concepts Tokenization (VCT) trained on `{config['dataset']}` for {config.get('step')} steps "
              f"(seed {config['seed']}): {config['concepts']} concept tokens per image. `model.safetensors` holds "
              f"every weight (the frozen tokenizer's too), `config.json` the configuration that rebuilds it.", ""]
    return "\n".join(header + _card_training(config) + _card_metrics(config.get("metrics"))
                     + _card_provenance(config["provenance"]) + _card_usage(config, folder))
