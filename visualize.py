"""Pictures of what a saved VCT run's concepts learned, in whatever setting it was trained:

    python visualize.py --checkpoint runs/toy_ce-seed0              # a run dir: its newest checkpoint
    python visualize.py --checkpoint PATH/checkpoint_00001000.pt --out pictures/
    python visualize.py --checkpoint bundles/toy --out pictures/    # a bundle folder (export.py)

writes report.html (and its pictures in report/) in the run directory, or in --out: the run's
configuration, newest metrics, training curves, the concept <-> factor heatmap and matching,
the swap grid labelled by that matching, per-concept traversals and cross-attention maps (mask
runs: the decomposition against the ground truth). The checkpoint names its setting and holds
its gin configuration; nothing is downloaded. A bundle is rebuilt from its own files; its
pictures use the dataset its configuration names, and its report the metrics evaluate.py
wrote into it.
"""
import argparse


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint file, a run directory (its newest checkpoint), or a bundle folder "
                             "written by export.py")
    parser.add_argument("--out", default=None, help="folder for report.html and report/ (default: the run "
                        "directory, or the bundle folder)")
    parser.add_argument("--config", default=None, help="gin config (path or name under configs/); default: "
                        "the one saved in the checkpoint")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra gin binding (repeatable)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    from training.visualize_run import visualize_saved_run
    print(f"report: {visualize_saved_run(args)}")


if __name__ == "__main__":
    from training.cli import run_main
    run_main(main)
