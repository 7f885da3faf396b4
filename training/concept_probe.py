"""Where each factor sits in a saved run's concept tokens (evaluation/concept_probe.py):

    python -m training.concept_probe --checkpoint RUN_DIR [--images 3000] [--out probe.json]

Per factor, the held-out accuracy of a linear probe on all concept tokens, on the best single
token, and on the best token's first principal component (what the metrics see).
"""
import argparse
import json
import sys

import torch

from evaluation.concept_probe import concept_probe
from training.errors import UserError
from training.tokenizer_probe import probe_features


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.concept_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a VCT run directory or checkpoint file")
    parser.add_argument("--images", type=int, default=3000, help="images probed, 80%% train / 20%% test (default 3000)")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from training.evaluate_run import load_saved_run
    _, ctx, objective, _, _ = load_saved_run(args.checkpoint, device=args.device)
    if not getattr(ctx.data, "factor_names", None):
        raise UserError("the run's data has no ground-truth factors to probe")
    objective.eval()

    @torch.no_grad()
    def concepts_of(images):
        return objective.encoder(objective.tokenizer.tokenize(images)[0]).float()

    concepts, factors = probe_features(ctx, concepts_of, args.images)
    result = concept_probe(concepts, factors, ctx.data.factor_names)
    print(f"{'factor':>14}  {'all tokens':>10}  {'best token':>14}  {'its 1st PC':>14}  chance")
    for name, accuracy in result["all"].items():
        (token_acc, token), (pc_acc, pc) = result["best_token"][name], result["best_component"][name]
        print(f"{name:>14}  {accuracy:10.3f}  {token_acc:8.3f} (c{token})  {pc_acc:8.3f} (c{pc})  {result['chance'][name]:.3f}")
    if args.out:
        with open(args.out, "w") as file:
            json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    from training.cli import run_main
    sys.exit(run_main(main))
