"""Quality of a config over seeds, with and without the concept disentangling loss, at the
final checkpoint:

    python benchmarks/bench_quality.py --config toy_ce.gin                   # 3 seeds x {dis, wo_dis}
    python benchmarks/bench_quality.py --config toy_ce.gin --resume          # continue an interrupted sweep
    python benchmarks/bench_quality.py --config toy_scenes_ce.gin --setting mask --variants dis
    python benchmarks/bench_quality.py --config toy_ce.gin --gin_bindings "get_args.lr = 1e-4" --out DIR

Each (variant, seed) is one run of the setting's entry script in OUT/<variant>-seed<seed>/ with
its own tokenizer per seed (OUT/tokenizer-seed<seed>/, shared by the variants of that seed, so
the with/without comparison is paired). Each run's own output goes to OUT/<variant>-seed<seed>.log. A finished run leaves bench_run.json (wall time, final
and best scores, the tokenizer probe); --resume skips those and continues a run that has
checkpoints with the entry script's --resume. The summary (mean +- std over seeds of every
final score, the best-vs-final gap, wall time, and the paired dis - wo_dis difference with its
standard error) is written to OUT/summary.json and OUT/summary.md and printed.
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {"dis": [], "wo_dis": ["--wo_dis_loss"]}
SCRIPTS = {"vq": "main_vct.py", "mask": "main_vct_mask.py", "clip": "main_vct_clip.py"}
# Scores shown in the table (others are kept in the JSON): the VCT protocol, and the scene metrics.
HEADLINE = ("beta_vae/eval_accuracy", "factor_vae/eval_accuracy", "mig/discrete_mig",
            "dci/disentanglement", "dci/completeness", "dci/informativeness_test",
            "scene_decomposition/ari", "scene_decomposition/fg_ari", "scene_decomposition/mbo")


def numeric_scores(results):
    return {f"{metric}/{name}": value for metric, scores in results.items()
            for name, value in scores.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}


def run_scores(run_dir):
    """(final step, final scores, {score: (best value, step)}) from the run's metrics JSONs."""
    found = sorted((run_dir / "metrics").glob("metrics_*.json"))
    if not found:
        raise SystemExit(f"error: {run_dir} wrote no metrics (evaluation off?)")
    by_step = {int(path.stem.split("_")[1]): numeric_scores(json.loads(path.read_text())["results"])
               for path in found}
    final_step = max(by_step)
    best = {}
    for step, scores in sorted(by_step.items()):
        for name, value in scores.items():
            if name not in best or value > best[name][0]:
                best[name] = (value, step)
    return final_step, by_step[final_step], best


def tokenizer_probe(run_dir, images, cache):
    """The factor probe of the run's tokenizer, once per tokenizer (``cache``: its JSON)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    result = _probe(run_dir, images)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _probe(run_dir, images):
    from training.evaluate_run import load_saved_run
    from training.tokenizer_probe import probe_tokenizer
    _, ctx, objective, _, _ = load_saved_run(run_dir, device="cpu")
    if not hasattr(ctx.data, "factor_names") or not ctx.data.factor_names:
        return None
    return probe_tokenizer(ctx, objective.tokenizer, images)


def train(args, variant, seed, run_dir):
    """Run (or continue) one training run; returns (wall seconds of this call, resumed)."""
    from training.checkpoint import latest_checkpoint
    script = SCRIPTS[args.setting]
    resumed = latest_checkpoint(run_dir) is not None
    if run_dir.exists() and not resumed:
        shutil.rmtree(run_dir)  # started but saved nothing: nothing to keep
    if resumed:
        command = [script, "--resume", str(run_dir)]
    else:
        tokenizer = args.out / f"tokenizer-seed{seed}" / "vqvae.pt"
        command = [script, "--config", args.config, "--seed", str(seed), "--out", str(run_dir), *VARIANTS[variant],
                   "--gin_bindings", f"get_args.vqvae_path = '{tokenizer}'"]
        for binding in args.gin_bindings:
            command += ["--gin_bindings", binding]
    if args.device:
        command += ["--device", args.device]
    print(("resuming: " if resumed else "running: ") + " ".join(command), flush=True)
    log = args.out / f"{run_dir.name}.log"  # the run's own output, appended across resumes
    start = time.perf_counter()
    with open(log, "a") as output:
        completed = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or [""]
        raise SystemExit(f"error: {script} exited with {completed.returncode} for {run_dir}: {tail[0][-300:]} "
                         f"(whole output: {log}; rerun with --resume to continue)")
    return time.perf_counter() - start, resumed


def bench_run(args, variant, seed):
    run_dir = args.out / f"{variant}-seed{seed}"
    record = run_dir / "bench_run.json"
    if record.is_file():
        return json.loads(record.read_text())
    wall, resumed = train(args, variant, seed, run_dir)
    final_step, final, best = run_scores(run_dir)
    result = {"variant": variant, "seed": seed, "wall_s": wall, "resumed": resumed, "final_step": final_step,
              "final": final, "best": {name: {"value": v, "step": s} for name, (v, s) in best.items()},
              "tokenizer_probe": tokenizer_probe(run_dir, args.probe_images, args.out / f"tokenizer-seed{seed}"
                                                 / "probe.json") if args.probe_images else None}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


def mean_std(values):
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values), "values": values}


def summarise(runs):
    """{variant: {score: mean/std}, 'paired': {score: mean/std/sem of dis - wo_dis per seed}}."""
    summary = {}
    for variant in sorted({run["variant"] for run in runs}):
        mine = [run for run in runs if run["variant"] == variant]
        names = sorted(set.intersection(*(set(run["final"]) for run in mine)))
        entry = {name: mean_std([run["final"][name] for run in mine]) for name in names}
        entry["best_minus_final/factor_vae"] = mean_std(
            [run["best"].get("factor_vae/eval_accuracy", {"value": 0})["value"]
             - run["final"].get("factor_vae/eval_accuracy", 0) for run in mine])
        entry["wall_s"] = mean_std([run["wall_s"] for run in mine])
        probes = [run["tokenizer_probe"] for run in mine if run.get("tokenizer_probe")]
        if probes:
            for factor in probes[0]["accuracy"]:
                entry[f"probe/{factor}"] = mean_std([probe["accuracy"][factor] for probe in probes])
        summary[variant] = entry
    by_seed = {(run["variant"], run["seed"]): run for run in runs}
    seeds = sorted({seed for variant, seed in by_seed if variant == "dis" and ("wo_dis", seed) in by_seed})
    if seeds:
        paired = {}
        for name in HEADLINE:
            if all(name in by_seed[(v, s)]["final"] for v in ("dis", "wo_dis") for s in seeds):
                stats = mean_std([by_seed[("dis", s)]["final"][name] - by_seed[("wo_dis", s)]["final"][name]
                                  for s in seeds])
                stats["sem"] = stats["std"] / math.sqrt(len(seeds))
                paired[name] = stats
        summary["paired_dis_minus_wo_dis"] = paired
    return summary


def markdown(summary, title):
    lines = [f"### {title}", ""]
    variants = [v for v in summary if v != "paired_dis_minus_wo_dis"]
    rows = [name for name in HEADLINE if any(name in summary[v] for v in variants)]
    rows += sorted({name for v in variants for name in summary[v] if name.startswith("probe/")})
    rows += ["best_minus_final/factor_vae", "wall_s"]
    lines.append("| score | " + " | ".join(variants) + (" | dis - wo_dis (± s.e.) |" if len(variants) > 1 else " |"))
    lines.append("|---" * (len(variants) + 1 + (len(variants) > 1)) + "|")
    paired = summary.get("paired_dis_minus_wo_dis", {})
    for name in rows:
        cells = []
        for variant in variants:
            stats = summary[variant].get(name)
            cells.append(f"{stats['mean']:.3f} ± {stats['std']:.3f}" if stats else "")
        row = f"| {name} | " + " | ".join(cells)
        if len(variants) > 1:
            diff = paired.get(name)
            row += f" | {diff['mean']:+.3f} ± {diff['sem']:.3f}" if diff else " | "
        lines.append(row + " |")
    seeds = {v: summary[v]["wall_s"]["n"] for v in variants}
    lines += ["", f"seeds per variant: {seeds}; final checkpoints; wall_s is the run's own wall time "
                  f"(the first variant of a seed also trains that seed's tokenizer)."]
    return "\n".join(lines)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="gin config (path or name under configs/)")
    parser.add_argument("--setting", default="vq", choices=sorted(SCRIPTS), help="default vq (main_vct.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default 0 1 2")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--gin_bindings", action="append", default=[], help="extra binding for every run")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench_quality-<config stem>")
    parser.add_argument("--resume", action="store_true", help="continue a sweep in --out")
    parser.add_argument("--probe_images", type=int, default=4000, help="tokenizer probe size (0: no probe)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "runs" / f"bench_quality-{Path(args.config).stem}"
    args.out = args.out.resolve()
    if args.out.exists() and any(args.out.iterdir()) and not args.resume:
        parser.error(f"{args.out} is not empty: pass --resume to continue that sweep, or another --out")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_args.json").write_text(json.dumps(
        {"config": args.config, "setting": args.setting, "gin_bindings": args.gin_bindings}, indent=2) + "\n")
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            runs.append(bench_run(args, variant, seed))
            print(f"{variant} seed {seed}: " + ", ".join(
                f"{name.split('/')[0]} {runs[-1]['final'][name]:.3f}" for name in HEADLINE
                if name in runs[-1]["final"]) + f" ({runs[-1]['wall_s']:.0f} s)", flush=True)
    summary = summarise(runs)
    text = markdown(summary, f"{args.config} {' '.join(args.gin_bindings)}".strip())
    (args.out / "summary.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
