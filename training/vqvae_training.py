"""Training the VQ-VAE image tokenizer (train_vqvae.py; the toy configs also run it first when
their tokenizer is missing). Published recipe: Adam 2e-4, StepLR (30 epochs, x0.5), batch 128.
"""
from pathlib import Path

import torch

from models.vqvae import VQ_CVAE
from training import checkpoint as ckpt
from training.cli import ROOT, pick_device, save_run_args
from training.config import RESIDENT_DEFAULT, RESIDENT_FRACTION_DEFAULT
from training.data import batches_for, build_dataset, fixed_batch, image_shape_of, seed_everything, steps_per_epoch
from training.engine import LoopSettings, Trainer, init_distributed
from training.objectives import VQVAEObjective
from training.visualize import reconstruction_grid

VQVAE_EXPORT_NAME = "vqvae.pt"
# Published per-dataset tokenizer sizes (hidden channels, codebook size).
VQVAE_SIZES = {"dsprites": (64, 20)}
DEFAULT_VQVAE_SIZE = (256, 128)


def train_vqvae(dataset, data_dir, out_dir, *, hidden, k, epochs, batch_size=128, lr=2e-4,
                seed=0, device="auto", max_steps=None, resume=False, num_workers=0,
                log_interval=10, save_interval=1000, precision="fp32", resident_data=RESIDENT_DEFAULT,
                resident_memory_fraction=RESIDENT_FRACTION_DEFAULT):
    """Train the VQ-VAE tokenizer (published: Adam 2e-4, StepLR 30 epochs x 0.5, batch 128)
    and export ``out_dir/vqvae.pt``. Returns that path."""
    seed_everything(seed)
    device = pick_device(device) if isinstance(device, str) else device
    dist, device = init_distributed(device)
    run_dir = ckpt.prepare_run_dir(out_dir, resume)
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
                            precision=precision, resident_data=resident_data,
                            resident_memory_fraction=resident_memory_fraction)
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
    trainer.run(resume_from=ckpt.resume_checkpoint(run_dir, resume))
    export = run_dir / VQVAE_EXPORT_NAME
    if dist.is_main:
        ckpt.atomic_torch_save({"format_version": ckpt.FORMAT_VERSION, **objective.model_state()}, export)
    return export


def train_vqvae_from_args(args):
    """train_vqvae.py's run (its flags: training.cli.vqvae_main)."""
    hidden, k = VQVAE_SIZES.get(args.dataset, DEFAULT_VQVAE_SIZE)
    out = Path(args.out or ROOT / "checkpoints" / args.dataset)
    path = train_vqvae(args.dataset, args.data_dir, out, hidden=args.hidden or hidden, k=args.k or k,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       device=args.device, max_steps=args.max_steps, resume=args.resume,
                       num_workers=args.num_workers, save_interval=args.save_interval)
    print(f"VQ-VAE checkpoint: {path}")
    print(f"logs: tensorboard --logdir {out / 'tensorboard'}")
