"""What the disentangling loss does to a run, checkpoint by checkpoint:

    python benchmarks/diagnose_vct.py RUN_DIR [--images 128] [--json out.json]

For each kept step checkpoint of a VQ or CLIP run, on the same fixed images:
- the gradient norm, over the encoder's weights, of the reconstruction loss and of the
  disentangling loss, and their ratio (how much the second outweighs the first);
- per concept c, with every image's concept c swapped with a partner's: swap accuracy (how
  often the largest re-encoded distance is at c, among the swaps that changed anything), the share of unseen swaps (the re-tokenised
  swapped image is identical to the original's: no signal), and the mean share of the
  normalised distance that lands at c, and the concepts whose re-encoding moves at least half
  as much as c's own (copies of c's factor, which the loss cannot tell apart; for a nearly
  empty c, most concepts, since its swaps change little but the Gumbel draw); and the
  re-encoded distance at c that the swap makes next to the one two independent Gumbel draws
  of the same, unswapped decoder output make (the noise floor the loss's signal must clear);
- how many distinct codes the decoder's most likely tokens use, next to the tokenizer's own;
- the run's metrics at that step, when it evaluated then.
Keep more checkpoints for a finer curve: ``--gin_bindings "get_args.keep_checkpoints = 20"``.
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def encoder_grad_norm(objective, loss):
    if not loss.requires_grad:  # no swap kept: the loss is a constant zero
        return 0.0
    params = [p for p in objective.encoder.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def loss_gradients(objective, images, seed):
    """{im_loss, dis_loss, grad_im, grad_dis, grad_ratio} on ``images``."""
    from training.losses import concept_disentangling_loss
    tokens, targets = objective.tokenizer.tokenize(images)
    concepts = objective.encoder(tokens)
    decoded = objective.decoder(concepts)
    im_loss = objective.tokenizer.reconstruction_loss(decoded, targets)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    dis_loss, _ = concept_disentangling_loss(objective.encoder, objective.decoder, objective.tokenizer,
                                             concepts, generator, objective.swap_min_change, decoded=decoded)
    grad_im, grad_dis = encoder_grad_norm(objective, im_loss), encoder_grad_norm(objective, dis_loss)
    return {"im_loss": im_loss.item(), "dis_loss": dis_loss.item(), "grad_im": grad_im, "grad_dis": grad_dis,
            "grad_ratio": grad_dis / max(grad_im, 1e-12)}


@torch.no_grad()
def per_concept_swaps(objective, images, seed):
    """Per concept: swap accuracy, unseen-swap share, mean normalised distance at the concept."""
    from training.losses import map_outputs, sample_swaps, swap_concepts
    tokenizer, encoder, decoder = objective.tokenizer, objective.encoder, objective.decoder
    concepts = encoder(tokenizer.tokenize(images)[0])
    batch, num_concepts, _ = concepts.shape
    generator = torch.Generator(device=images.device).manual_seed(seed)
    _, partner = sample_swaps(batch, num_concepts, generator, images.device)  # every concept swapped below
    rows = torch.arange(batch, device=images.device)
    result = {"swap_accuracy": [], "swaps_unseen": [], "distance_share": [], "moves_with": [],
              "swap_distance": [], "draw_noise": []}
    # its own generator, so the swaps below draw the same noise as before this measure existed
    noise_generator = torch.Generator(device=images.device).manual_seed(seed + 1)
    twice = map_outputs(lambda x: torch.cat([x, x]), decoder(concepts))
    redrawn = encoder(tokenizer.retokenize(tokenizer.detokenize(twice, noise_generator)))
    draw_noise = (redrawn[:batch] - redrawn[batch:]).float().norm(dim=-1).mean(dim=0)  # (C,)
    for c in range(num_concepts):
        concept = torch.full((batch,), c, device=images.device)
        swapped = swap_concepts(concepts, concept, partner)
        both = tokenizer.detokenize(decoder(torch.cat([concepts, swapped])), generator)
        again = encoder(tokenizer.retokenize(both))
        raw = (again[:batch] - again[batch:]).float().norm(dim=-1)
        share = F.normalize(raw, dim=1)[rows, concept]
        seen = raw.amax(dim=1) > 1e-6
        hits = (raw.argmax(dim=1) == c)[seen]  # among the swaps the tokenizer saw at all
        result["swap_accuracy"].append(float(hits.float().mean()) if hits.numel() else float("nan"))
        result["swaps_unseen"].append(float((~seen).float().mean()))
        result["distance_share"].append(float(share.mean()))
        result["swap_distance"].append(float(raw[:, c].mean()))
        result["draw_noise"].append(float(draw_noise[c]))
        mean = raw.mean(dim=0)
        result["moves_with"].append([[j, round(float(mean[j] / mean[c]), 2)] for j in mean.argsort(descending=True).tolist()
                                     if j != c and mean[j] >= 0.5 * mean[c] > 0])
    return result


@torch.no_grad()
def code_usage(objective, images):
    tokenizer = objective.tokenizer
    if not hasattr(tokenizer, "num_codes"):
        return {}
    tokens, targets = tokenizer.tokenize(images)
    decoded = objective.decoder(objective.encoder(tokens)).argmax(dim=-1)
    return {"codes_in_images": int(targets.unique().numel()), "codes_decoded": int(decoded.unique().numel()),
            "token_accuracy": float((decoded == targets).float().mean()), "num_codes": int(tokenizer.num_codes)}


def metrics_at(run_dir, step):
    from training.report import step_metrics_path
    path = step_metrics_path(run_dir, step)
    if not path.is_file():
        return {}
    results = json.loads(path.read_text())["results"]
    picks = {"factor_vae": "eval_accuracy", "mig": "discrete_mig", "dci": "disentanglement", "beta_vae": "eval_accuracy"}
    return {metric: results[metric][score] for metric, score in picks.items() if metric in results}


def diagnose_checkpoint(path, images_count, seed):
    from training.data import fixed_batch
    from training.evaluate_run import load_saved_run
    _, ctx, objective, _, state = load_saved_run(path, device="cpu")
    images = fixed_batch(ctx.batches, images_count, seed).to(ctx.device)
    torch.manual_seed(seed)
    row = {"step": int(state["step"]), **loss_gradients(objective, images, seed),
           **code_usage(objective, images), "per_concept": per_concept_swaps(objective, images, seed)}
    row["metrics"] = metrics_at(ctx.run_dir, row["step"])
    return row


def print_table(rows):
    print(f"{'step':>6} {'im_loss':>8} {'dis_loss':>8} {'|g_im|':>8} {'|g_dis|':>8} {'ratio':>7} "
          f"{'swap_acc':>8} {'unseen':>7} {'codes':>9} {'tok_acc':>7}  metrics")
    for row in rows:
        per = row["per_concept"]
        codes = f"{row.get('codes_decoded', '-')}/{row.get('codes_in_images', '-')}"
        metrics = " ".join(f"{k} {v:.3f}" for k, v in row["metrics"].items() if isinstance(v, float))
        print(f"{row['step']:>6} {row['im_loss']:>8.3f} {row['dis_loss']:>8.3f} {row['grad_im']:>8.3f} "
              f"{row['grad_dis']:>8.3f} {row['grad_ratio']:>7.1f} {np.nanmean(per['swap_accuracy']):>8.3f} "
              f"{np.mean(per['swaps_unseen']):>7.3f} {codes:>9} {row.get('token_accuracy', float('nan')):>7.3f}  "
              f"{metrics}")
    last = rows[-1]["per_concept"]
    print("per concept at the last checkpoint (swap accuracy / unseen):",
          " ".join(f"c{j} {a:.2f}/{u:.2f}" for j, (a, u) in enumerate(zip(last["swap_accuracy"], last["swaps_unseen"]))))
    print("re-encoded distance at the concept, its swap / two Gumbel draws without a swap:",
          " ".join(f"c{j} {d:.2f}/{n:.2f}" for j, (d, n) in enumerate(zip(last["swap_distance"], last["draw_noise"]))))
    copies = [f"c{c}: " + ", ".join(f"c{j} {ratio:.2f}" for j, ratio in others[:3]) + (" ..." if len(others) > 3 else "")
              for c, others in enumerate(last["moves_with"]) if others]
    print("re-encoded with the swapped concept, at >= half its own distance:", "; ".join(copies) or "none")


def main(argv=None):
    warnings.filterwarnings("ignore", "Mean of empty slice")  # a concept with no seen swap: nan
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--images", type=int, default=128, help="fixed images per checkpoint (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    from training.checkpoint import step_checkpoints
    found = step_checkpoints(args.run_dir)
    if not found:
        print(f"error: no step checkpoints in {args.run_dir / 'checkpoints'}", file=sys.stderr)
        return 2
    torch.set_grad_enabled(True)
    rows = [diagnose_checkpoint(path, args.images, args.seed) for _, path in found]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
