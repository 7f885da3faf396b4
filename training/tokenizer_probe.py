"""How much of each ground-truth factor a saved run's frozen tokenizer keeps in its image tokens:

    python -m training.tokenizer_probe --checkpoint RUN_DIR [--images 4000] [--out probe.json]

A linear probe (evaluation/factor_probe.py) per factor on the tokens of a held-out split. A
factor the probe cannot read is one no concept token can carry, whatever the VCT recipe. For a
tokenizer with discrete targets (the VQ-VAE's code indices) the features are the one-hot codes
per position; otherwise the continuous tokens.
"""
import argparse
import json
import sys

import numpy as np
import torch

from evaluation.factor_probe import factor_probe
from training.errors import UserError


@torch.no_grad()
def token_features(tokenizer, images):
    """(B, features) of images (B, C, H, W) in [-1, 1]: one-hot code indices per position for a
    tokenizer whose targets are codes, else the flattened tokens."""
    tokens, targets = tokenizer.tokenize(images)
    if not targets.dtype.is_floating_point and targets.dim() == 2 and hasattr(tokenizer, "num_codes"):
        return torch.nn.functional.one_hot(targets, tokenizer.num_codes).flatten(1).to(torch.uint8)
    return tokens.flatten(1).float()


def probe_features(ctx, features_of, num_images=4000, batch_size=256, seed=0):
    """(features, factors) over ``num_images`` random images of the run's ground-truth data:
    ``features_of(images on the run's device)`` per batch, as numpy, and the images' factors."""
    data = ctx.data
    count = min(int(num_images), data.num_observations)
    indices = np.sort(np.random.RandomState(seed).choice(data.num_observations, count, replace=False))
    features, factors = [], []
    for start in range(0, count, batch_size):
        images, batch_factors, _ = ctx.batches[indices[start:start + batch_size]]
        features.append(features_of(images.to(ctx.device)).cpu().numpy())
        factors.append(np.asarray(batch_factors))
    return np.concatenate(features), np.concatenate(factors)


def probe_tokenizer(ctx, tokenizer, num_images=4000, batch_size=256, seed=0):
    """The factor probe of ``tokenizer`` on ``num_images`` images of the run's ground-truth data."""
    features, factors = probe_features(ctx, lambda images: token_features(tokenizer, images),
                                       num_images, batch_size, seed)
    return factor_probe(features, factors, ctx.data.factor_names, seed=seed)


def load_probed_run(prog, description, default_images, argv):
    """(args, ctx, objective) of a probe's command line: the saved run, with its ground truth."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a VCT run directory or checkpoint file")
    parser.add_argument("--images", type=int, default=default_images,
                        help=f"images probed, 80%% train / 20%% test (default {default_images})")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from training.evaluate_run import load_saved_run
    _, ctx, objective, _, _ = load_saved_run(args.checkpoint, device=args.device)
    if not getattr(ctx.data, "factor_names", None):
        raise UserError("the run's data has no ground-truth factors to probe")
    return args, ctx, objective


def write_result(args, result):
    """The probe CLIs' ending: ``result`` as JSON to ``--out`` when given; exit status 0."""
    if args.out:
        with open(args.out, "w") as file:
            json.dump(result, file, indent=2)
    return 0


def main(argv=None):
    args, ctx, objective = load_probed_run("python -m training.tokenizer_probe", __doc__, 4000, argv)
    result = probe_tokenizer(ctx, objective.tokenizer, args.images)
    for name, accuracy in result["accuracy"].items():
        print(f"{name:>14}: {accuracy:.3f} (chance {result['chance'][name]:.3f})")
    return write_result(args, result)


if __name__ == "__main__":
    from training.cli import run_main
    sys.exit(run_main(main))
