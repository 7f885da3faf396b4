"""Trivial scene-decomposition baselines, scored by the same code as main_vct_mask.py's
metrics (evaluation.decomposition.evaluate_decomposition) on the same held-out scenes:

    python -m training.scene_baselines --config toy_scenes_ce.gin [--out baselines.json]

- single_segment: every pixel in one segment;
- kmeans_k<C>: per-image k-means of the pixel colours into C = concepts_num clusters (as many
  segments as the model has concepts);
- kmeans_gt_count: the same with, per image, the number of ground-truth segments (an oracle).
"""
import argparse
import functools

from evaluation.decomposition import evaluate_decomposition, kmeans_segments, single_segment
from evaluation.runner import format_table, write_results_json
from training.cli import load_gin, resolve_config, run_main
from training.config import RunConfig
from training.data import build_dataset
from training.tokenizers.mask import heldout_scenes, scene_evaluation_settings


def scene_baselines(cfg, settings, seed=0, progress=True):
    """{baseline name: object_metrics dict} on the held-out scenes of ``cfg``, and the split."""
    data = build_dataset(cfg.name, cfg.data_dir)
    scenes, split = heldout_scenes(cfg, settings["split"], data)
    score = functools.partial(evaluate_decomposition, scenes=scenes, num_images=settings["num_images"],
                              batch_size=settings["batch_size"], progress=progress)
    results = {
        "single_segment": score(single_segment),
        f"kmeans_k{cfg.concepts_num}": score(functools.partial(kmeans_segments, num_segments=cfg.concepts_num,
                                                               seed=seed)),
        "kmeans_gt_count": score(functools.partial(kmeans_segments, seed=seed), pass_segment_counts=True),
    }
    return results, split


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m training.scene_baselines",
        description="Score trivial scene decompositions (one segment; colour k-means) with ARI, FG-ARI "
                    "and mBO on a config's held-out scenes, through the evaluation code main_vct_mask.py uses.")
    parser.add_argument("--config", required=True, help="gin config: a path, or a name under configs/ "
                        "(e.g. toy_scenes_ce.gin)")
    parser.add_argument("--seed", type=int, default=0, help="k-means random state (default 0)")
    parser.add_argument("--concepts_num", type=int, default=None,
                        help="k-means clusters (default: the config's get_args.concepts_num)")
    parser.add_argument("--num_images", type=int, default=None,
                        help="held-out images scored (default: scene_evaluation.num_images)")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    parser.add_argument("--gin_bindings", action="append", default=[], metavar="BINDING",
                        help="extra gin binding (repeatable)")
    args = parser.parse_args(argv)
    concepts = [] if args.concepts_num is None else [f"get_args.concepts_num = {args.concepts_num}"]
    load_gin([resolve_config(args.config)], args.gin_bindings + concepts)
    cfg = RunConfig()
    settings = scene_evaluation_settings()
    if args.num_images is not None:
        settings["num_images"] = args.num_images
    results, split = scene_baselines(cfg, settings, seed=args.seed)
    print(format_table(results))
    if args.out:
        write_results_json(args.out, results, settings={**settings, "split": split, "config": cfg.name,
                                                        "seed": args.seed, "concepts": cfg.concepts_num})
        print(f"results: {args.out}")


if __name__ == "__main__":
    run_main(main)
