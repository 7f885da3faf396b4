"""The pretrained-GAN settings' working parts: the frozen generator (StyleGAN2 or BigGAN-deep)
as a source of latents and images, its weights, the objective (deformator + CNN + VCT encoder
trained with the shift-prediction loss) and the traversal grid.

No dataset images are used: every step generates its own pairs. (The runner still reads a
batch of the configured dataset per step; only its size and device are used here.)"""
import dataclasses
from pathlib import Path

import torch
import torchvision
from torch import nn

from models.gan import Encoder4GAN, Generator, LatentDeformator
from models.gan.shifts import one_hot_shifts, sample_shift_magnitudes, shift_prediction_loss
from training import checkpoint as ckpt
from training.errors import UserError
from training.tokenizers.vq import concept_encoder, weights_loaded_later
from training.visualize import to_unit_range

RANDOM_WEIGHTS = "random"


# ============================================================================ generators

class FrozenSource(nn.Module):
    """A frozen generator: no parameter takes gradients, and it stays in eval mode inside a
    training module (gradients still flow through it to the latent offsets)."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)

    def train(self, mode=True):
        return super().train(False)


class StyleGANSource(FrozenSource):
    """StyleGAN2 in W: latents are ``style(z)`` for z ~ N(0, I); images ``G(w)``."""

    def __init__(self, generator, randomize_noise=True):
        super().__init__(generator)
        self.randomize_noise = randomize_noise
        self.latent_dim, self.image_size = generator.style_dim, generator.size

    @torch.no_grad()
    def sample_latents(self, count, rng=None):
        device = self.generator.input.input.device
        return self.generator.style(torch.randn(count, self.latent_dim, generator=rng, device=device))

    def render(self, latents, rng=None, fixed_noise=False):
        """Images of W latents (B, style_dim); per-pixel noise fresh from ``rng`` (when
        ``randomize_noise``), or the generator's stored maps when ``fixed_noise``."""
        if fixed_noise or not self.randomize_noise:
            noise = self.generator.fixed_noise()
        else:
            noise = [torch.randn(latents.shape[0], 1, *stored.shape[-2:], generator=rng, device=latents.device)
                     for stored in self.generator.fixed_noise()]
        return self.generator([latents], input_is_latent=True, noise=noise)[0]


class BigGANSource(FrozenSource):
    """BigGAN-deep in z: latents are truncated noise, every image of one ImageNet class."""

    def __init__(self, model, class_index, truncation):
        super().__init__(model)
        from models.gan.biggan import BIGGAN_Z_DIM, class_vector
        self.register_buffer("class_vector", class_vector(class_index), persistent=False)
        self.truncation = truncation
        self.latent_dim, self.image_size = BIGGAN_Z_DIM, model.config.output_dim

    @torch.no_grad()
    def sample_latents(self, count, rng=None):
        from models.gan.biggan import truncated_noise
        return truncated_noise(count, rng, self.class_vector.device, self.truncation)

    def render(self, latents, rng=None, fixed_noise=False):
        return self.generator(latents, self.class_vector.expand(latents.shape[0], -1), self.truncation)


def _random_seed(weights):
    """The seed of 'random' / 'random:SEED', or None for a file."""
    if weights == RANDOM_WEIGHTS:
        return 0
    if weights.startswith(RANDOM_WEIGHTS + ":"):
        try:
            return int(weights.split(":", 1)[1])
        except ValueError:
            raise UserError(f"--generator_weights {weights!r}: expected random:SEED with an integer SEED") from None
    return None


def read_generator_weights(weights, what, source):
    """The state_dict in ``weights`` (weights-only; a converted port checkpoint's ``g_ema``)."""
    if not weights:
        raise UserError(f"no {what} weights configured: pass --generator_weights PATH "
                        f"(or bind gan_args.generator_weights)")
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"{what} weights not found: {path} -- fetch {source} and save it there, "
                        f"or pass --generator_weights PATH ('random' for random weights)")
    state = ckpt.load_checkpoint(path)
    return state.get("g_ema", state), path


def _built(make, weights):
    """``make()`` under the seed of random weights (0 for a file, whose weights replace them),
    leaving the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_random_seed(weights) or 0)
        return make()


def stylegan_source(gan, device):
    """The frozen StyleGAN2 of ``gan_args`` (size, style_dim, n_mlp, channel_multiplier, ...)."""
    try:
        generator = _built(lambda: Generator(gan.size, gan.style_dim, gan.n_mlp, gan.channel_multiplier,
                                             lr_mlp=gan.lr_mlp, channels=gan.channels), gan.generator_weights)
    except ValueError as err:
        raise UserError(f"gan_args: {err}") from None
    what = f"StyleGAN2 {gan.size} px generator"
    if _random_seed(gan.generator_weights) is None and not weights_loaded_later():
        state, path = read_generator_weights(gan.generator_weights, what, gan.weights_source)
        ckpt.load_model_state(generator, state, what, path)
    return StyleGANSource(generator.to(device), gan.randomize_noise)


def biggan_source(gan, device):
    """The frozen BigGAN-deep-256 of ``gan_args`` (class, truncation, channel width)."""
    from models.gan.biggan import biggan_deep_256, make_random_weights_usable
    try:
        model = _built(lambda: biggan_deep_256(gan.biggan_channel_width), gan.generator_weights)
    except ImportError as err:
        raise UserError(str(err)) from None
    what = "BigGAN-deep-256 generator"
    if _random_seed(gan.generator_weights) is not None:
        make_random_weights_usable(model)
    elif not weights_loaded_later():  # (a bundle's weights replace these)
        state, path = read_generator_weights(gan.generator_weights, what, gan.weights_source)
        ckpt.load_model_state(model, state, what, path)
    if not 0 < gan.biggan_truncation <= 1:
        raise UserError(f"gan_args.biggan_truncation = {gan.biggan_truncation}: BigGAN needs 0 < truncation <= 1")
    if not 0 <= gan.biggan_class < 1000:
        raise UserError(f"gan_args.biggan_class = {gan.biggan_class}: an ImageNet class index is in [0, 1000)")
    return BigGANSource(model, gan.biggan_class, gan.biggan_truncation).to(device)


# ============================================================================ objective

class GANObjective(nn.Module):
    """One step: B latents, their images, one random concept per sample shifted along its
    deformator direction by a random magnitude, the shifted images (with gradient to the
    deformator through the frozen generator), both through the CNN and the VCT encoder, and
    the shift-prediction loss. Trained: deformator, CNN, VCT encoder."""

    def __init__(self, source, deformator, cnn, encoder, shift_scale=6.0, min_shift=0.5):
        super().__init__()
        self.source, self.deformator, self.cnn, self.encoder = source, deformator, cnn, encoder
        self.shift_scale, self.min_shift = shift_scale, min_shift

    @property
    def num_concepts(self):
        return self.encoder.latents.shape[0]

    def concepts(self, images):
        """Images (B, 3, H, W) in [-1, 1] -> concept tokens (B, concepts, dim)."""
        return self.encoder(self.cnn.tokens(images))

    @torch.no_grad()
    def encode_images(self, images):
        return self.concepts(images)

    def shift(self, latents, targets, magnitudes):
        """Latents moved by ``magnitudes`` along the directions of concepts ``targets``."""
        return latents + self.deformator(one_hot_shifts(targets, magnitudes, self.source.latent_dim))

    def forward(self, images, generator=None, indices=None):
        batch, device = images.shape[0], images.device
        latents = self.source.sample_latents(batch, generator)
        with torch.no_grad():
            originals = self.source.render(latents, generator)
        targets = torch.randint(self.num_concepts, (batch,), generator=generator, device=device)
        magnitudes = sample_shift_magnitudes(batch, generator, device, self.shift_scale, self.min_shift)
        shifted = self.source.render(self.shift(latents, targets, magnitudes), generator)
        # two CNN passes, as published: BatchNorm sees the originals and the shifted images apart
        loss, distances = shift_prediction_loss(self.concepts(originals), self.concepts(shifted), targets)
        accuracy = (distances.argmax(dim=-1) == targets).float().mean()
        return loss, {"loss": loss.detach(), "shift_accuracy": accuracy}

    def model_state(self):
        """The published checkpoint keys (the generator is frozen and lives in its own file)."""
        return {"encoder_state_dict": self.cnn.state_dict(), "mlp_state_dict": self.deformator.state_dict(),
                "encoder_model_clip_state_dict": self.encoder.state_dict()}

    def load_model_state(self, checkpoint, load):
        load(self.cnn, checkpoint["encoder_state_dict"], "CNN image encoder (Encoder4GAN)")
        load(self.deformator, checkpoint["mlp_state_dict"], "latent deformator")
        load(self.encoder, checkpoint["encoder_model_clip_state_dict"], "VCT encoder")

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def traversal(self, latent, concept, alphas):
        """Images G(w + D(alpha e_concept)) for every alpha, from one latent (1, dim), with the
        generator's stored noise (so only the direction changes along a row)."""
        direction = self.deformator.matrix()[:, concept]
        return self.source.render(latent + alphas[:, None] * direction[None], fixed_noise=True)


# get_args fields of the VCT objective's loss terms beyond reconstruction, which the GAN objective
# does not have (their defaults are RunConfig's)
VCT_LOSS_OPTIONS = ("dis_weight", "dis_start_step", "swap_min_change", "dis_soft_retokens",
                    "concept_similarity_weight", "concept_axis_weight", "recon_focal_gamma")


def gan_objective(ctx, gan, kind):
    """The GANObjective of the run: ``kind`` 'stylegan2' or 'biggan', knobs ``gan`` (gan_args)."""
    cfg = ctx.cfg
    if not cfg.dis_loss:
        raise UserError("the GAN settings train only the shift-prediction loss: --wo_dis_loss "
                        "(get_args.dis_loss = False) does not apply")
    defaults = {field.name: field.default for field in dataclasses.fields(cfg)}
    changed = [f"get_args.{name} = {getattr(cfg, name)!r}" for name in VCT_LOSS_OPTIONS
               if getattr(cfg, name) != defaults[name]]
    if changed:
        raise UserError(f"{', '.join(changed)}: the concept-swap and concept-similarity options do not apply "
                        f"to the GAN settings, which train only the shift-prediction loss")
    if kind == "stylegan2" and gan.train_toy_if_missing and not weights_loaded_later():
        from training.gan_toy import ensure_toy_generator
        ensure_toy_generator(ctx, gan)
    source = biggan_source(gan, ctx.device) if kind == "biggan" else stylegan_source(gan, ctx.device)
    if not 1 <= cfg.concepts_num <= source.latent_dim:
        raise UserError(f"get_args.concepts_num = {cfg.concepts_num}: the {source.latent_dim}-d latent has at "
                        f"most {source.latent_dim} orthogonal directions")
    grid = source.image_size // 2 ** gan.encoder_downsamples
    if grid < 1 or source.image_size % 2 ** gan.encoder_downsamples:
        raise UserError(f"gan_args.encoder_downsamples = {gan.encoder_downsamples} does not fit "
                        f"{source.image_size} px images")
    deformator = LatentDeformator(source.latent_dim, random_init=True)
    cnn = Encoder4GAN(cfg.hidden, downsamples=gan.encoder_downsamples)
    encoder = concept_encoder(cfg.concepts_num, "get_args.concepts_num", cfg.hidden, "get_args.hidden")
    if hasattr(encoder, "fc_layer"):  # kept for the published state_dict, never used: not trained
        encoder.fc_layer.requires_grad_(False)
    return GANObjective(source, deformator, cnn, encoder, gan.shift_scale, gan.min_shift)


# ============================================================================ pictures

def traversal_alphas(gan, device=None):
    start, stop, step = (float(v) for v in gan.traversal_range)
    return torch.arange(start, stop, step, device=device)


@torch.no_grad()
def traversal_grid(objective, latent, alphas):
    """(3, H, W) grid in [0, 1]: row j = concept j's traversal, one column per alpha."""
    rows = [objective.traversal(latent, j, alphas) for j in range(objective.num_concepts)]
    return torchvision.utils.make_grid(to_unit_range(torch.cat(rows)), nrow=len(alphas), padding=2, pad_value=1.0)


def traversal_grids(ctx, objective, gan):
    """{'traversal': grid} from the same latent at every save (drawn from the run's seed)."""
    rng = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    latent = objective.source.sample_latents(1, rng)
    return {"traversal": traversal_grid(objective, latent, traversal_alphas(gan, ctx.device))}
