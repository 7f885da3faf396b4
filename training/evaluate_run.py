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


def evaluate_saved_run(args):
    """(Evaluation, results JSON path) for evaluate.py's parsed ``args``."""
    state, path, run_dir = None, None, None
    bindings = list(args.gin_bindings) + _metric_bindings(args.metrics)
    if args.checkpoint:
        path = ckpt.find_checkpoint(args.checkpoint)
        state = ckpt.load_checkpoint(path)
        if not isinstance(state, dict) or "encoder_model_state_dict" not in state:
            raise UserError(f"{path} is not a VCT checkpoint (no encoder weights; a VQ-VAE checkpoint is "
                            f"evaluated through the VCT run that uses it)")
        run_dir = _run_dir_of(path)
        name = _recorded_setting(state, run_dir)
        if args.config is None and not state.get("gin_config"):
            raise UserError(f"{path} holds no gin configuration; pass the run's --config")
        config_files, config_text = ([resolve_config(args.config)], None) if args.config else ([], state["gin_config"])
    else:
        name, config_files, config_text = args.setting or "vq", [resolve_config(args.config)], None
    setting = get_setting(name)
    load_gin(config_files, bindings, config_text=config_text, trusted=config_text is None)
    cfg, device = RunConfig(), pick_device(args.device)
    seed_everything(args.seed)
    data = build_dataset(cfg.name, cfg.data_dir)
    ctx = RunContext(cfg, data, batches_for(data), device, args.seed, run_dir)
    objective = setting.build(ctx).to(device).eval()
    if state is not None:
        objective.load_model_state(state, lambda m, sd, what: ckpt.load_model_state(m, sd, what, path))
    evaluation = setting.evaluate(ctx, objective, cache_key=ckpt.weights_key(objective))
    if evaluation is None:
        raise UserError(f"the '{name}' setting has no metrics for the {cfg.name} dataset")
    if args.metrics and not set(args.metrics) <= set(evaluation.results):
        raise UserError(f"--metrics applies to the disentanglement metrics; the '{name}' setting reports "
                        f"{', '.join(evaluation.results)}")
    out = Path(args.out) if args.out else (
        run_dir / "metrics" / f"evaluate_{path.stem}.json" if path is not None
        else Path("runs") / f"evaluate_untrained_{Path(args.config).stem}_seed{args.seed}.json")
    write_evaluation(out, evaluation, setting=name, config=cfg.name, checkpoint=args.checkpoint,
                     untrained=args.untrained)
    return evaluation, out
