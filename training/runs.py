"""The two runs the entry scripts start: VQ-VAE tokenizer training (train_vqvae.py) and VCT
training over a frozen tokenizer (main_vct.py). Both go through the same Trainer."""
import argparse
import dataclasses
import json
from pathlib import Path

import gin
import numpy as np
import torch

from evaluation.runner import format_table, write_results_json
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from training import checkpoint as ckpt
from training.cli import (ROOT, UserError, add_common_arguments, add_vct_arguments, load_gin,
                          load_run_args, pick_device, resolve_config, save_run_args)
from training.config import bound_run_config
from datasets.ground_truth import GroundTruthData
from training.data import batches_for, build_dataset, image_shape_of, steps_per_epoch
from training.engine import LoopSettings, Trainer, init_distributed
from training.evaluate import evaluate_encoder
from training.objectives import VCTObjective, VQVAEObjective
from training.settings import VQTokenizer
from training.visualize import reconstruction_grid, swap_grid

VQVAE_EXPORT_NAME = "vqvae.pt"
# Published per-dataset tokenizer sizes (hidden channels, codebook size).
VQVAE_SIZES = {"dsprites": (64, 20)}
DEFAULT_VQVAE_SIZE = (256, 128)


def seed_everything(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed)


def fixed_batch(batches, count, seed=0):
    """The same ``count`` images every time (for image grids)."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(batches), generator=gen)[:count].numpy()
    return batches[np.sort(indices)][0]


def _prepare_run_dir(run_dir, resuming):
    """Create ``run_dir``; a fresh run refuses a folder that already holds checkpoints."""
    run_dir = Path(run_dir)
    if not resuming and ckpt.latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _resume_checkpoint(run_dir, resume):
    if not resume:
        return None
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return latest


# ============================================================================ VQ-VAE

def load_vqvae(path, hidden, k, num_channels=3, device="cpu"):
    """A VQ_CVAE of the given size with weights from ``path`` (our checkpoint or a published
    raw state_dict). Clear errors for a missing file or a size mismatch."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"VQ-VAE checkpoint not found: {path} (train one with "
                        f"python train_vqvae.py --dataset NAME --out {path.parent})")
    state = ckpt.load_checkpoint(path)
    weights = state.get("model_state_dict", state)
    model = VQ_CVAE(d=hidden, k=k, num_channels=num_channels)
    ckpt.load_model_state(model, weights, f"VQ-VAE (configured d={hidden}, k={k})", path)
    return model.to(device).eval()


def train_vqvae(dataset, data_dir, out_dir, *, hidden, k, epochs, batch_size=128, lr=2e-4,
                seed=0, device="auto", max_steps=None, resume=False, num_workers=0,
                log_interval=10, save_interval=1000, precision="fp32"):
    """Train the VQ-VAE tokenizer (published: Adam 2e-4, StepLR 30 epochs x 0.5, batch 128)
    and export ``out_dir/vqvae.pt``. Returns that path."""
    seed_everything(seed)
    device = pick_device(device) if isinstance(device, str) else device
    dist, device = init_distributed(device)
    run_dir = _prepare_run_dir(out_dir, resume)
    data = build_dataset(dataset, data_dir, rank=dist.rank)
    batches = batches_for(data)
    channels = image_shape_of(data)[-1]
    model = VQ_CVAE(d=hidden, k=k, num_channels=channels)
    objective = VQVAEObjective(model)
    epoch_steps = steps_per_epoch(len(batches), batch_size, dist.world_size)
    total = max_steps if max_steps is not None else epochs * epoch_steps
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30 * epoch_steps, gamma=0.5)
    settings = LoopSettings(total_steps=total, log_interval=log_interval, save_interval=save_interval,
                            batch_size=batch_size, seed=seed, num_workers=num_workers,
                            precision=precision)
    trainer = Trainer(objective, optimizer, batches, run_dir, device, settings, dist, scheduler,
                      desc=f"VQ-VAE {dataset}")
    sample = fixed_batch(batches, 8, seed).to(device)

    def image_hook(step):
        grid = reconstruction_grid(sample, objective.reconstruct(sample))
        trainer.log.image(step, "vqvae/reconstructions", grid, run_dir / "images" / f"recon_{step:08d}.png")

    trainer.add_hook(save_interval, image_hook)
    if dist.is_main:
        save_run_args(run_dir, {"dataset": dataset, "data_dir": str(data_dir), "hidden": hidden, "k": k,
                                "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                "max_steps": max_steps})
    trainer.run(resume_from=_resume_checkpoint(run_dir, resume))
    export = run_dir / VQVAE_EXPORT_NAME
    if dist.is_main:
        ckpt.atomic_torch_save({"format_version": ckpt.FORMAT_VERSION, **objective.model_state()}, export)
    return export


def vqvae_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="train_vqvae.py", description="Train the VQ-VAE image tokenizer that VCT reads its image "
        "tokens and reconstruction targets from. Writes OUT/vqvae.pt (the path the configs' "
        "get_args.vqvae_path points at), reconstruction grids and tensorboard logs.")
    parser.add_argument("--dataset", required=True, help="shapes3d, mpi3d_toy, cars3d, clevr, dsprites, "
                        "objects_room, synthetic_shapes3d, synthetic_scenes, ...")
    parser.add_argument("--model", default="vqvae", choices=["vqvae"], help="tokenizer (only vqvae)")
    parser.add_argument("--data-dir", default="data", help="folder holding <dataset>/... (default data)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per process per step (default 128)")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    parser.add_argument("--hidden", type=int, default=None, help="channels d (default 256; dsprites 64)")
    parser.add_argument("-k", type=int, default=None, help="codebook size (default 128; dsprites 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default checkpoints/<dataset>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--save-interval", type=int, default=1000, help="checkpoint every N steps")
    args = parser.parse_args(argv)
    hidden, k = VQVAE_SIZES.get(args.dataset, DEFAULT_VQVAE_SIZE)
    out = Path(args.out or ROOT / "checkpoints" / args.dataset)
    path = train_vqvae(args.dataset, args.data_dir, out, hidden=args.hidden or hidden, k=args.k or k,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       device=args.device, max_steps=args.max_steps, resume=args.resume,
                       num_workers=args.num_workers, save_interval=args.save_interval)
    print(f"VQ-VAE checkpoint: {path}")
    print(f"logs: tensorboard --logdir {out / 'tensorboard'}")


# ============================================================================ VCT

def build_vct(cfg, device, num_channels=3, args=None):
    """The VCT objective of a RunConfig: frozen VQ-VAE tokenizer + VCT encoder and decoder."""
    vqvae = load_vqvae(cfg.vqvae_path, cfg.hidden, cfg.k, num_channels, device)
    encoder = VCT_Encoder(z_index_dim=cfg.concepts_num, dim=cfg.hidden)
    decoder = VCT_Decoder(index_num=cfg.k, z_index_dim=cfg.shape_num, ce_loss=True)
    return VCTObjective(encoder, decoder, VQTokenizer(vqvae), dis_loss=cfg.dis_loss,
                        swap_min_change=cfg.swap_min_change)


def _check_token_grid(cfg, image_shape):
    tokens = (image_shape[0] // 4) * (image_shape[1] // 4)
    if tokens != cfg.shape_num:
        raise UserError(f"get_args.shape_num = {cfg.shape_num}, but {image_shape[0]}x{image_shape[1]} "
                        f"images give {tokens} VQ-VAE tokens")


def _parse_vct_setup(argv, prog, description, add_arguments=None, run_tag=""):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_vct_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.resume:
        run_dir = Path(args.resume)
        saved = load_run_args(run_dir)
        load_gin([run_dir / "config.gin"], args.gin_bindings)
        overrides = saved["overrides"]
        if args.max_steps is not None:
            overrides["max_steps"] = args.max_steps
        seed = saved["seed"]
        precision = args.precision if args.precision != "fp32" else saved.get("precision", "fp32")
    else:
        if args.config is None:
            parser.error("--config is required (or --resume RUN_DIR)")
        config_path = resolve_config(args.config)
        load_gin([config_path], args.gin_bindings)
        overrides = {"batch_size": args.batch_size, "concepts_num": args.concepts_num,
                     "max_steps": args.max_steps, "dis_loss": False if args.wo_dis_loss else None}
        seed = args.seed
        precision = args.precision
        stem = config_path.stem + run_tag + ("-wo_dis" if args.wo_dis_loss else "") + f"-seed{seed}"
        run_dir = _prepare_run_dir(args.out or ROOT / "runs" / stem, resuming=False)
    return args, run_dir, overrides, seed, precision


VCT_DESCRIPTION = ("Train VCT concept tokens over a frozen VQ-VAE tokenizer, with the concept "
                   "disentangling loss; evaluate them on ground-truth factors.")


def ensure_vqvae(cfg, dist, device, seed, num_images):
    """Train the toy configs' VQ-VAE first when its checkpoint is missing (and asked to)."""
    if Path(cfg.vqvae_path).is_file() or not cfg.train_vqvae_if_missing:
        return
    if dist.enabled:
        raise UserError(f"VQ-VAE checkpoint {cfg.vqvae_path} missing; train it before a distributed run")
    print(f"VQ-VAE checkpoint {cfg.vqvae_path} not found: training the tokenizer first")
    out = Path(cfg.vqvae_path).parent
    train_vqvae(cfg.name, cfg.data_dir, out, hidden=cfg.hidden, k=cfg.k, epochs=cfg.vqvae_epochs,
                max_steps=cfg.vqvae_max_steps, seed=seed, device=device,
                batch_size=min(128, num_images), resume=ckpt.latest_checkpoint(out) is not None)
    seed_everything(seed)  # the VCT run starts from the same RNG state either way


def vct_main(argv=None, prog="main_vct.py", description=VCT_DESCRIPTION, build=None, add_hooks=None,
             add_arguments=None, run_tag=""):
    """The VCT entry point every setting shares. ``build(cfg, device, num_channels, args)``
    returns the objective (default: VQ-VAE setting, ``build_vct``); ``add_hooks(trainer,
    objective, batches, data, cfg, run_dir, device, seed)`` adds the periodic image grids and
    metrics (default: ``add_vct_hooks``); ``add_arguments(parser)`` adds a setting's own flags
    (a flag that must survive --resume should become a gin binding or RunConfig override);
    ``run_tag`` goes into the default run directory name (runs/<config><tag>-seed<seed>)."""
    build = build or build_vct
    add_hooks = add_hooks or add_vct_hooks
    args, run_dir, overrides, seed, precision = _parse_vct_setup(argv, prog, description, add_arguments,
                                                                 run_tag)
    cfg = bound_run_config(**overrides)
    seed_everything(seed)
    device = pick_device(args.device)
    dist, device = init_distributed(device)

    data = build_dataset(cfg.name, cfg.data_dir, rank=dist.rank)
    batches = batches_for(data)
    image_shape = image_shape_of(data)
    _check_token_grid(cfg, image_shape)
    ensure_vqvae(cfg, dist, device, seed, len(batches))
    objective = build(cfg, device, image_shape[-1], args)

    epoch_steps = steps_per_epoch(len(batches), cfg.batch_size, dist.world_size)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.num_epochs * epoch_steps
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=cfg.lr)
    settings = LoopSettings(total_steps=total, log_interval=cfg.log_interval, save_interval=cfg.save_interval,
                            keep_checkpoints=cfg.keep_checkpoints, precision=precision,
                            num_workers=cfg.num_workers, batch_size=cfg.batch_size, seed=seed)
    trainer = Trainer(objective, optimizer, batches, run_dir, device, settings, dist,
                      checkpoint_extra={"gin_config": gin.config_str(), "run_config": dataclasses.asdict(cfg)},
                      desc=f"VCT {cfg.name}")
    if dist.is_main:
        (run_dir / "config.gin").write_text(gin.config_str())
        save_run_args(run_dir, {"overrides": overrides, "seed": seed, "precision": precision,
                                "config": args.config})
    add_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed)
    trainer.run(resume_from=_resume_checkpoint(run_dir, args.resume))
    if dist.is_main:
        print(f"run directory: {run_dir}")
        if getattr(trainer, "last_swap_grid", None):
            print(f"swap grid: {trainer.last_swap_grid}")
        print(f"logs: tensorboard --logdir {run_dir / 'tensorboard'}")
        if getattr(trainer, "last_metrics", None):
            print(format_table(trainer.last_metrics))
            print(f"metrics: {trainer.last_metrics_path}")


def add_vct_hooks(trainer, objective, batches, data, cfg, run_dir, device, seed):
    sources = fixed_batch(batches, 8, seed).to(device)
    targets = sources.roll(1, dims=0)

    def images_hook(step):
        grid = swap_grid(objective.encode_images, objective.decode_concepts, sources, targets)
        path = run_dir / "images" / f"swap_{step:08d}.png"
        trainer.log.image(step, "vct/concept_swaps", grid, path)
        recon = objective.decode_concepts(objective.encode_images(sources))
        trainer.log.image(step, "vct/reconstructions", reconstruction_grid(sources, recon),
                          run_dir / "images" / f"recon_{step:08d}.png")
        trainer.last_swap_grid = path

    def eval_hook(step):
        results, settings = evaluate_encoder(objective.encode_images, data, device,
                                             cache_dir=str(run_dir / "eval_cache"), cache_key=f"step{step}")
        path = run_dir / "metrics" / f"metrics_{step:08d}.json"
        write_results_json(str(path), results, settings={**settings, "step": step,
                                                         "config": cfg.name, "metrics": list(settings["metrics"])})
        flat = {f"{metric}/{name}": value for metric, scores in results.items()
                for name, value in scores.items() if isinstance(value, (int, float))}
        trainer.log.scalars(step, flat, prefix="eval")
        trainer.last_metrics, trainer.last_metrics_path = results, path

    def interval(value):  # None: with the checkpoints; 0: never (but see at_end)
        return cfg.save_interval if value is None else value

    trainer.add_hook(interval(cfg.image_interval), images_hook)
    if isinstance(data, GroundTruthData):  # scene datasets have masks, not factors
        trainer.add_hook(interval(cfg.eval_interval), eval_hook, at_end=cfg.evaluate_at_end)
