"""The GAN parts: FIR resampling against its definition, the StyleGAN2 generator's shapes and
the PyTorch port's state_dict layout, the modulated convolution against the port's per-sample
grouped form, the orthogonal deformator, the CNN encoder's published layout, the shift
sampler and the shift-prediction loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from models.gan import Encoder4GAN, Generator, LatentDeformator
from models.gan.layers import ModulatedConv2d
from models.gan.shifts import one_hot_shifts, sample_shift_magnitudes, shift_prediction_loss
from models.gan.upfirdn import make_kernel, upfirdn2d


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py

TINY = {4: 8, 8: 8, 16: 4, 32: 4}


def upfirdn_by_definition(x, kernel, up, pad):
    """Zero-stuff, pad, correlate with the flipped kernel, one channel at a time."""
    batch, channels, height, width = x.shape
    stuffed = torch.zeros(batch, channels, height * up, width * up)
    stuffed[:, :, ::up, ::up] = x
    padded = F.pad(stuffed, (pad[0], pad[1], pad[0], pad[1]))
    flipped = torch.flip(kernel, (0, 1))[None, None]
    return torch.cat([F.conv2d(padded[:, c:c + 1], flipped) for c in range(channels)], dim=1)


@pytest.mark.parametrize("up,pad", [(1, (1, 1)), (1, (2, 1)), (2, (2, 1)), (2, (0, 0)), (2, (3, 3)), (2, (-1, 1))])
def test_fir_resampling_matches_its_definition(up, pad):
    torch.manual_seed(0)
    x, kernel = torch.randn(2, 3, 6, 6), torch.randn(4, 4)
    torch.testing.assert_close(upfirdn2d(x, kernel, up=up, pad=pad), upfirdn_by_definition(x, kernel, up, pad))


def test_fir_upsampling_keeps_a_constant_image_constant_inside():
    up = upfirdn2d(torch.ones(1, 1, 8, 8), make_kernel([1, 3, 3, 1]) * 4, up=2, pad=(2, 1))
    assert up.shape == (1, 1, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


@pytest.mark.parametrize("size", [8, 16, 32])
def test_generator_output_shapes_at_small_sizes(size):
    torch.manual_seed(0)
    g = Generator(size, style_dim=16, n_mlp=2, channels=TINY)
    z = torch.randn(3, 16)
    image, latent = g([z], return_latents=True)
    assert image.shape == (3, 3, size, size) and torch.isfinite(image).all()
    assert latent.shape == (3, g.n_latent, 16) and g.n_latent == 2 * int(math.log2(size)) - 2
    mixed, _ = g([z, torch.randn(3, 16)], inject_index=1)
    assert mixed.shape == image.shape
    w = g.style(z)
    same, _ = g([w], input_is_latent=True, randomize_noise=False)
    again, _ = g([w], input_is_latent=True, noise=g.fixed_noise())
    torch.testing.assert_close(same, again)
    truncated, _ = g([w], input_is_latent=True, truncation=0.0, truncation_latent=g.mean_latent(64),
                     randomize_noise=False)
    assert torch.allclose(truncated[0], truncated[1], atol=1e-5)  # every sample at the truncation centre


def test_sizes_other_than_powers_of_two_from_8_are_refused():
    for size in (4, 12, 48):
        with pytest.raises(ValueError, match="power of two"):
            Generator(size, 16, 1, channels=TINY)


def port_layout(size, n_mlp, style_dim, channels):
    """{key: shape} of the PyTorch port's Generator state_dict, written out from its layout."""
    keys = {}
    for i in range(1, n_mlp + 1):
        keys[f"style.{i}.weight"], keys[f"style.{i}.bias"] = (style_dim, style_dim), (style_dim,)

    def styled(prefix, cin, cout, k, demodulated=True):
        keys[f"{prefix}.conv.weight"] = (1, cout, cin, k, k)
        keys[f"{prefix}.conv.modulation.weight"], keys[f"{prefix}.conv.modulation.bias"] = (cin, style_dim), (cin,)
        if demodulated:
            keys[f"{prefix}.noise.weight"], keys[f"{prefix}.activate.bias"] = (1,), (cout,)

    keys["input.input"] = (1, channels[4], 4, 4)
    styled("conv1", channels[4], channels[4], 3)
    styled("to_rgb1", channels[4], 3, 1, demodulated=False)
    keys["to_rgb1.bias"] = (1, 3, 1, 1)
    cin, log_size = channels[4], int(math.log2(size))
    for n, res in enumerate(2 ** i for i in range(3, log_size + 1)):
        styled(f"convs.{2 * n}", cin, channels[res], 3)
        keys[f"convs.{2 * n}.conv.blur.kernel"] = (4, 4)
        styled(f"convs.{2 * n + 1}", channels[res], channels[res], 3)
        styled(f"to_rgbs.{n}", channels[res], 3, 1, demodulated=False)
        keys[f"to_rgbs.{n}.bias"], keys[f"to_rgbs.{n}.upsample.kernel"] = (1, 3, 1, 1), (4, 4)
        cin = channels[res]
    for layer in range((log_size - 2) * 2 + 1):
        side = 2 ** ((layer + 5) // 2)
        keys[f"noises.noise_{layer}"] = (1, 1, side, side)
    return keys


def test_a_state_dict_with_the_ports_key_names_loads_strictly_and_decides_the_images():
    layout = port_layout(16, 2, 16, TINY)
    g = Generator(16, style_dim=16, n_mlp=2, channels=TINY)
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == layout
    torch.manual_seed(1)
    state = {k: torch.randn(shape) for k, shape in layout.items()}
    state.update({k: g.state_dict()[k] for k in layout if k.endswith("kernel")})  # the FIR kernels are fixed
    g.load_state_dict(state, strict=True)
    other = Generator(16, style_dim=16, n_mlp=2, channels=TINY)
    other.load_state_dict(state, strict=True)
    z = torch.randn(2, 16)
    torch.testing.assert_close(g([z], randomize_noise=False)[0], other([z], randomize_noise=False)[0])


def test_the_published_256px_layout_has_the_ports_channel_table():
    layout = port_layout(256, 8, 512, {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64})
    g = Generator(256, channel_multiplier=1)  # ffhq_low's table
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == layout
    assert Generator(256).channels[256] == 128  # channel_multiplier 2 by default (church, cat)


def grouped_modulated_conv(conv, x, style):
    """The port's formulation: per-sample weights, one grouped convolution for the batch."""
    batch, cin, height, width = x.shape
    weight = conv.scale * conv.weight * conv.modulation(style).view(batch, 1, cin, 1, 1)
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, conv.out_channel, 1, 1, 1)
    k = conv.kernel_size
    if conv.upsample:
        weight = weight.transpose(1, 2).reshape(batch * cin, conv.out_channel, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * cin, height, width), weight, stride=2, groups=batch)
        return conv.blur(out.view(batch, conv.out_channel, *out.shape[-2:]))
    out = F.conv2d(x.reshape(1, batch * cin, height, width), weight.view(batch * conv.out_channel, cin, k, k),
                   padding=conv.padding, groups=batch)
    return out.view(batch, conv.out_channel, *out.shape[-2:])


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
def test_modulated_convolution_equals_the_ports_grouped_form(upsample, demodulate, k):
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 6, k, style_dim=7, demodulate=demodulate, upsample=upsample)
    x, style = torch.randn(3, 5, 8, 8), torch.randn(3, 7)
    torch.testing.assert_close(conv(x, style), grouped_modulated_conv(conv, x, style), atol=1e-5, rtol=1e-4)


def test_deformator_is_orthogonal_and_stays_so_after_training_steps():
    torch.manual_seed(0)
    deformator = LatentDeformator(64)
    optimizer = torch.optim.Adam(deformator.parameters(), lr=0.1)
    for _ in range(3):
        q = deformator.matrix()
        torch.testing.assert_close(q @ q.t(), torch.eye(64), atol=1e-5, rtol=0)
        loss = deformator(torch.randn(4, 64)).pow(3).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    shifts = one_hot_shifts(torch.tensor([3, 5]), torch.tensor([2.0, -1.0]), 64)
    torch.testing.assert_close(deformator(shifts), torch.stack([2 * deformator.matrix()[:, 3],
                                                                -deformator.matrix()[:, 5]]))
    assert list(deformator.state_dict()) == ["log_mat_half"]


def test_shift_magnitudes_are_never_below_the_minimum_and_keep_their_sign():
    rng = torch.Generator().manual_seed(0)
    magnitudes = sample_shift_magnitudes(200_000, rng, scale=6.0, min_magnitude=0.5)
    assert magnitudes.abs().min() >= 0.5
    assert (magnitudes == -0.5).any() and (magnitudes == 0.5).any()  # both sides are clipped
    assert 5.8 < magnitudes.std() < 6.2 and abs(float(magnitudes.mean())) < 0.05
    raw = 6.0 * torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    kept = raw.abs() >= 0.5
    torch.testing.assert_close(magnitudes[kept], raw[kept])
    assert torch.equal(torch.sign(magnitudes[~kept]), torch.where(raw[~kept] < 0, -1.0, 1.0))


def test_shift_prediction_loss_is_ln_k_for_equal_distances_and_prefers_the_shifted_concept():
    concepts = torch.randn(4, 6, 8)
    moved = concepts + 0.3  # every concept moved by the same distance
    loss, distances = shift_prediction_loss(concepts, moved, torch.tensor([0, 1, 2, 3]))
    assert distances.shape == (4, 6)
    assert loss.item() == pytest.approx(math.log(6), abs=1e-5)
    one = concepts.clone()
    one[torch.arange(4), torch.tensor([0, 1, 2, 3])] += 1.0
    assert shift_prediction_loss(concepts, one, torch.tensor([0, 1, 2, 3]))[0] < math.log(6)


def test_cnn_encoder_has_the_published_layout_and_gives_a_token_grid():
    cnn = Encoder4GAN(16)
    kinds = [type(m).__name__ for m in cnn.encoder]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d",
                     "Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU", "ResBlock", "BatchNorm2d", "ResBlock",
                     "BatchNorm2d"]
    assert "encoder.13.convs.2.running_mean" in cnn.state_dict()
    assert cnn.tokens(torch.randn(2, 3, 64, 64)).shape == (2, 4, 16)
    assert Encoder4GAN(16, downsamples=2).tokens(torch.randn(2, 3, 32, 32)).shape == (2, 64, 16)
