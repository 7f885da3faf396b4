"""Disentanglement evaluation of a concept encoder: the code training runs periodically and
the top-level evaluate.py runs on a checkpoint."""
import gin
import torch

from evaluation.representation import make_representation_function
from evaluation.runner import VCT_PROTOCOL, run_metrics


@gin.configurable("evaluation")
def evaluation_settings(metrics=VCT_PROTOCOL, method="pca", num_fit=10000, batch_size=64, seed=0):
    """Knobs a .gin file sets as ``evaluation.<name>``: which metrics (per-metric sample sizes
    are bound on the metrics themselves, e.g. ``mig.num_train``), 'pca' (published) or 'norm'
    codes, how many sampled images the PCA is fitted on, encoder batch size, random seed."""
    return {"metrics": tuple(metrics), "method": method, "num_fit": num_fit,
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

    representation = make_representation_function(
        encode, ground_truth_data=data, num_fit=settings["num_fit"], fit_seed=settings["seed"],
        method=settings["method"], batch_size=settings["batch_size"], cache_dir=cache_dir,
        cache_key=cache_key, progress=progress)
    results = run_metrics(data, representation, metrics=settings["metrics"],
                          random_state_seed=settings["seed"])
    return results, settings
