"""Export a trained VCT run as a bundle: a folder that loads without the run directory, its
dataset or its VQ-VAE file, to share or upload to the Hugging Face hub:

    python export.py --checkpoint runs/shapes3d_ce-seed0 --out bundles/shapes3d    # newest checkpoint
    python export.py --checkpoint PATH/checkpoint_00005000.pt --out bundles/shapes3d-5k

writes model.safetensors (every weight of the model, the frozen tokenizer's too), config.json
(setting, gin configuration, image shape, step, seed, final metrics, provenance) and README.md
(a model card with the metrics and the commands below). The run's dataset and VQ-VAE file are
read once, here. Then:

    python evaluate.py --checkpoint bundles/shapes3d         # visualize.py likewise
    python -c "from training.bundle import VCTBundle; VCTBundle.from_pretrained('bundles/shapes3d')"
    hf upload USER/REPO bundles/shapes3d --include model.safetensors --include config.json --include README.md

Nothing is uploaded by this script.
"""
import argparse


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint file, or a run directory (its newest checkpoint)")
    parser.add_argument("--out", required=True, help="bundle folder to write (new or empty)")
    parser.add_argument("--config", default=None, help="gin config (path or name under configs/) instead of the "
                        "one saved in the checkpoint (for checkpoints that hold none)")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="extra gin binding for loading the run, e.g. \"get_args.data_dir = 'data'\" when its "
                             "data moved (repeatable; recorded in the bundle)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    from training.bundle import export_bundle
    out = export_bundle(args.checkpoint, args.out, args.gin_bindings, args.config)
    print(f"bundle: {out}")


if __name__ == "__main__":
    from training.cli import run_main
    run_main(main)
