"""VCT's scene-decomposition setting (main_vct_mask.py, spec section 8).

The frozen VQ-VAE encoder gives the image tokens (the same tokens as main_vct.py); the
concepts are decoded by the MaskDecoder (models/mask_decoder.py), each into an RGB image and a
mask, and the reconstruction is their mask-weighted sum, trained with pixel MSE plus the concept
disentangling loss (which detokenises through the same mask decoder, without a Gumbel step).
The per-concept masks are the decomposition: ARI, FG-ARI and mBO on a held-out split with
ground-truth masks are logged and written to the metrics JSON; the image grids add, per image,
every concept's masked RGB and the argmax segmentation.
"""
import math
from pathlib import Path

import gin
import torch
import torch.nn.functional as F

from datasets import SceneDataset, canonical_name, get_dataset
from evaluation.decomposition import check_scenes_have_masks, evaluate_decomposition
from evaluation.runner import write_results_json
from models.mask_decoder import MaskDecoder
from models.visual_concept_tokenizor import VCT_Encoder
from training.cli import UserError
from training.data import SYNTHETIC, image_shape_of
from training.objectives import VCTObjective
from training.runs import add_vct_hooks, load_vqvae, vct_main
from training.settings import VQTokenizer, at_least_float32
from training.visualize import mask_grid

MASK_DESCRIPTION = ("Train VCT concept tokens with the mask decoder (scene decomposition): each "
                    "concept is decoded into an RGB image and a mask, the reconstruction is their "
                    "mask-weighted sum (pixel MSE + concept disentangling loss). Logs ARI / FG-ARI / "
                    "mBO of the concept masks on a held-out split with ground-truth masks.")
SCORES = ("ari", "fg_ari", "mbo")


class MaskSetting(VQTokenizer):
    """Frozen VQ-VAE tokens in; the images themselves are the reconstruction targets; the
    decoder output (a MaskOutput) is detokenised to its composite image."""

    def tokenize(self, images, indices=None):
        return self.retokenize(images), images

    def reconstruction_loss(self, output, images):
        return F.mse_loss(at_least_float32(output.image), at_least_float32(images))

    @torch.no_grad()
    def detokenize(self, output, generator=None):
        return output.image


class MaskVCTObjective(VCTObjective):
    """VCTObjective whose ``decoder`` is a MaskDecoder (saved as the VCT decoder,
    ``decoder_model_state_dict``); adds the per-concept decomposition."""

    @torch.no_grad()
    def decompose(self, images):
        """Images (B, 3, H, W) in [-1, 1] -> MaskOutput of their concepts."""
        return self.decoder(self.encode_images(images))

    def concept_masks(self, images):
        """(B, concepts, H, W) masks, summing to 1 over the concepts at every pixel."""
        return self.decompose(images).masks

    @torch.no_grad()
    def decode_concepts(self, concepts):
        return self.decoder(concepts).image


def image_size_of(cfg):
    """Image side implied by the token count (the VQ-VAE downsamples by 4)."""
    return 4 * math.isqrt(cfg.shape_num)


def build_mask_vct(cfg, device, num_channels=3, args=None):
    """Frozen VQ-VAE tokenizer + VCT encoder + mask decoder (gin: ``MaskDecoder.*``)."""
    vqvae = load_vqvae(cfg.vqvae_path, cfg.hidden, cfg.k, num_channels, device)
    encoder = VCT_Encoder(z_index_dim=cfg.concepts_num, dim=cfg.hidden)
    decoder = MaskDecoder(image_size=image_size_of(cfg), num_channels=num_channels)
    return MaskVCTObjective(encoder, decoder, MaskSetting(vqvae), dis_loss=cfg.dis_loss,
                            swap_min_change=cfg.swap_min_change)


@gin.configurable("scene_evaluation")
def scene_evaluation_settings(num_images=256, batch_size=64, split="test", grid_images=8):
    """Knobs a .gin file sets as ``scene_evaluation.<name>``: the number of held-out images
    scored (their first ``num_images``), the batch size, the split (clevr layout: 'test' =
    clevr_test/, with masks.npz) and the images in the decomposition grid."""
    return {"num_images": num_images, "batch_size": batch_size, "split": split,
            "grid_images": grid_images}


def heldout_scenes(cfg, split, train_data):
    """(scenes, split name) the decomposition is scored on: the clevr layout's ``split``
    (synthetic_scenes writes one); other scene datasets have one split, scored as 'train'."""
    loader = SYNTHETIC[cfg.name][1] if cfg.name in SYNTHETIC else canonical_name(cfg.name)
    if loader == "clevr":
        return get_dataset("clevr", cfg.data_dir, split=split), split
    print(f"note: {cfg.name} has no held-out split; scoring the decomposition on its training images")
    return train_data, "train"


def add_mask_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed):
    """The VQ setting's swap and reconstruction grids, plus the decomposition grid and the
    ARI / FG-ARI / mBO metrics on the held-out scenes."""
    if not isinstance(data, SceneDataset):
        raise UserError(f"main_vct_mask.py needs a multi-object scene dataset with instance masks "
                        f"(clevr, synthetic_scenes, objects_room, ...); {cfg.name} is not one")
    settings = scene_evaluation_settings()
    scenes, split = heldout_scenes(cfg, settings["split"], data)
    check_scenes_have_masks(scenes, f"{cfg.name} {split} split")
    train_shape, heldout_shape = image_shape_of(data), image_shape_of(scenes)
    if heldout_shape != train_shape:
        raise UserError(f"the {split} scenes are {heldout_shape[0]}x{heldout_shape[1]} but the training "
                        f"images are {train_shape[0]}x{train_shape[1]}")
    add_vct_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed)
    count = min(settings["grid_images"], len(scenes))
    samples = torch.stack([scenes[i][0] for i in range(count)]).to(device)

    def decomposition_grid_hook(step):
        grid = mask_grid(samples, objective.decompose(samples))
        trainer.log.image(step, "vct_mask/decomposition", grid, Path(run_dir) / "images" / f"masks_{step:08d}.png")

    def metrics_hook(step):
        scores = evaluate_decomposition(objective.concept_masks, scenes, settings["num_images"],
                                        settings["batch_size"], device)
        results = {"scene_decomposition": scores}
        path = Path(run_dir) / "metrics" / f"metrics_{step:08d}.json"
        write_results_json(str(path), results, settings={**settings, "split": split, "step": step,
                                                         "config": cfg.name, "concepts": cfg.concepts_num})
        trainer.log.scalars(step, {name: scores[name] for name in SCORES}, prefix="eval")
        trainer.last_metrics, trainer.last_metrics_path = results, path

    def interval(value):  # None: with the checkpoints; 0: never (but see at_end)
        return cfg.save_interval if value is None else value

    trainer.add_hook(interval(cfg.image_interval), decomposition_grid_hook)
    trainer.add_hook(interval(cfg.eval_interval), metrics_hook, at_end=cfg.evaluate_at_end)


def mask_main(argv=None):
    return vct_main(argv, prog="main_vct_mask.py", description=MASK_DESCRIPTION, build=build_mask_vct,
                    add_hooks=add_mask_hooks, run_tag="-mask")
