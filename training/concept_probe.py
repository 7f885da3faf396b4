"""Where each factor sits in a saved run's concept tokens (evaluation/concept_probe.py):

    python -m training.concept_probe --checkpoint RUN_DIR [--images 3000] [--out probe.json]

Per factor, the held-out accuracy of a linear probe on all concept tokens, on the best single
token, and on the best of the tokens' first principal components (the one number per concept
the metrics see).
"""
import sys

import torch

from evaluation.concept_probe import concept_probe
from training.tokenizer_probe import load_probed_run, probe_features, write_result


def main(argv=None):
    args, ctx, objective = load_probed_run("python -m training.concept_probe", __doc__, 3000, argv)
    objective.eval()

    @torch.no_grad()
    def concepts_of(images):
        return objective.encoder(objective.tokenizer.tokenize(images)[0]).float()

    concepts, factors = probe_features(ctx, concepts_of, args.images)
    result = concept_probe(concepts, factors, ctx.data.factor_names)
    print(f"{'factor':>14}  {'all tokens':>10}  {'best token':>14}  {'best 1st PC':>14}  chance")
    for name, accuracy in result["all"].items():
        (token_acc, token), (pc_acc, pc) = result["best_token"][name], result["best_component"][name]
        print(f"{name:>14}  {accuracy:10.3f}  {token_acc:8.3f} (c{token})  {pc_acc:8.3f} (c{pc})  {result['chance'][name]:.3f}")
    return write_result(args, result)


if __name__ == "__main__":
    from training.cli import run_main
    sys.exit(run_main(main))
