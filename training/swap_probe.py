"""What each concept's swap visibly changes, factor by factor (evaluation/swap_effects.py):

    python -m training.swap_probe --checkpoint RUN_DIR [--images 3000] [--out swaps.json]

A factor classifier (a linear probe on the frozen tokenizer's tokens, as in
training.tokenizer_probe) is fitted on ``--images`` real images, then reads the images the swap
grid shows: the decoded source, the decoded target, and the source decoded with concept j from
the target, over ``--images // 4`` random pairs. Printed per concept: the share of pairs whose
differing factor the swap carried over (and how often the classifier reads the decoded
source as its true factor); and the concepts that carry exactly one factor (at
least half the pairs) and leave every other alone (under a fifth), with the number of distinct
factors they cover: the swap grid's "concepts that each change one attribute".
"""
import sys

import numpy as np
import torch

from evaluation.factor_probe import FactorClassifier
from evaluation.swap_effects import swap_effects
from training.tokenizer_probe import load_probed_run, probe_features, token_features, write_result


def images_at(ctx, indices):
    """(images, factors) of the run's data at ``indices``, in that order (read in increasing
    order, as h5 wants)."""
    order = np.argsort(indices)
    images, factors, _ = ctx.batches[indices[order]]
    back = np.argsort(order)
    return images[torch.from_numpy(back)].to(ctx.device), np.asarray(factors)[back]


@torch.no_grad()
def swapped_labels(objective, classify, sources, targets, chunk=64):
    """(source labels (N, F), target labels (N, F), swapped labels (C, N, F)) of the decoded
    images, each labelled by ``classify(images)``."""
    src, tgt = objective.encode_images(sources), objective.encode_images(targets)
    label = lambda concepts: np.concatenate([classify(objective.decode_concepts(part))
                                             for part in concepts.split(chunk)])
    swapped = []
    for j in range(src.shape[1]):
        mixed = src.clone()
        mixed[:, j] = tgt[:, j]
        swapped.append(label(mixed))
    return label(src), label(tgt), np.stack(swapped)


def main(argv=None):
    args, ctx, objective = load_probed_run("python -m training.swap_probe", __doc__, 3000, argv)
    objective.eval()
    tokenizer = objective.tokenizer
    features, factors = probe_features(ctx, lambda images: token_features(tokenizer, images), args.images)
    classifier = FactorClassifier(features, factors)
    classify = lambda images: classifier.predict(token_features(tokenizer, images).cpu().numpy())

    pairs = min(max(args.images // 4, 1), ctx.data.num_observations)
    rng = np.random.RandomState(1)  # other draws than the classifier's sample (seed 0)
    (sources, truth), (targets, _) = (images_at(ctx, rng.choice(ctx.data.num_observations, pairs, replace=False))
                                      for _ in range(2))
    source_labels, target_labels, swapped = swapped_labels(objective, classify, sources, targets)
    result = swap_effects(source_labels, target_labels, swapped, ctx.data.factor_names)
    # how often the classifier reads the decoded source as the source's true factor: low values
    # mean the reconstruction itself loses the factor, whatever the swaps do
    result["decoded_accuracy"] = dict(zip(result["factor_names"], map(float, (source_labels == truth).mean(0))))

    names = result["factor_names"]
    print(f"{'concept':>8}  " + "  ".join(f"{name[:11]:>11}" for name in names))
    for concept, row in enumerate(result["transfer"]):
        cells = ["          -" if v is None else f"{v:11.2f}" for v in row]
        mark = f"  <- {result['single_factor_concepts'][str(concept)]}" if str(concept) in result["single_factor_concepts"] else ""
        print(f"{'c' + str(concept):>8}  " + "  ".join(cells) + mark)
    print(f"{'decoded':>8}  " + "  ".join(f"{v:11.2f}" for v in result["decoded_accuracy"].values())
          + "  (classifier on the decoded sources vs their true factors)")
    covered = sorted(set(result["single_factor_concepts"].values()))
    print(f"concepts that each carry one factor: {len(result['single_factor_concepts'])}; distinct factors: "
          f"{result['distinct_factors']} of {len(names)} ({', '.join(covered) or 'none'})")
    return write_result(args, result)


if __name__ == "__main__":
    from training.cli import run_main
    sys.exit(run_main(main))
