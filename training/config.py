"""Run settings bound from the .gin files.

The published configs bind ``get_args.*`` (``{name}_ce.gin``: name, data_dir, batch_size;
``{name}_shared.gin``: model sizes, lr, VQ-VAE path, schedule); we keep that binding name so
those files port with few edits. Every field is documented here; a command-line flag
(``--batch_size``, ``--concepts_num``, ``--wo_dis_loss``, ``--max_steps``, ...) is a binding of
one of them, appended after the config files. ``RunConfig()`` is the bound configuration.
"""
import dataclasses
from typing import Optional

import gin


@gin.configurable("get_args")
@dataclasses.dataclass
class RunConfig:
    # data
    name: str = "shapes3d"                # dataset name (datasets.get_dataset), or synthetic_*
    data_dir: str = "data"                # root holding <name>/... files
    batch_size: int = 32                  # images per process per step
    num_workers: int = 0                  # DataLoader workers (0 = load in the main process)
    # VQ-VAE tokenizer
    hidden: int = 256                     # VQ-VAE channels = image token width
    k: int = 128                          # codebook size = VCT decoder classes
    shape_num: int = 256                  # image tokens per image (16x16 at 64 px)
    vqvae_path: str = "checkpoints/shapes3d/vqvae.pt"
    train_vqvae_if_missing: bool = False  # toy configs: train the tokenizer first if absent
    vqvae_epochs: int = 100               # ... for that many epochs
    vqvae_max_steps: Optional[int] = None
    # VCT
    concepts_num: int = 20
    lr: float = 1e-4
    dis_loss: bool = True                 # the concept disentangling loss (--wo_dis_loss turns off)
    swap_min_change: float = 1e-3         # drop swaps whose concept moved by <= this L2 norm
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
