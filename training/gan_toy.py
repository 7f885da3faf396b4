"""The CPU toy's pretrained generator: a small StyleGAN2-architecture generator trained on the
synthetic Shapes3D world in two stages, plus a factor probe to label what it generates.

1. Synthesis: an encoder maps each image to a W code and the generator's synthesis network
   (``input_is_latent=True``) decodes it (an autoencoder in W; codes jittered with Gaussian
   noise and pulled towards the origin, so that nearby codes decode to similar images).
2. Mapping: the generator's mapping network ``style`` is fitted so that ``style(z)``, z ~ N(0, I),
   is distributed like the images' codes (sliced Wasserstein distance).

So the toy is a generator with a Gaussian latent, sampled exactly like a pretrained StyleGAN2
(``w = style(z)``, image = G(w)). A VAE with the usual N(0, I) prior was tried first: its
reconstructions were fine but its prior samples were mostly colour blobs (the mapping network
starts with PixelNorm, which discards z's radius and leaves the prior's directions uncovered).

The factor probe (a small CNN classifying the world's factors) is trained on the world's
labelled images and their reconstructions. Generator, encoder and probe are trained once,
when their files are missing, and saved weights-only; the GAN setting then loads the
generator like any pretrained one (``--generator_weights``)."""
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.gan import Generator
from training import checkpoint as ckpt
from training.errors import UserError


def toy_generator(gan):
    """The toy config's Generator (``gan_args`` size, style_dim, n_mlp, channels, lr_mlp)."""
    return Generator(gan.size, gan.style_dim, gan.n_mlp, gan.channel_multiplier, lr_mlp=gan.lr_mlp,
                     channels=gan.channels)


def _conv_trunk(channels, widths):
    """Stride-2 3x3 convolutions with ReLU: the shared body of the encoder and the probe."""
    layers, previous = [], channels
    for width in widths:
        layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.ReLU()]
        previous = width
    return nn.Sequential(*layers, nn.Flatten())


class ToyEncoder(nn.Module):
    """Image -> W code (the autoencoder's encoder; kept to reconstruct images for the probe)."""

    def __init__(self, size, latent_dim, widths=(32, 64, 64)):
        super().__init__()
        self.trunk = _conv_trunk(3, widths)
        self.head = nn.Linear(widths[-1] * (size // 2 ** len(widths)) ** 2, latent_dim)

    def forward(self, images):
        return self.head(self.trunk(images))


class FactorProbe(nn.Module):
    """Classifies each ground-truth factor of an image (one linear head per factor)."""

    def __init__(self, size, factor_sizes, widths=(32, 64, 64), hidden=128):
        super().__init__()
        self.factor_sizes = [int(s) for s in factor_sizes]
        self.body = nn.Sequential(_conv_trunk(3, widths),
                                  nn.Linear(widths[-1] * (size // 2 ** len(widths)) ** 2, hidden), nn.ReLU(),
                                  nn.Linear(hidden, sum(self.factor_sizes)))

    def forward(self, images):
        """-> list of (B, size_f) logits, one per factor."""
        return list(self.body(images).split(self.factor_sizes, dim=-1))

    @torch.no_grad()
    def predict(self, images, chunk=256):
        """(B, F) predicted factor classes."""
        return torch.cat([torch.stack([logits.argmax(-1) for logits in self(part)], dim=-1)
                          for part in images.split(chunk)])


MAX_TOY_IMAGES = 20000  # the toy trains on (a random subset of at most this many of) the world's images


def world_images(batches, device, seed=0):
    """(images (N, 3, H, W) in [-1, 1], factors (N, F)) of the world, read once into memory; a
    fixed random subset of ``MAX_TOY_IMAGES`` for a larger world."""
    count = len(batches)
    chosen = np.arange(count) if count <= MAX_TOY_IMAGES else np.sort(
        np.random.RandomState(seed).choice(count, MAX_TOY_IMAGES, replace=False))
    images, factors, _ = batches[chosen]
    return images.to(device), factors.to(device)


def _own_rng(device):
    """A fork of the global RNG (the CPU's, and the CUDA device's when training there)."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def autoencoder_loss(encoder, generator, images, jitter, pull):
    """MSE of the decoded (jittered) codes + ``pull`` * mean squared code; also the MSE."""
    codes = encoder(images)
    recon = generator([codes + jitter * torch.randn_like(codes)], input_is_latent=True)[0]
    mse = (recon - images).pow(2).mean()
    return mse + pull * codes.pow(2).mean(), mse.item()


def sliced_wasserstein(a, b, projections=64):
    """Mean squared difference of the sorted projections of two equal-sized point sets on
    random unit directions: zero when the two sets coincide."""
    directions = F.normalize(torch.randn(a.shape[1], projections, device=a.device), dim=0)
    return ((a @ directions).sort(dim=0).values - (b @ directions).sort(dim=0).values).pow(2).mean()


def _train(parameters, steps, lr, loss_fn, log, what, every=None):
    optimizer = torch.optim.Adam(parameters, lr=lr)
    start, cpu_start = time.perf_counter(), time.process_time()
    every = every or max(steps // 5, 1)
    for step in range(1, steps + 1):
        loss, value = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % every == 0 or step == steps:
            log(f"toy {what} step {step}/{steps}: {value:.4f} ({time.perf_counter() - start:.0f} s, "
                f"{time.process_time() - cpu_start:.0f} CPU s)")


def train_toy_generator(batches, gan, device, seed=0, log=print):
    """Both stages (module docstring); returns (generator, encoder) in eval mode. Uses its own
    RNG stream (the caller's is left as it was)."""
    with _own_rng(device):
        torch.manual_seed(seed)
        generator, encoder = toy_generator(gan).to(device), ToyEncoder(gan.size, gan.style_dim).to(device)
        world, _ = world_images(batches, device, seed)

        def synthesis_loss():
            images = world[torch.randint(len(world), (gan.toy_batch_size,), device=device)]
            return autoencoder_loss(encoder, generator, images, gan.toy_jitter, gan.toy_pull)

        synthesis = [p for name, p in generator.named_parameters() if not name.startswith("style.")]
        _train([*synthesis, *encoder.parameters()], gan.toy_steps, gan.toy_lr, synthesis_loss, log, "synthesis (mse)")
        encoder.eval()
        with torch.no_grad():
            codes = torch.cat([encoder(part) for part in world.split(256)])

        def mapping_loss():
            targets = codes[torch.randint(len(codes), (256,), device=device)]
            fitted = generator.style(torch.randn(256, gan.style_dim, device=device))
            loss = sliced_wasserstein(fitted, targets)
            return loss, loss.item()

        _train(generator.style.parameters(), gan.toy_mapping_steps, gan.toy_lr, mapping_loss, log,
               "mapping (sliced Wasserstein)")
    return generator.eval(), encoder


@torch.no_grad()
def reconstruct(encoder, generator, images, chunk=256):
    """Decoded codes of ``images`` (with the generator's stored noise maps)."""
    return torch.cat([generator([encoder(part)], input_is_latent=True, randomize_noise=False)[0]
                      for part in images.split(chunk)])


def probe_accuracy(probe, images, factors):
    """Mean accuracy per factor of ``probe`` on ``images`` with ground truth ``factors``."""
    return (probe.predict(images) == factors).float().mean(0).tolist()


def _encoder_path(generator_path):
    return Path(generator_path).with_name(Path(generator_path).stem + "_encoder.pt")


def _heldout_split(count, seed, fraction=0.1):
    """(train, held-out) index arrays: a fixed tenth of the world is kept out of the probe."""
    order = np.random.RandomState(seed).permutation(count)
    cut = max(int(count * fraction), 1)
    return np.sort(order[cut:]), np.sort(order[:cut])


def train_probe(batches, data, encoder, generator, gan, device, seed=0, log=print):
    """A FactorProbe trained on the world's images and their reconstructions (half each per
    batch, same labels), so that it also reads the generator's blurrier images. Returns the
    probe and its held-out accuracy per factor on real images and on reconstructions."""
    images, factors = world_images(batches, device, seed)
    recons = reconstruct(encoder, generator, images)
    train, heldout = (torch.from_numpy(part).to(device) for part in _heldout_split(len(images), seed))
    with _own_rng(device):
        torch.manual_seed(seed)
        probe = FactorProbe(gan.size, data.factors_num_values).to(device)
        optimizer = torch.optim.Adam(probe.parameters(), lr=2e-3)
        for _ in range(gan.probe_steps):
            chosen = train[torch.randint(len(train), (128,), device=device)]
            use_recon = torch.rand(len(chosen), 1, 1, 1, device=device) < 0.5
            batch = torch.where(use_recon, recons[chosen], images[chosen])
            loss = sum(F.cross_entropy(logits, factors[chosen, f]) for f, logits in enumerate(probe(batch)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    probe.eval()
    accuracy = {"real": probe_accuracy(probe, images[heldout], factors[heldout]),
                "reconstruction": probe_accuracy(probe, recons[heldout], factors[heldout])}
    log(f"factor probe held-out accuracy: real {np.round(accuracy['real'], 2).tolist()}, "
        f"reconstructions {np.round(accuracy['reconstruction'], 2).tolist()}")
    return probe, accuracy


def save_probe(path, probe, data, accuracy):
    ckpt.atomic_torch_save({"state_dict": probe.state_dict(), "factor_sizes": list(probe.factor_sizes),
                            "factor_names": list(data.factor_names), "heldout_accuracy": accuracy}, Path(path))


def load_probe(path, size, device):
    """(FactorProbe, its saved record) from ``path`` (weights-only)."""
    record = ckpt.load_checkpoint(path, map_location=device)
    probe = FactorProbe(size, record["factor_sizes"])
    ckpt.load_model_state(probe, record["state_dict"], "factor probe", path)
    return probe.to(device).eval(), record


def _load_toy(gan, generator_path, device):
    """The saved toy generator and encoder (the encoder reconstructs images for the probe)."""
    generator, encoder = toy_generator(gan).to(device), ToyEncoder(gan.size, gan.style_dim).to(device)
    ckpt.load_model_state(generator, ckpt.load_checkpoint(generator_path), "toy generator", generator_path)
    path = _encoder_path(generator_path)
    if not path.is_file():
        raise UserError(f"{path} (the toy generator's encoder) is missing, so the factor probe cannot be "
                        f"trained on reconstructions: delete {generator_path} to train both again")
    ckpt.load_model_state(encoder, ckpt.load_checkpoint(path), "toy encoder", path)
    return generator.eval(), encoder.eval()


def ensure_toy_generator(ctx, gan):
    """Train and save the toy generator (and its encoder) and the factor probe when their files
    are missing; files that exist are kept. The caller's RNG is left as it was."""
    generator_path = Path(gan.generator_weights)
    probe_path = Path(gan.probe_path) if gan.probe_path else None
    need_generator = not generator_path.is_file()
    need_probe = probe_path is not None and not probe_path.is_file()
    if not (need_generator or need_probe) or gan.generator_weights.startswith("random"):
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise UserError(f"toy generator or probe missing ({generator_path}, {probe_path}); "
                        f"make them with a single-process run first")
    start, cpu_start = time.perf_counter(), time.process_time()
    if need_generator:
        print(f"toy generator {generator_path} not found: training it on {ctx.cfg.name} first")
        generator, encoder = train_toy_generator(ctx.batches, gan, ctx.device, ctx.seed)
        ckpt.atomic_torch_save(generator.state_dict(), generator_path)
        ckpt.atomic_torch_save(encoder.state_dict(), _encoder_path(generator_path))
    else:
        generator, encoder = _load_toy(gan, generator_path, ctx.device)
    if need_probe:
        probe, accuracy = train_probe(ctx.batches, ctx.data, encoder, generator, gan, ctx.device, ctx.seed)
        save_probe(probe_path, probe, ctx.data, accuracy)
    print(f"toy generator and probe ready in {time.perf_counter() - start:.0f} s "
          f"({time.process_time() - cpu_start:.0f} CPU s)")
