"""Disentanglement evaluation of a concept encoder: what training runs periodically and
evaluate.py runs on a saved run. The protocol is the published one: every image of the
dataset is encoded once, PCA(1) per concept gives a code per image, and the metrics look
codes up by image index."""
import gin
import torch

from evaluation.representation import tabulate_representation
from evaluation.runner import VCT_PROTOCOL, run_metrics


@gin.configurable("evaluation")
def evaluation_settings(metrics=VCT_PROTOCOL, method="pca", num_fit=None, batch_size=64, seed=0):
    """Knobs a .gin file sets as ``evaluation.<name>``.

    metrics: which metrics (their sample sizes are bound on the metrics themselves, e.g.
      ``mig.num_train``). method: 'pca' (published: PCA(1) per concept) or 'norm' (per-concept
      L2 norm). num_fit: images the PCA is fitted on; None = all of them (published).
    """
    return {"metrics": tuple(metrics), "method": method, "num_fit": num_fit, "batch_size": batch_size,
            "seed": seed}


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

    data, representation = tabulate_representation(
        encode, data, method=settings["method"], num_fit=settings["num_fit"], fit_seed=settings["seed"],
        batch_size=settings["batch_size"], cache_dir=cache_dir, cache_key=cache_key, progress=progress)
    results = run_metrics(data, representation, metrics=settings["metrics"], random_state_seed=settings["seed"])
    return results, {**settings, "metrics": list(settings["metrics"])}
