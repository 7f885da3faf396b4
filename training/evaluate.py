"""Disentanglement evaluation of a concept encoder: the code training runs periodically and
the top-level evaluate.py runs on a checkpoint."""
import gin
import torch

from evaluation.representation import make_representation_function, tabulate_representation
from evaluation.runner import VCT_PROTOCOL, run_metrics

MODES = ("table", "sample")


@gin.configurable("evaluation")
def evaluation_settings(metrics=VCT_PROTOCOL, mode="table", method="pca", num_fit=None,
                        batch_size=64, seed=0):
    """Knobs a .gin file sets as ``evaluation.<name>``.

    metrics: which metrics (their sample sizes are bound on the metrics themselves, e.g.
      ``mig.num_train``). mode: 'table' (published) encodes every image of the dataset once and
      the metrics look codes up by image index; 'sample' encodes each image the metrics draw
      (same numbers, many more encoder calls, but no pass over the whole dataset).
    method: 'pca' (published: PCA(1) per concept) or 'norm' (per-concept L2 norm).
    num_fit: images the PCA is fitted on; None = all of them (published).
    """
    if mode not in MODES:
        raise ValueError(f"evaluation.mode must be one of {MODES}, got {mode!r}")
    return {"metrics": tuple(metrics), "mode": mode, "method": method, "num_fit": num_fit,
            "batch_size": batch_size, "seed": seed}


def evaluate_encoder(encode_images, data, device, cache_dir=None, cache_key=None, progress=True,
                     metrics=None):
    """Run the configured metrics on ``data`` (GroundTruthData) with codes from
    ``encode_images`` (images (B, C, H, W) in [-1, 1] -> concept tokens (B, C, D)).
    Returns (results, settings)."""
    settings = evaluation_settings()
    if metrics is not None:
        settings["metrics"] = tuple(metrics)

    def encode(images):
        with torch.no_grad():
            return encode_images(images.to(device)).float().cpu()

    common = dict(method=settings["method"], num_fit=settings["num_fit"], fit_seed=settings["seed"],
                  batch_size=settings["batch_size"], cache_dir=cache_dir, cache_key=cache_key,
                  progress=progress)
    if settings["mode"] == "table":
        data, representation = tabulate_representation(encode, data, **common)
    else:
        representation = make_representation_function(encode, ground_truth_data=data, **common)
    results = run_metrics(data, representation, metrics=settings["metrics"],
                          random_state_seed=settings["seed"])
    return results, settings
