"""The mask-decoder tokenizer of the scene-decomposition setting (main_vct_mask.py).

The frozen VQ-VAE encoder gives the image tokens (the same tokens as main_vct.py); the
concepts are decoded by the MaskDecoder (models/mask_decoder.py), each into an RGB image and a
mask, and the reconstruction is their mask-weighted sum, trained with pixel MSE plus the concept
disentangling loss (which detokenises through the same mask decoder, without a Gumbel step).
The per-concept masks are the decomposition: its evaluation is ARI, FG-ARI and mBO on a
held-out split with ground-truth masks; the image grids add, per image, every concept's masked
RGB and the argmax segmentation.
"""
import math

import gin
import torch
import torch.nn.functional as F

from datasets import SceneDataset, canonical_name, get_dataset, resolve_data_dir
from evaluation.decomposition import check_scenes_have_masks, evaluate_decomposition
from models.mask_decoder import MaskDecoder
from training.data import SYNTHETIC, image_shape_of
from training.errors import UserError
from training.objectives import VCTObjective
from training.precision import at_least_float32
from training.setting import Evaluation, build_derived, check_derived
from training.tokenizers.vq import VQTokenizer, concept_grids, concept_width
from training.visualize import mask_grid


class MaskTokenizer(VQTokenizer):
    """Frozen VQ-VAE tokens in; the images themselves are the reconstruction targets; the
    decoder output (a MaskOutput) is detokenised to its composite image."""

    def tokenize(self, images, indices=None):
        return VQTokenizer.tokenize(self, images)[0], images  # the quantised tokens, as published

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
        data_dir = cfg.data_dir if cfg.name in SYNTHETIC else resolve_data_dir(cfg.data_dir)
        return get_dataset("clevr", data_dir, split=split), split
    print(f"note: {cfg.name} has no held-out split; scoring the decomposition on its training images")
    return train_data, "train"


def mask_decoder(ctx, encoder):
    """MaskDecoder at the images' size and channels over the encoder's concept tokens (its
    widths from the ``MaskDecoder.*`` gin bindings); the per-concept VCT_Decoder's index_num,
    query count and width follow from MaskDecoder's and the encoder's knobs."""
    channels = ctx.image_shape[-1]
    width = (concept_width(encoder), "VCT_Encoder.latent_dim")
    decoder = build_derived(MaskDecoder, image_size=(4 * math.isqrt(ctx.cfg.shape_num), "get_args.shape_num"),
                            num_channels=(channels, "the dataset's images"),
                            concept_dim=width)
    check_derived("VCT_Decoder", dim=width, index_num=(decoder.query_features, "MaskDecoder.query_features"),
                  z_index_dim=(decoder.num_queries, "MaskDecoder.num_queries"), ce_loss=(True, "MaskDecoder"))
    return decoder


def checked_heldout_scenes(ctx):
    """The held-out scenes the decomposition is scored on, checked: a scene dataset, with
    ground-truth masks, at the training images' size. (None, None) without a dataset (a
    bundle rebuilt for its weights alone, training/bundle.py)."""
    cfg, data = ctx.cfg, ctx.data
    if data is None:
        return None, None
    if not isinstance(data, SceneDataset):
        raise UserError(f"main_vct_mask.py needs a multi-object scene dataset with instance masks "
                        f"(clevr, synthetic_scenes, objects_room, ...); {cfg.name} is not one")
    scenes, split = heldout_scenes(cfg, scene_evaluation_settings()["split"], data)
    check_scenes_have_masks(scenes, f"{cfg.name} {split} split")
    train_shape, heldout_shape = image_shape_of(data), image_shape_of(scenes)
    if heldout_shape != train_shape:
        raise UserError(f"the {split} scenes are {heldout_shape[0]}x{heldout_shape[1]} but the training "
                        f"images are {train_shape[0]}x{train_shape[1]}")
    return scenes, split


def decomposition_grids(ctx, objective, scenes):
    """The concept-swap and reconstruction grids, and the decomposition grid of the first
    ``scene_evaluation.grid_images`` held-out scenes."""
    count = min(scene_evaluation_settings()["grid_images"], len(scenes))
    samples = torch.stack([scenes[i][0] for i in range(count)]).to(ctx.device)
    return {**concept_grids(ctx, objective), "masks": mask_grid(samples, objective.decompose(samples))}


def decomposition_scores(ctx, objective, scenes, split):
    """ARI / FG-ARI / mBO of the concept masks on the first ``scene_evaluation.num_images``
    held-out scenes."""
    settings = scene_evaluation_settings()
    scores = evaluate_decomposition(objective.concept_masks, scenes, settings["num_images"],
                                    settings["batch_size"], ctx.device)
    return Evaluation({"scene_decomposition": scores},
                      {**settings, "split": split, "concepts": ctx.cfg.concepts_num})
