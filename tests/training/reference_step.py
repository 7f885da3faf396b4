"""The straightforward formulation of one VCT training step , kept to check the
optimised step against (tests/training/test_step_equivalence.py) and to time it
(benchmarks/bench_train_step.py).

It follows the published formulation and shares no code with training/: the VCT modules run as
the functional re-statement in tests/models/reference_vct.py (per-head einsum attention) on the
live parameters, the VQ nearest code comes from a materialised (B, d, H, W, k) distance
tensor, the original and the swapped concept sets go through the decoder, the VQ-VAE and the
encoder as separate passes (the original set is decoded again, without gradient), and the hard
Gumbel sample is a one-hot vector multiplied with the codebook. The random draws are the
optimised step's, in the same order (swap concepts, swap partners, Gumbel noise for the
original then swapped set), so the same generator state gives the same step.
"""
import torch
import torch.nn.functional as F

from tests.models.reference_vct import decoder_forward, encoder_forward


def _heads(module):
    cross = module.cs_layers[0][0].fn.heads
    latent = module.layers[0][0].fn.heads if len(module.layers) else 1
    return cross, latent


def vq_tokenize(vqvae, images):
    """Frozen VQ-VAE tokens (B, N, d) and code indices (B, N), distances materialised."""
    z_e = vqvae.encoder(images)                                    # (B, d, H, W)
    codebook = vqvae.emb.weight                                    # (d, k)
    diff = z_e.unsqueeze(-1) - codebook[None, :, None, None, :]    # (B, d, H, W, k)
    codes = diff.pow(2).sum(dim=1).argmin(dim=-1).flatten(1)      # (B, N)
    return codebook.t()[codes], codes


def hard_gumbel_images(vqvae, logits, uniform):
    """One-hot of argmax(logits + Gumbel(uniform)) times the codebook, VQ-decoded."""
    gumbel = -torch.log(-torch.log(uniform))
    one_hot = F.one_hot((logits.float() + gumbel).argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    tokens = one_hot @ vqvae.emb.weight.t()                       # (B, N, d)
    side = int(round(tokens.shape[1] ** 0.5))
    grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
    return torch.tanh(vqvae.decoder(grid))


@torch.no_grad()
def spread_codebook(vqvae, images, seed=0):
    """Make a randomly initialised VQ-VAE tokenize like a trained one: unit-scale encoder
    output (the init scales it by 1/40) and codes = encoder vectors of ``images`` at random
    positions. (A random codebook maps every position to one code; the concepts of all images
    are then nearly equal and every swap is dropped.)"""
    vqvae.encoder[-1].weight.fill_(1.0)
    z_e = vqvae.encode(images).transpose(0, 1).flatten(1)  # (d, positions)
    pick = torch.randperm(z_e.shape[1], generator=torch.Generator().manual_seed(seed))[:vqvae.k]
    vqvae.emb.weight.copy_(z_e[:, pick.to(z_e.device)])


@torch.no_grad()
def make_random_vqvae_informative(vqvae, images, seed=0):
    """A random VQ-VAE decodes every code set to a near-constant image, which re-tokenises to
    one code, so the disentangling loss sees equal concept sets (zero distances). Louder
    decoder weights, and codes drawn from the encodings of both ``images`` and decoded random
    codes, make its tokens, decodings and re-tokenisations vary as a trained one's do."""
    for module in vqvae.decoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.weight.mul_(10)
    spread_codebook(vqvae, images, seed)
    side = images.shape[-1] // 4
    codes = torch.randint(vqvae.k, (images.shape[0], side, side),
                          generator=torch.Generator().manual_seed(seed)).to(images.device)
    decoded = vqvae.decode(vqvae.emb.weight.t()[codes].permute(0, 3, 1, 2))
    spread_codebook(vqvae, torch.cat([images, decoded]), seed)


class ReferenceVCTStep:
    """``step(images, generator)`` -> im_loss + dis_loss; ``losses(images, generator)`` ->
    (im_loss, dis_loss) with the graph to the encoder and decoder parameters."""

    def __init__(self, encoder, decoder, vqvae, min_change=1e-3):
        self.encoder, self.decoder, self.vqvae = encoder, decoder, vqvae
        self.min_change = min_change
        self.last_kept = None

    def encode(self, tokens):
        cross, latent = _heads(self.encoder)
        return encoder_forward(dict(self.encoder.named_parameters()), tokens, self.encoder.depth,
                               cross, latent)

    def decode(self, concepts):
        cross, latent = _heads(self.decoder)
        return decoder_forward(dict(self.decoder.named_parameters()), concepts, self.decoder.depth,
                               cross, latent)

    def losses(self, images, generator):
        with torch.no_grad():
            tokens, codes = vq_tokenize(self.vqvae, images)
        concepts = self.encode(tokens)
        logits = self.decode(concepts)
        im_loss = F.cross_entropy(logits.transpose(1, 2), codes)

        batch, num_concepts, _ = concepts.shape
        swap_concept = torch.randint(num_concepts, (batch,), generator=generator, device=images.device)
        offset = torch.randint(1, batch, (batch,), generator=generator, device=images.device)
        with torch.no_grad():
            original = concepts.detach()
            swapped = original.clone()
            keep = []
            for b in range(batch):
                partner, c = (b + int(offset[b])) % batch, int(swap_concept[b])
                swapped[b, c] = original[partner, c]
                keep.append(bool((swapped[b, c] - original[b, c]).norm() > self.min_change))
            keep = torch.tensor(keep, device=images.device)
            kept = self.last_kept = int(keep.sum())
            if kept == 0:
                return im_loss, concepts.new_zeros(())
            logits_org = self.decode(original[keep])
            logits_swap = self.decode(swapped[keep])
            uniform = torch.rand((2 * kept,) + logits_org.shape[1:], generator=generator,
                                 device=images.device, dtype=torch.float32)
            images_org = hard_gumbel_images(self.vqvae, logits_org, uniform[:kept])
            images_swap = hard_gumbel_images(self.vqvae, logits_swap, uniform[kept:])
            tokens_org = vq_tokenize(self.vqvae, images_org)[0]
            tokens_swap = vq_tokenize(self.vqvae, images_swap)[0]
        c_org = self.encode(tokens_org)
        c_swap = self.encode(tokens_swap)
        distance = (c_org - c_swap).norm(dim=-1)
        distance = distance / distance.norm(dim=1, keepdim=True)
        dis_loss = F.cross_entropy(distance, swap_concept[keep])
        return im_loss, dis_loss

    def __call__(self, images, generator):
        im_loss, dis_loss = self.losses(images, generator)
        return im_loss + dis_loss
