import math

import pytest
import torch

from models.visual_concept_tokenizor import (
    MLP_layers, VCT_Decoder, VCT_Encoder, Attention, grid_position_code)
from tests.models import reference_vct as ref


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def random_state_dict(shapes, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g, dtype=dtype) * 0.05 for k, s in shapes.items()}


def test_seed_snippet_shapes_and_parameter_counts():
    torch.manual_seed(0)
    enc = VCT_Encoder(z_index_dim=20)
    dec = VCT_Decoder(index_num=256, z_index_dim=256, ce_loss=True)
    x = torch.randn(32, 256, 256)
    with torch.no_grad():
        z = enc(x)
        x_hat = dec(z)
    assert z.shape == (32, 20, 256)
    assert x_hat.shape == (32, 256, 256)
    assert n_params(enc) == 14_697_668
    assert n_params(dec) == 14_852_864


def test_published_state_dicts_load_strictly_and_match_reference_forward():
    enc_sd = random_state_dict(ref.published_encoder_shapes(), seed=1)
    dec_sd = random_state_dict(ref.published_decoder_shapes(), seed=2)
    enc = VCT_Encoder(z_index_dim=20).double()
    dec = VCT_Decoder(index_num=256, z_index_dim=256, ce_loss=True).double()
    enc.load_state_dict(enc_sd, strict=True)
    dec.load_state_dict(dec_sd, strict=True)

    x = torch.randn(2, 256, 256, dtype=torch.float64)
    with torch.no_grad():
        z = enc(x)
        logits = dec(z)
    torch.testing.assert_close(z, ref.encoder_forward(enc_sd, x, depth=6), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits, ref.decoder_forward(dec_sd, z, depth=4), rtol=1e-9, atol=1e-9)


def test_state_dict_with_wrong_shape_is_refused():
    shapes = ref.published_encoder_shapes()
    shapes["latents"] = (21, 256)
    with pytest.raises(RuntimeError, match="latents"):
        VCT_Encoder(z_index_dim=20).load_state_dict(random_state_dict(shapes), strict=True)


def test_encoder_ce_loss_keeps_published_fc_layer():
    enc = VCT_Encoder(z_index_dim=4, depth=1, index_num=7, ce_loss=True)
    assert enc.fc_layer.weight.shape == (7, 256)
    assert "fc_layer.weight" not in VCT_Encoder(z_index_dim=4, depth=1).state_dict()


@pytest.mark.parametrize("heads,dim_head,context", [(1, 128, True), (6, 16, False), (3, 8, True)])
def test_sdpa_attention_equals_plain_softmax_reference(heads, dim_head, context):
    torch.manual_seed(0)
    attn = Attention(32, 40 if context else None, heads=heads, dim_head=dim_head)
    x = torch.randn(3, 7, 32)
    ctx = torch.randn(3, 11, 40) if context else None
    out = attn(x, context=ctx)
    src = x if ctx is None else ctx
    q = x @ attn.to_q.weight.t()
    k, v = (src @ attn.to_kv.weight.t()).chunk(2, dim=-1)
    expected = ref.plain_attention(q, k, v, heads) @ attn.to_out.weight.t() + attn.to_out.bias
    assert (out - expected).abs().max().item() < 1e-5


def test_attention_mask_excludes_masked_context_tokens():
    torch.manual_seed(0)
    attn = Attention(16, heads=2, dim_head=8)
    x = torch.randn(2, 5, 16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 3:] = False
    full = attn(x[:, :3], context=x[:, :3])
    masked = attn(x[:, :3], context=x, mask=mask)
    torch.testing.assert_close(masked, full, rtol=1e-5, atol=1e-6)


def test_concepts_do_not_attend_to_each_other():
    torch.manual_seed(0)
    enc = VCT_Encoder(z_index_dim=5, depth=3, dim=32, latent_dim=48, cross_dim_head=16,
                      latent_dim_head=8, latent_heads=2)
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        before = enc(x)
        enc.latents[2] += torch.randn(48)
        after = enc(x)
    untouched = [0, 1, 3, 4]
    torch.testing.assert_close(after[:, untouched], before[:, untouched], rtol=0, atol=0)
    assert (after[:, 2] - before[:, 2]).abs().max() > 1e-3


def test_decoder_logits_shape():
    dec = VCT_Decoder(index_num=13, z_index_dim=9, ce_loss=True, depth=2, dim=32, latent_dim=32,
                      cross_dim_head=16, latent_dim_head=8, latent_heads=2)
    out = dec(torch.randn(4, 6, 32))
    assert out.shape == (4, 9, 13)
    no_ce = VCT_Decoder(z_index_dim=9, depth=1, dim=32, latent_dim=24, latent_heads=2,
                        latent_dim_head=8, cross_dim_head=8)
    assert no_ce(torch.randn(4, 6, 32)).shape == (4, 9, 24)


@pytest.mark.parametrize("num_tokens,dim", [(1, 8), (9, 16), (64, 40), (100, 256)])
def test_encoder_accepts_any_square_token_count_and_dim(num_tokens, dim):
    enc = VCT_Encoder(z_index_dim=3, depth=2, dim=dim, latent_dim=24, cross_dim_head=8,
                      latent_dim_head=8, latent_heads=2)
    assert enc(torch.randn(2, num_tokens, dim)).shape == (2, 3, 24)


def test_fourier_width_follows_arguments():
    enc = VCT_Encoder(z_index_dim=2, depth=2, dim=10, num_freq_bands=4, latent_dim=16,
                      cross_dim_head=8, latent_dim_head=8, latent_heads=1)
    assert enc.cs_layers[0][0].fn.to_kv.weight.shape[1] == 10 + 2 * (2 * 4 + 1)
    assert grid_position_code(16, 10, 4).shape == (16, 18)
    assert enc(torch.randn(1, 16, 10)).shape == (1, 2, 16)


def test_position_code_matches_hand_computed_values():
    code = grid_position_code(4, max_freq=10, num_bands=2)  # 2x2 grid, scales [1, 5]
    # token 1 = row 0 (y = -1), column 1 (x = +1); per axis [sin*2, cos*2, raw]
    y, x = -1.0, 1.0
    expected = [math.sin(y * math.pi), math.sin(5 * y * math.pi), math.cos(y * math.pi),
                math.cos(5 * y * math.pi), y,
                math.sin(x * math.pi), math.sin(5 * x * math.pi), math.cos(x * math.pi),
                math.cos(5 * x * math.pi), x]
    torch.testing.assert_close(code[1], torch.tensor(expected), rtol=0, atol=1e-6)


def test_non_square_token_count_raises_value_error():
    enc = VCT_Encoder(z_index_dim=2, depth=1, dim=8, latent_dim=8, cross_dim_head=4)
    with pytest.raises(ValueError, match="square"):
        enc(torch.randn(1, 10, 8))


def test_wrong_last_dimension_raises_value_error():
    enc = VCT_Encoder(z_index_dim=2, depth=1, dim=8, latent_dim=8, cross_dim_head=4)
    with pytest.raises(ValueError, match="dim=8"):
        enc(torch.randn(1, 16, 9))
    dec = VCT_Decoder(z_index_dim=2, depth=1, dim=8, latent_dim=8, cross_dim_head=4,
                      latent_dim_head=4, latent_heads=1)
    with pytest.raises(ValueError, match="dim=8"):
        dec(torch.randn(1, 3, 7))


def test_weight_tied_layers_share_parameters():
    enc = VCT_Encoder(z_index_dim=2, depth=3, dim=8, latent_dim=8, cross_dim_head=4,
                      latent_dim_head=4, latent_heads=1, weight_tie_layers=True)
    assert enc.layers[0] is enc.layers[1]
    untied = VCT_Encoder(z_index_dim=2, depth=3, dim=8, latent_dim=8, cross_dim_head=4,
                         latent_dim_head=4, latent_heads=1)
    assert n_params(untied) > n_params(enc)


def test_centre_concepts_removes_the_mean_over_concepts_and_nothing_else():
    torch.manual_seed(0)
    kwargs = dict(z_index_dim=4, depth=2, dim=8, latent_dim=8, cross_dim_head=4,
                  latent_dim_head=4, latent_heads=1)
    plain = VCT_Encoder(**kwargs)
    centred = VCT_Encoder(**kwargs, centre_concepts=True)
    centred.load_state_dict(plain.state_dict())  # no parameters of its own
    tokens = torch.randn(3, 16, 8)
    raw, out = plain(tokens), centred(tokens)
    assert raw.mean(dim=1).abs().max() > 1e-2  # the published encoder has a common part
    assert torch.allclose(out.mean(dim=1), torch.zeros(3, 8), atol=1e-6)
    assert torch.allclose(out, raw - raw.mean(dim=1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="centre_concepts"):
        VCT_Encoder(**kwargs, centre_concepts="yes")


def test_gradients_reach_every_parameter():
    enc = VCT_Encoder(z_index_dim=3, depth=2, dim=16, latent_dim=16, cross_dim_head=8,
                      latent_dim_head=8, latent_heads=2)
    dec = VCT_Decoder(index_num=5, z_index_dim=4, ce_loss=True, depth=2, dim=16, latent_dim=16,
                      cross_dim_head=8, latent_dim_head=8, latent_heads=2)
    dec(enc(torch.randn(2, 4, 16))).sum().backward()
    for name, p in list(enc.named_parameters()) + list(dec.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mlp_layers_batched_forward_equals_per_token_mlps():
    torch.manual_seed(0)
    mlp = MLP_layers(z_dim=12, latent_dim=8, num_latents=5)
    assert "nets.4.net.2.weight" in mlp.state_dict()
    x = torch.randn(3, 12)
    expected = torch.stack([net(x) for net in mlp.nets], dim=1)
    torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-6)
    assert mlp(x).shape == (3, 5, 8)
