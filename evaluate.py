"""Evaluate a saved VCT run, in whatever setting it was trained:

    python evaluate.py --checkpoint runs/shapes3d_ce-seed0          # a run dir: its newest checkpoint
    python evaluate.py --checkpoint PATH/checkpoint_00005000.pt --metrics mig dci --out results.json
    python evaluate.py --config toy_ce.gin --untrained              # a randomly initialised baseline
    python evaluate.py --checkpoint bundles/shapes3d                # a bundle folder (export.py)

The checkpoint names its setting and holds its gin configuration, so no --config is needed
(a given --config replaces the saved one, e.g. for another data_dir). A bundle is rebuilt from
its config.json and model.safetensors alone (no VQ-VAE file); the dataset it is scored on is
built from its configuration (move it with --gin_bindings "get_args.data_dir = 'PATH'"). VQ-VAE and CLIP runs are
scored on the disentanglement metrics, mask runs on ARI / FG-ARI / mBO. The JSON holds the
scores, the settings used and the git commit; a table is printed.
"""
import argparse
from pathlib import Path

METRIC_NAMES = ("beta_vae", "factor_vae", "mig", "dci", "sap", "modularity_explicitness", "irs")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file, a run directory (its newest checkpoint), or a "
                        "bundle folder written by export.py")
    source.add_argument("--untrained", action="store_true",
                        help="evaluate randomly initialised VCT modules (a baseline; needs --config)")
    parser.add_argument("--config", default=None, help="gin config (path or name under configs/); default: "
                        "the one saved in the checkpoint")
    parser.add_argument("--setting", default=None, help="setting of an --untrained baseline: vq (default), "
                        "mask or clip; a checkpoint names its own")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help=f"disentanglement metrics to run ({', '.join(METRIC_NAMES)}; default: the "
                             f"configured VCT protocol)")
    parser.add_argument("--out", default=None, help="results JSON (default: the run dir's "
                        "metrics/evaluate_<checkpoint>.json; a bundle's: BUNDLE/metrics/evaluate_model.json, "
                        "its evaluation cache in BUNDLE/eval_cache/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the untrained baseline (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra gin binding (repeatable)")
    args = parser.parse_args(argv)
    if args.untrained and args.config is None:
        parser.error("--untrained needs --config")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    from training.evaluate_run import evaluate_saved_run
    evaluation, out = evaluate_saved_run(args)
    from evaluation.runner import format_table
    print(format_table(evaluation.results))
    print(f"results: {out}")


if __name__ == "__main__":
    from training.cli import run_main
    run_main(main)
