import pytest
import torch

from models.mask_decoder import MaskDecoder, MaskOutput, compose


def tiny_decoder(image_size=32, **kw):
    torch.manual_seed(0)
    return MaskDecoder(image_size=image_size, hidden=8, query_features=16, **kw)


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_output_shapes_and_masks_sum_to_one_at_every_pixel(image_size):
    decoder = tiny_decoder(image_size)
    out = decoder(torch.randn(2, 5, 256))
    assert isinstance(out, MaskOutput)
    assert out.image.shape == (2, 3, image_size, image_size)
    assert out.rgb.shape == (2, 5, 3, image_size, image_size)
    assert out.masks.shape == out.mask_logits.shape == (2, 5, image_size, image_size)
    torch.testing.assert_close(out.masks.sum(dim=1), torch.ones(2, image_size, image_size))
    assert (out.masks >= 0).all() and out.rgb.abs().max() <= 1
    torch.testing.assert_close(out.image, (out.masks.unsqueeze(2) * out.rgb).sum(dim=1))


def test_published_sizes_decode_64_px_from_a_64x4x4_map():
    decoder = MaskDecoder(image_size=64)
    assert decoder.map_channels == 64 and decoder.query_decoder.latents.shape[0] == 4
    assert decoder.query_decoder.fc_layer.out_features == 256
    ups = [m for m in decoder.conv_decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 4 and ups[-1].out_channels == 4


def test_each_concept_is_decoded_on_its_own():
    decoder = tiny_decoder().eval()  # eval: BatchNorm must not mix the batch either
    concepts = torch.randn(1, 4, 256)
    rgb, logits = decoder.decode_each(concepts)
    changed = concepts.clone()
    changed[0, 1:] = torch.randn(3, 256)
    rgb2, logits2 = decoder.decode_each(changed)
    torch.testing.assert_close(rgb2[:, 0], rgb[:, 0])
    torch.testing.assert_close(logits2[:, 0], logits[:, 0])
    assert not torch.allclose(logits2[:, 1], logits[:, 1])


def test_compose_with_one_hot_logits_gives_hard_masks():
    rgb = torch.rand(1, 2, 3, 4, 4) * 2 - 1
    hard = torch.zeros(1, 2, 4, 4)
    hard[:, 0, :2] = 1
    hard[:, 1, 2:] = 1
    out = compose(rgb, (hard - 0.5) * 100)
    torch.testing.assert_close(out.masks, hard)
    torch.testing.assert_close(out.image[:, :, :2], rgb[:, 0, :, :2])


@pytest.mark.parametrize("kwargs", [dict(image_size=24), dict(image_size=4), dict(query_features=10)])
def test_bad_sizes_are_clear_errors(kwargs):
    with pytest.raises(ValueError, match="MaskDecoder"):
        MaskDecoder(**{"hidden": 8, **kwargs})
