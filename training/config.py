"""Run settings bound from the .gin files.

The published configs bind ``get_args.*`` (``{name}_ce.gin``: name, data_dir, batch_size;
``{name}_shared.gin``: model sizes, lr, VQ-VAE path, schedule); we keep that binding name so
those files port with few edits. Every field is documented here; a command-line flag
(``--batch_size``, ``--concepts_num``, ``--wo_dis_loss``, ``--max_steps``, ...) is a binding of
one of them, appended after the config files. ``RunConfig()`` is the bound configuration.
"""
import dataclasses
import math
from typing import Optional

import gin

from training.errors import UserError

RESIDENT_MODES = ("auto", "ram", "device", "off")
RESIDENT_DEFAULT, RESIDENT_FRACTION_DEFAULT = "auto", 0.25  # also the trainers' defaults

LR_SCHEDULES = ("constant", "cosine")


@gin.configurable("get_args")
@dataclasses.dataclass
class RunConfig:
    # data
    name: str = "shapes3d"                # dataset name (datasets.get_dataset), or synthetic_*
    data_dir: str = "data"                # root holding <name>/... files
    batch_size: int = 32                  # images per process per step
    num_workers: int = 0                  # DataLoader workers (0 = load in the main process)
    resident_data: str = RESIDENT_DEFAULT  # hold the uint8 images: 'auto', 'ram', 'device' (CUDA) or 'off'
    resident_memory_fraction: float = RESIDENT_FRACTION_DEFAULT  # 'auto' holds them if they take <= this of the free memory
    # VQ-VAE tokenizer
    hidden: int = 256                     # VQ-VAE channels = image token width
    k: int = 128                          # codebook size = VCT decoder classes
    shape_num: int = 256                  # image tokens per image (16x16 at 64 px)
    vqvae_path: str = "checkpoints/shapes3d/vqvae.pt"
    train_vqvae_if_missing: bool = False  # toy configs: train the tokenizer first if absent
    vqvae_epochs: int = 100               # ... for that many epochs
    vqvae_max_steps: Optional[int] = None
    vqvae_lr: float = 2e-4                # ... at this Adam learning rate (published 2e-4)
    # VCT
    concepts_num: int = 20
    lr: float = 1e-4
    dis_loss: bool = True                 # the concept disentangling loss (--wo_dis_loss turns off)
    swap_min_change: float = 1e-3         # drop swaps whose concept moved by <= this L2 norm
    dis_weight: float = 1.0               # weight of the disentangling loss (published 1)
    dis_start_step: int = 0               # no disentangling loss before this step (published 0)
    dis_soft_retokens: bool = False       # it re-tokenises to unquantised VQ-VAE vectors (published: quantised)
    concept_similarity_weight: float = 0.0  # weight of a penalty on copies across concepts (published: none)
    concept_axis_weight: float = 0.0      # weight of a penalty on concepts varying off one axis (published: none)
    recon_focal_gamma: float = 0.0        # reconstruction CE weighted towards poorly predicted tokens (published: 0)
    lr_schedule: str = "constant"         # 'constant' (published) or 'cosine' (decay to 0 at the end)
    lr_warmup_steps: int = 0              # linear warm-up from lr / steps (published: none)
    # CLIP tokenizer (main_vct_clip.py; main_vct.py ignores these)
    concepts_num_clip: int = 10           # concept tokens of a CLIP run (published 10)
    clip_tokens: int = 36                 # image tokens made from the CLIP feature (a 6x6 grid)
    clip_weights: str = "openai"          # open_clip tag of ViT-B-32, a local file, or 'random[:SEED]'
    clip_cache_dir: str = "checkpoints/clip/features"  # per-image feature cache ('' = no cache)
    # schedule and outputs
    num_epochs: int = 200
    max_steps: Optional[int] = None       # stop after this many steps (overrides num_epochs)
    log_interval: int = 10
    save_interval: int = 5000             # checkpoint + swap grid + metrics every N steps
    eval_interval: Optional[int] = None   # metrics every N steps (None: save_interval; 0: never)
    image_interval: Optional[int] = None  # image grids every N steps (None: save_interval; 0: never)
    keep_checkpoints: int = 3             # newest step checkpoints kept (the final one always)
    evaluate_at_end: bool = True

    def __post_init__(self):
        """One check of every value, where the configuration is built: a bad one stops the run
        with one line naming it, before anything is written."""
        problems = [f"get_args.{name} = {getattr(self, name)!r} ({why})" for name, why in self._problems()]
        if problems:
            raise UserError("bad setting: " + "; ".join(problems))

    def _problems(self):
        def integer(value, low, allow_none=False):
            if value is None:
                return allow_none
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        def non_negative_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

        def positive_number(value):
            return non_negative_number(value) and value > 0

        rules = [("batch_size", integer(self.batch_size, 1), "a whole number >= 1"),
                 ("resident_data", self.resident_data in RESIDENT_MODES, f"one of {', '.join(RESIDENT_MODES)}"),
                 ("resident_memory_fraction", positive_number(self.resident_memory_fraction)
                  and self.resident_memory_fraction <= 1, "a number in (0, 1]"),
                 ("num_workers", integer(self.num_workers, 0), "a whole number >= 0"),
                 ("concepts_num", integer(self.concepts_num, 1), "a whole number >= 1"),
                 ("concepts_num_clip", integer(self.concepts_num_clip, 1), "a whole number >= 1"),
                 ("num_epochs", integer(self.num_epochs, 1), "a whole number >= 1"),
                 ("max_steps", integer(self.max_steps, 1, allow_none=True), "None or a whole number >= 1"),
                 ("log_interval", integer(self.log_interval, 1), "a whole number >= 1"),
                 ("save_interval", integer(self.save_interval, 1), "a whole number >= 1"),
                 ("eval_interval", integer(self.eval_interval, 0, allow_none=True), "None, 0 (never) or >= 1"),
                 ("image_interval", integer(self.image_interval, 0, allow_none=True), "None, 0 (never) or >= 1"),
                 ("keep_checkpoints", integer(self.keep_checkpoints, 1), "a whole number >= 1"),
                 ("lr", positive_number(self.lr), "a finite number > 0"),
                 ("vqvae_lr", positive_number(self.vqvae_lr), "a finite number > 0"),
                 ("dis_weight", positive_number(self.dis_weight), "a finite number > 0"),
                 ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
                 ("lr_warmup_steps", integer(self.lr_warmup_steps, 0), "a whole number >= 0"),
                 ("dis_start_step", integer(self.dis_start_step, 0), "a whole number >= 0"),
                 ("concept_similarity_weight", non_negative_number(self.concept_similarity_weight),
                  "a finite number >= 0"),
                 ("concept_axis_weight", non_negative_number(self.concept_axis_weight), "a finite number >= 0"),
                 ("recon_focal_gamma", non_negative_number(self.recon_focal_gamma), "a finite number >= 0"),
                 ("dis_loss", isinstance(self.dis_loss, bool), "True or False"),
                 ("dis_soft_retokens", isinstance(self.dis_soft_retokens, bool), "True or False"),
                 ("evaluate_at_end", isinstance(self.evaluate_at_end, bool), "True or False"),
                 ("train_vqvae_if_missing", isinstance(self.train_vqvae_if_missing, bool), "True or False")]
        problems = [(name, why) for name, ok, why in rules if not ok]
        if isinstance(self.concept_similarity_weight, (int, float)) and self.concept_similarity_weight > 0 \
                and isinstance(self.batch_size, int) and self.batch_size < 4:
            problems.append(("batch_size", "the concept-similarity penalty's estimate needs at least 4 images a "
                                           "batch: use batch_size >= 4, or concept_similarity_weight = 0"))
        if self.dis_loss is True and self.batch_size == 1:
            problems.append(("batch_size", "the disentangling loss swaps concepts between two images of a "
                                           "batch: use batch_size >= 2, or --wo_dis_loss"))
        return problems
