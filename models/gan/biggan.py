"""BigGAN-deep-256 through the ``pytorch-pretrained-biggan`` package (the field's usual port of
DeepMind's BigGAN-deep): its architecture built from the published config without a download,
random weights made usable for tests, and the truncated noise the generator is sampled with."""
import torch
import torch.nn.functional as F

# The biggan-deep-256 config: (upsample?, in, out channel multiples of channel_width) per block;
# self-attention before block 8 (at 64 px). The package's default config is the 128 px model's.
BIGGAN_DEEP_256_LAYERS = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                          (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2),
                          (True, 2, 1)]
BIGGAN_Z_DIM = 128
BIGGAN_CLASSES = 1000


def _package():
    try:
        import pytorch_pretrained_biggan
    except ImportError:
        raise ImportError("the BigGAN setting needs the pytorch-pretrained-biggan package "
                          "(pip install pytorch-pretrained-biggan)") from None
    return pytorch_pretrained_biggan


def biggan_deep_256(channel_width=128):
    """An uninitialised-weights BigGAN-deep-256 (``channel_width`` 128 as published; smaller
    widths build the same architecture narrower, for tests)."""
    biggan = _package()
    config = biggan.BigGANConfig(output_dim=256, z_dim=BIGGAN_Z_DIM, class_embed_dim=128,
                                 channel_width=channel_width, num_classes=BIGGAN_CLASSES,
                                 layers=[list(layer) for layer in BIGGAN_DEEP_256_LAYERS],
                                 attention_layer_position=8, eps=1e-4, n_stats=51)
    return biggan.BigGAN(config)


@torch.no_grad()
def make_random_weights_usable(model, power_iterations=20):
    """The package leaves the final BatchNorm's affine parameters uninitialised, and random
    spectral-norm vectors give arbitrary singular-value estimates (activations overflow):
    set that BatchNorm to identity and run power iterations on every spectral-normed weight."""
    for module in model.modules():
        if type(module).__name__ == "BigGANBatchNorm" and not module.conditional:
            module.weight.fill_(1.0)
            module.bias.zero_()
        if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
            matrix = module.weight_orig.flatten(1)
            u = module.weight_u
            for _ in range(power_iterations):
                v = F.normalize(matrix.t() @ u, dim=0)
                u = F.normalize(matrix @ v, dim=0)
            module.weight_u.copy_(u)
            module.weight_v.copy_(v)
    return model


def truncated_noise(count, generator=None, device=None, truncation=0.4, bound=2.0, dim=BIGGAN_Z_DIM):
    """``truncation`` times N(0, 1) truncated to [-bound, bound] (the package's
    ``truncated_noise_sample``), drawn from ``generator`` by resampling out-of-range values."""
    noise = torch.randn(count, dim, generator=generator, device=device)
    while True:
        outside = noise.abs() > bound
        if not outside.any():
            return truncation * noise
        noise[outside] = torch.randn(int(outside.sum()), generator=generator, device=device)


def class_vector(index, count=1, device=None):
    """(count, 1000) one-hot ImageNet class vectors."""
    if not 0 <= index < BIGGAN_CLASSES:
        raise ValueError(f"ImageNet class index must be in [0, {BIGGAN_CLASSES}), got {index}")
    vector = torch.zeros(count, BIGGAN_CLASSES, device=device)
    vector[:, index] = 1.0
    return vector
