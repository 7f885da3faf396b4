"""Short CPU demo of the core modules: a VQ-VAE tokenizes images, VCT turns the image tokens
into concept tokens and back into code logits. Runs in seconds; no data or weights needed.

    python -m models.demo [--batch 4] [--seed 0] [--device cpu]
"""
import argparse
import time

import torch

from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    vqvae = VQ_CVAE(d=256, k=128).to(device).eval()
    encoder = VCT_Encoder(z_index_dim=20).to(device)
    decoder = VCT_Decoder(index_num=128, z_index_dim=256, ce_loss=True).to(device)
    images = torch.rand(args.batch, 3, 64, 64, device=device) * 2 - 1

    start = time.perf_counter()
    with torch.no_grad():
        tokens, codes = vqvae.tokenize(images)
        concepts = encoder(tokens)
        logits = decoder(concepts)
    elapsed = time.perf_counter() - start
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), codes)
    print(f"images          {tuple(images.shape)}")
    print(f"image tokens    {tuple(tokens.shape)}  code indices {tuple(codes.shape)}")
    print(f"concept tokens  {tuple(concepts.shape)}")
    print(f"code logits     {tuple(logits.shape)}  untrained CE {loss.item():.3f} (ln 128 = 4.852)")
    print(f"forward time    {elapsed:.2f} s on {device}")


if __name__ == "__main__":
    main()
