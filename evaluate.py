"""Evaluate a VCT checkpoint on the disentanglement metrics (VCT protocol, spec section 7).

    python evaluate.py --config shapes3d_ce.gin --checkpoint runs/shapes3d_ce-seed0
    python evaluate.py --config toy_ce.gin --checkpoint PATH --metrics mig dci --out results.json

--checkpoint takes a checkpoint file or a run directory (its newest checkpoint). The JSON holds
the scores, the settings used and the git commit; a table is printed.
"""
import argparse
from pathlib import Path

from evaluation.metrics import METRICS
from evaluation.runner import format_table, write_results_json
from training import checkpoint as ckpt
from training.cli import UserError, load_gin, pick_device, resolve_config, run_main
from training.config import bound_run_config
from training.data import build_dataset
from training.evaluate import evaluate_encoder
from training.runs import build_vct, seed_everything


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="gin config (path or name under configs/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file, or a run directory (newest checkpoint)")
    source.add_argument("--untrained", action="store_true",
                        help="evaluate a randomly initialised VCT encoder (a baseline)")
    parser.add_argument("--metrics", nargs="+", choices=sorted(METRICS), default=None,
                        help="metrics to run (default: the configured VCT protocol)")
    parser.add_argument("--out", default=None, help="results JSON (default: next to the checkpoint)")
    parser.add_argument("--concepts_num", type=int, default=None, help="override get_args.concepts_num")
    parser.add_argument("--seed", type=int, default=0, help="seed for the untrained baseline (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra gin binding (repeatable)")
    args = parser.parse_args(argv)

    config = resolve_config(args.config)
    load_gin([config], args.gin_bindings)
    cfg = bound_run_config(concepts_num=args.concepts_num)
    device = pick_device(args.device)
    seed_everything(args.seed)
    data = build_dataset(cfg.name, cfg.data_dir)
    objective = build_vct(cfg, device).to(device).eval()
    key = f"untrained-seed{args.seed}"
    if args.checkpoint:
        path = Path(args.checkpoint)
        if path.is_dir():
            path = ckpt.latest_checkpoint(path)
            if path is None:
                raise UserError(f"no checkpoint under {args.checkpoint}/checkpoints")
        state = ckpt.load_checkpoint(path, map_location=device)
        objective.load_model_state(state, lambda m, sd, what: ckpt.load_model_state(m, sd, what, path))
        key = f"{path.resolve()}-step{state.get('step')}"
    out = Path(args.out) if args.out else (
        path.parent.parent / "metrics" / f"evaluate_{path.stem}.json" if args.checkpoint
        else Path("runs") / f"evaluate_untrained_{config.stem}_seed{args.seed}.json")
    results, settings = evaluate_encoder(objective.encode_images, data, device, metrics=args.metrics,
                                         cache_dir=str(out.parent / "eval_cache"), cache_key=key)
    write_results_json(str(out), results, settings={**settings, "config": str(config),
                                                    "checkpoint": args.checkpoint, "untrained": args.untrained})
    print(format_table(results))
    print(f"results: {out}")


if __name__ == "__main__":
    run_main(main)
