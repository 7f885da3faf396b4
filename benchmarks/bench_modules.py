"""Forward+backward time of the default VCT encoder+decoder: this implementation (fused
``scaled_dot_product_attention``) against a plain per-head einsum attention, side by side.

    python benchmarks/bench_modules.py [--batch 32] [--reps 3] [--device cpu]

Both variants use the same weights and inputs; the script checks their outputs agree before
timing and prints seconds per step for each and their ratio (reference / ours).
"""
import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.visual_concept_tokenizor import Attention, VCT_Decoder, VCT_Encoder  # noqa: E402


def einsum_attention_forward(self, x, context=None, mask=None):
    """The published formulation: heads folded into the batch, explicit QK^T, softmax, AV."""
    h = self.heads
    context = x if context is None else context
    q = self.to_q(x)
    k, v = self.to_kv(context).chunk(2, dim=-1)
    q, k, v = (rearrange(t, "b n (h d) -> (b h) n d", h=h) for t in (q, k, v))
    sim = torch.einsum("b i d, b j d -> b i j", q, k) * self.scale
    attn = sim.softmax(dim=-1)
    out = torch.einsum("b i j, b j d -> b i d", attn, v)
    return self.to_out(rearrange(out, "(b h) n d -> b n (h d)", h=h))


@contextlib.contextmanager
def reference_attention():
    fused = Attention.forward
    Attention.forward = einsum_attention_forward
    try:
        yield
    finally:
        Attention.forward = fused


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(enc, dec, x, target):
    logits = dec(enc(x))
    loss = torch.nn.functional.cross_entropy(rearrange(logits, "b n k -> b k n"), target)
    loss.backward()
    return loss


def time_steps(enc, dec, x, target, reps, device):
    step(enc, dec, x, target)  # warm-up
    times = []
    for _ in range(reps):
        enc.zero_grad(set_to_none=True)
        dec.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        step(enc, dec, x, target)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    enc = VCT_Encoder(z_index_dim=20).to(device)
    dec = VCT_Decoder(index_num=256, z_index_dim=256, ce_loss=True).to(device)
    x = torch.randn(args.batch, 256, 256, device=device)
    target = torch.randint(0, 256, (args.batch, 256), device=device)

    with torch.no_grad():
        ours = dec(enc(x[:4]))
        with reference_attention():
            reference = dec(enc(x[:4]))
    max_diff = (ours - reference).abs().max().item()
    assert max_diff < 1e-3, f"variants disagree by {max_diff}"

    t_ours = time_steps(enc, dec, x, target, args.reps, device)
    with reference_attention():
        t_ref = time_steps(enc, dec, x, target, args.reps, device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} reps={args.reps} "
          f"torch={torch.__version__}")
    print(f"max |output difference| = {max_diff:.2e}")
    print(f"sdpa (this implementation): {t_ours:.3f} s/step  ({args.batch / t_ours:.1f} images/s)")
    print(f"per-head einsum reference : {t_ref:.3f} s/step  ({args.batch / t_ref:.1f} images/s)")
    print(f"speed-up (reference / ours): {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
