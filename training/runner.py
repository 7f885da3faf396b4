"""The one VCT runner every setting shares (main_vct.py, main_vct_mask.py, main_vct_clip.py):
flags and gin, the run directory, the data, the training loop, checkpoints, and the writing of
what the setting returns (image grids, evaluations). The setting (training/setting.py) is
chosen by name; it builds the objective and knows nothing of this module."""
import dataclasses
import math
import uuid
from pathlib import Path

import gin
import torch

from common.atomic import atomic_write_text
from evaluation.runner import format_table, write_results_json
from training import checkpoint as ckpt
from training.cli import ROOT, load_gin, load_run_args, parse_vct_arguments, pick_device, resolve_config, save_run_args
from training.config import RunConfig
from training.data import batches_for, build_dataset, seed_everything, steps_per_epoch
from training.engine import LoopSettings, Trainer, init_distributed
from training.errors import UserError
from training.provenance import provenance
from training.report import step_metrics_path, write_report
from training.setting import SETTINGS, RunContext, get_setting
from training.vqvae_training import train_vqvae


@dataclasses.dataclass
class RunPlan:
    run_dir: Path
    seed: int
    precision: str
    resume: bool
    config: str  # the --config the run was started with


def open_run(setting, args) -> RunPlan:
    """Load the gin configuration (a fresh run's --config, or the configuration saved in a
    resumed run's newest checkpoint, then the flags' bindings) and choose the run directory."""
    if args.resume:
        return _open_resumed_run(setting, args)
    config_path = resolve_config(args.config)
    load_gin([config_path], args.gin_bindings)
    seed = 0 if args.seed is None else args.seed
    stem = f"{config_path.stem}{setting.run_tag}{'-wo_dis' if args.wo_dis_loss else ''}-seed{seed}"
    run_dir = ckpt.prepare_run_dir(args.out or ROOT / "runs" / stem, resuming=False)
    return RunPlan(run_dir, seed, args.precision or "fp32", False, args.config)


def _open_resumed_run(setting, args) -> RunPlan:
    run_dir = Path(args.resume)
    saved = load_run_args(run_dir)
    recorded = saved.get("setting", "vq")
    if recorded != setting.name:
        script = f" ({SETTINGS[recorded].prog})" if recorded in SETTINGS else ""
        raise UserError(f"{run_dir} is a run of the '{recorded}' setting{script}; resume it with that setting's script")
    if args.config is not None:
        raise UserError("--resume continues with the run's own configuration; drop --config (change single "
                        "values with --gin_bindings)")
    if args.seed is not None and args.seed != saved["seed"]:
        raise UserError(f"--resume continues with the run's seed {saved['seed']}; drop --seed {args.seed}")
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(f"{run_dir} was stopped before its first checkpoint: nothing to resume; start it "
                        f"again (delete {run_dir} or choose another --out)")
    # The configuration travels in the checkpoint (config.gin beside it is for people to read).
    # Runs made before flags were gin bindings kept them apart, as "overrides".
    legacy = [f"get_args.{k} = {v!r}" for k, v in saved.get("overrides", {}).items() if v is not None]
    load_gin([], legacy + args.gin_bindings, config_text=ckpt.load_checkpoint(latest).get("gin_config", ""),
             trusted=False)
    return RunPlan(run_dir, saved["seed"], args.precision or saved.get("precision", "fp32"), True,
                   saved.get("config"))


def ensure_vqvae(cfg, dist, device, seed, num_images):
    """Train the toy configs' VQ-VAE first when its checkpoint is missing (and asked to)."""
    if Path(cfg.vqvae_path).is_file() or not cfg.train_vqvae_if_missing:
        return
    if dist.enabled:
        raise UserError(f"VQ-VAE checkpoint {cfg.vqvae_path} missing; train it before a distributed run")
    print(f"VQ-VAE checkpoint {cfg.vqvae_path} not found: training the tokenizer first")
    out = Path(cfg.vqvae_path).parent
    train_vqvae(cfg.name, cfg.data_dir, out, hidden=cfg.hidden, k=cfg.k, epochs=cfg.vqvae_epochs,
                max_steps=cfg.vqvae_max_steps, lr=cfg.vqvae_lr, seed=seed, **residency(cfg), device=device,
                batch_size=min(128, num_images), resume=ckpt.latest_checkpoint(out) is not None)
    seed_everything(seed)  # the VCT run starts from the same RNG state either way


def residency(cfg):
    """The LoopSettings / train_vqvae arguments of get_args' resident-data knobs."""
    return {"resident_data": cfg.resident_data, "resident_memory_fraction": cfg.resident_memory_fraction}


def make_trainer(setting, ctx, objective, precision, dist):
    cfg = ctx.cfg
    epoch_steps = steps_per_epoch(len(ctx.batches), cfg.batch_size, dist.world_size)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.num_epochs * epoch_steps
    if cfg.dis_loss and cfg.dis_start_step >= total:
        raise UserError(f"get_args.dis_start_step = {cfg.dis_start_step} is not before the run's last step "
                        f"({total}): the disentangling loss would never run (--wo_dis_loss says that)")
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=cfg.lr)
    scheduler = lr_scheduler(optimizer, cfg.lr_schedule, cfg.lr_warmup_steps, total)
    settings = LoopSettings(total_steps=total, log_interval=cfg.log_interval, save_interval=cfg.save_interval,
                            keep_checkpoints=cfg.keep_checkpoints, precision=precision,
                            num_workers=cfg.num_workers, batch_size=cfg.batch_size, seed=ctx.seed,
                            **residency(cfg))
    extra = {"gin_config": gin.config_str(), "run_config": dataclasses.asdict(cfg), "setting": setting.name}
    return Trainer(objective, optimizer, ctx.batches, ctx.run_dir, ctx.device, settings, dist, scheduler,
                   checkpoint_extra=extra, desc=f"VCT {cfg.name}")


def lr_scheduler(optimizer, schedule, warmup_steps, total_steps):
    """None for the published constant rate; else a LambdaLR: a linear warm-up over
    ``warmup_steps``, then constant or a cosine decay reaching 0 at ``total_steps``."""
    if schedule == "constant" and warmup_steps == 0:
        return None

    def factor(step):  # the rate of step ``step + 1`` (the scheduler steps after each update)
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def write_evaluation(path, evaluation, ctx, **extra):
    """The metrics JSON of an Evaluation: scores, their settings, ``extra`` and the provenance
    (package versions, git commit and dirtiness, device, seed, run id, operative config)."""
    run_id = None
    if ctx.run_dir is not None and (ctx.run_dir / "run_args.json").is_file():
        run_id = load_run_args(ctx.run_dir).get("run_id")
    write_results_json(str(path), evaluation.results, settings={
        **evaluation.settings, **extra, "provenance": provenance(ctx.seed, ctx.device, run_id)})


class RunOutputs:
    """Writes what the setting returns during a run: image grids (PNG + tensorboard) and
    evaluations (metrics JSON + ``eval/*`` scalars); remembers the newest of each."""

    def __init__(self, setting, ctx, objective, trainer):
        self.setting, self.ctx, self.objective, self.trainer = setting, ctx, objective, trainer
        self.images = {}        # name -> newest PNG
        self.evaluation = None  # (Evaluation, metrics JSON path) of the newest evaluation
        self.report = None      # (report.html, step): rewritten at each evaluation and at the end

    def attach(self):
        cfg = self.ctx.cfg

        def interval(value):  # None: with the checkpoints; 0: never (but see at_end)
            return cfg.save_interval if value is None else value

        self.trainer.add_hook(interval(cfg.image_interval), self.write_images)
        self.trainer.add_hook(interval(cfg.eval_interval), self.write_evaluation, at_end=cfg.evaluate_at_end)
        self.trainer.add_hook(0, self.write_operative_config)  # after the last step only
        self.trainer.add_hook(0, self.write_report)

    def write_operative_config(self, step):
        """The values the run used, evaluation's included (gin knows them once they were used)."""
        operative = gin.operative_config_str()
        atomic_write_text(self.ctx.run_dir / "operative_config.gin", operative)
        self.trainer.log.text("config/operative", "    " + operative.replace("\n", "\n    "), step)

    def write_images(self, step):
        for name, grid in self.setting.image_grids(self.ctx, self.objective).items():
            path = self.ctx.run_dir / "images" / f"{name}_{step:08d}.png"
            self.trainer.log.image(step, f"{self.setting.name}/{name}", grid, path)
            self.images[name] = path

    def write_evaluation(self, step):
        evaluation = self.setting.evaluate(self.ctx, self.objective, cache_key=ckpt.weights_key(self.objective))
        if evaluation is None:
            return
        path = step_metrics_path(self.ctx.run_dir, step)
        write_evaluation(path, evaluation, self.ctx, step=step, config=self.ctx.cfg.name, setting=self.setting.name)
        self.trainer.log.scalars(step, evaluation.scalars(), prefix="eval")
        self.evaluation = (evaluation, path)
        self.write_report(step)

    def write_report(self, step):
        """report.html from the run directory, with the setting's pictures of the live model."""
        if self.report is not None and self.report[1] == step:
            return  # this step's evaluation wrote it
        figures = self.setting.report_figures(self.ctx, self.objective, step)
        self.report = (write_report(self.ctx.run_dir, figures, step=step), step)

    def summary(self):
        run_dir = self.ctx.run_dir
        lines = [f"run directory: {run_dir}"]
        if "swap" in self.images:
            lines.append(f"swap grid: {self.images['swap']}")
        lines.append(f"logs: tensorboard --logdir {run_dir / 'tensorboard'}")
        if self.evaluation is not None:
            lines += [format_table(self.evaluation[0].results), f"metrics: {self.evaluation[1]}"]
        if self.report is not None:
            lines.append(f"report: {self.report[0]}")
        return "\n".join(lines)


def record_run(plan, setting):
    """config.gin (every binding, for people to read: --resume reads the checkpoint's copy),
    operative_config.gin (the values the run actually used, rewritten at the end when
    evaluation has used its own) and run_args.json (setting, seed, precision, config, a run id
    kept across resumes)."""
    atomic_write_text(plan.run_dir / "config.gin", gin.config_str())
    atomic_write_text(plan.run_dir / "operative_config.gin", gin.operative_config_str())
    previous = load_run_args(plan.run_dir) if plan.resume else {}
    save_run_args(plan.run_dir, {"setting": setting.name, "seed": plan.seed, "precision": plan.precision,
                                 "config": plan.config, "run_id": previous.get("run_id") or uuid.uuid4().hex})


def vct_main(argv=None, setting="vq"):
    """Train (or ``--resume``) VCT in the setting registered as ``setting`` (a name or a
    Setting), with ``argv`` its entry script's flags."""
    setting = get_setting(setting) if isinstance(setting, str) else setting
    return run_vct(setting, parse_vct_arguments(setting, argv))


def run_vct(setting, args):
    """Train (or ``--resume``) VCT in ``setting`` with the parsed flags ``args``."""
    plan = open_run(setting, args)
    with ckpt.run_dir_lock(plan.run_dir):
        cfg = RunConfig()
        seed_everything(plan.seed)
        dist, device = init_distributed(pick_device(args.device))
        data = build_dataset(cfg.name, cfg.data_dir, rank=dist.rank)
        batches = batches_for(data)
        ensure_vqvae(cfg, dist, device, plan.seed, len(batches))
        ctx = RunContext(cfg, data, batches, device, plan.seed, plan.run_dir)
        objective = setting.build(ctx)
        trainer = make_trainer(setting, ctx, objective, plan.precision, dist)
        if plan.resume:  # before anything is rewritten: a checkpoint that does not fit stops here
            trainer.restore(ckpt.latest_checkpoint(plan.run_dir))
            if trainer.step >= trainer.settings.total_steps:
                raise UserError(f"{plan.run_dir} is at step {trainer.step} already; to train on, pass a "
                                f"--max_steps above it")
        if dist.is_main:
            record_run(plan, setting)
        outputs = RunOutputs(setting, ctx, objective, trainer)
        outputs.attach()
        trainer.run(resumed=plan.resume)
        if dist.is_main:
            print(outputs.summary())
