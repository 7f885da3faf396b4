"""evaluate.py's work: rebuild a saved run's setting from its checkpoint (setting name and gin
configuration are stored in it), load the weights, and let the setting evaluate them."""
from pathlib import Path

from training import checkpoint as ckpt
from training.cli import load_gin, load_run_args, pick_device, resolve_config
from training.config import RunConfig
from training.data import batches_for, build_dataset, seed_everything
from training.errors import UserError
from training.runner import write_evaluation
from training.setting import RunContext, get_setting


def _run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def _recorded_setting(state, run_dir):
    if state.get("setting"):
        return state["setting"]
    if (run_dir / "run_args.json").is_file():
        return load_run_args(run_dir).get("setting", "vq")
    return "vq"  # checkpoints from before settings were recorded are VQ-VAE runs


def _metric_bindings(metrics):
    if metrics is None:
        return []
    from evaluation.metrics import METRICS
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)} (choose from {', '.join(sorted(METRICS))})")
    return [f"evaluation.metrics = {list(metrics)!r}"]


def _saved_configuration(path, state, config):
    """(gin files, gin text) of a checkpoint: its own configuration, or ``config`` instead."""
    if config is not None:
        return [resolve_config(config)], None
    if not state.get("gin_config"):
        raise UserError(f"{path} holds no gin configuration; pass the run's --config")
    return [], state["gin_config"]


def _context(setting_name, config_files, config_text, bindings, device, seed, run_dir):
    setting = get_setting(setting_name)
    load_gin(config_files, bindings, config_text=config_text, trusted=config_text is None)
    cfg = RunConfig()
    seed_everything(seed)
    data = build_dataset(cfg.name, cfg.data_dir)
    return setting, RunContext(cfg, data, batches_for(data), pick_device(device), seed, run_dir)


def _load_bundle(folder, config, bindings, device):
    """load_saved_run of a bundle (training/bundle.py): its folder serves as the run directory
    (evaluate.py's results and caches go there) and its config.json as the state."""
    from training import bundle
    saved = bundle.read_config(folder)
    files, text = ([resolve_config(config)], None) if config is not None else ([], saved["gin_config"])
    bindings = bundle.rebuild_bindings(saved, list(bindings), own_configuration=config is None)
    setting, ctx = _context(saved["setting"], files, text, bindings, device, saved["seed"], folder)
    bundle.check_image_shape(saved, ctx.image_shape, folder)
    objective = bundle.build_objective(setting, ctx, saved, folder)
    return setting, ctx, objective, folder / bundle.WEIGHTS_NAME, saved


def load_saved_run(checkpoint, config=None, bindings=(), device="auto"):
    """(setting, ctx, objective with the checkpoint's weights, checkpoint path, state) of a
    checkpoint file, run directory or bundle folder, rebuilt with the configuration it holds
    (``config`` replaces it) and the run's own seed (so grids show the run's fixed images)."""
    from training.bundle import is_bundle
    if is_bundle(checkpoint):
        return _load_bundle(Path(checkpoint), config, bindings, device)
    path = ckpt.find_checkpoint(checkpoint)
    state = ckpt.load_checkpoint(path)
    if not isinstance(state, dict) or not ({"encoder_model_state_dict", "setting"} & set(state)):
        raise UserError(f"{path} is not a VCT checkpoint (no encoder weights; a VQ-VAE checkpoint is "
                        f"used through the VCT run that uses it)")
    run_dir = _run_dir_of(path)
    seed = load_run_args(run_dir).get("seed", 0) if (run_dir / "run_args.json").is_file() else 0
    files, text = _saved_configuration(path, state, config)
    setting, ctx = _context(_recorded_setting(state, run_dir), files, text, list(bindings), device, seed, run_dir)
    objective = setting.build(ctx).to(ctx.device).eval()
    objective.load_model_state(state, lambda m, sd, what: ckpt.load_model_state(m, sd, what, path))
    return setting, ctx, objective, path, state


def evaluate_saved_run(args):
    """(Evaluation, results JSON path) for evaluate.py's parsed ``args``."""
    bindings = list(args.gin_bindings) + _metric_bindings(args.metrics)
    if args.checkpoint:
        setting, ctx, objective, path, _ = load_saved_run(args.checkpoint, args.config, bindings, args.device)
    else:
        path = None
        setting, ctx = _context(args.setting or "vq", [resolve_config(args.config)], None, bindings, args.device,
                                args.seed, None)
        objective = setting.build(ctx).to(ctx.device).eval()
    evaluation = setting.evaluate(ctx, objective, cache_key=ckpt.weights_key(objective))
    if evaluation is None:
        raise UserError(f"the '{setting.name}' setting has no metrics for the {ctx.cfg.name} dataset")
    if args.metrics and not set(args.metrics) <= set(evaluation.results):
        raise UserError(f"--metrics applies to the disentanglement metrics; the '{setting.name}' setting "
                        f"reports {', '.join(evaluation.results)}")
    out = Path(args.out) if args.out else (
        ctx.run_dir / "metrics" / f"evaluate_{path.stem}.json" if path is not None
        else Path("runs") / f"evaluate_untrained_{Path(args.config).stem}_seed{args.seed}.json")
    write_evaluation(out, evaluation, ctx, setting=setting.name, config=ctx.cfg.name, checkpoint=args.checkpoint,
                     untrained=args.untrained)
    return evaluation, out
