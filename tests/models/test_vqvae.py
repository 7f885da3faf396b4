import pytest
import torch

from models.vqvae import VQ_CVAE, NearestEmbed, nearest_code_indices


def small_vqvae(d=16, k=8, **kw):
    torch.manual_seed(0)
    return VQ_CVAE(d=d, k=k, **kw)


def published_vqvae_shapes(d=256, k=128, c=3):
    """Published VQ_CVAE state_dict (parameters and BN buffers), written out from the published layout."""
    shapes = {}

    def conv(p, cin, cout, ks):
        shapes.update({f"{p}.weight": (cout, cin, ks, ks), f"{p}.bias": (cout,)})

    def convt(p, cin, cout, ks):
        shapes.update({f"{p}.weight": (cin, cout, ks, ks), f"{p}.bias": (cout,)})

    def bn(p, n):
        shapes.update({f"{p}.weight": (n,), f"{p}.bias": (n,), f"{p}.running_mean": (n,),
                       f"{p}.running_var": (n,), f"{p}.num_batches_tracked": ()})

    def resblock(p, with_bn):
        conv(f"{p}.convs.1", d, d, 3)
        if with_bn:
            bn(f"{p}.convs.2", d)
            conv(f"{p}.convs.4", d, d, 1)
        else:
            conv(f"{p}.convs.3", d, d, 1)

    conv("encoder.0", c, d, 4), bn("encoder.1", d), conv("encoder.3", d, d, 4), bn("encoder.4", d)
    resblock("encoder.6", True), bn("encoder.7", d), resblock("encoder.8", True), bn("encoder.9", d)
    resblock("decoder.0", False), bn("decoder.1", d), resblock("decoder.2", False)
    convt("decoder.3", d, d, 4), bn("decoder.4", d), convt("decoder.6", d, c, 4)
    shapes["emb.weight"] = (d, k)
    return shapes


def test_parameter_count_and_published_state_dict_layout():
    model = VQ_CVAE(d=256, k=128)
    assert sum(p.numel() for p in model.parameters()) == 4_782_851
    expected = published_vqvae_shapes()
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == expected
    # A state_dict with exactly the published names loads strictly.
    sd = {k: (torch.randn(s) if s else torch.tensor(3)) for k, s in expected.items()}
    for k in sd:
        if k.endswith("running_var"):
            sd[k] = sd[k].abs() + 0.5
    model.load_state_dict(sd, strict=True)
    torch.testing.assert_close(model.emb.weight.detach(), sd["emb.weight"])


def test_published_initialisation():
    torch.manual_seed(0)
    model = VQ_CVAE(d=64, k=32)
    assert torch.all(model.encoder[-1].weight == 1.0 / 40)
    assert model.encoder[3].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(model.encoder[0].bias == 0)


def test_forward_shapes_and_output_range():
    model = small_vqvae()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    recon, z_e, emb, idx = model(x)
    assert recon.shape == x.shape and z_e.shape == (2, 16, 16, 16)
    assert emb.shape == z_e.shape and idx.shape == (2, 16, 16) and idx.dtype == torch.int64
    assert recon.abs().max() <= 1.0
    tokens, codes = model.tokenize(x)
    assert tokens.shape == (2, 256, 16) and codes.shape == (2, 256)
    assert model.decode_tokens(tokens).shape == x.shape


def test_one_channel_model_for_dsprites():
    model = VQ_CVAE(d=8, k=4, num_channels=1)
    assert model(torch.rand(2, 1, 64, 64))[0].shape == (2, 1, 64, 64)


def test_nearest_code_equals_brute_force_argmin():
    g = torch.Generator().manual_seed(0)
    z_e = torch.randn(4, 32, 6, 6, generator=g, dtype=torch.float64)
    codebook = torch.randn(32, 50, generator=g, dtype=torch.float64)
    emb = NearestEmbed(50, 32).double()
    with torch.no_grad():
        emb.weight.copy_(codebook)
    # brute force: the full (B, d, H, W, k) difference tensor
    diff = z_e.unsqueeze(-1) - codebook.view(1, 32, 1, 1, 50)
    expected = diff.pow(2).sum(dim=1).argmin(dim=-1)
    codes, idx = emb(z_e)
    assert torch.equal(idx, expected)
    torch.testing.assert_close(codes, codebook.t()[expected].permute(0, 3, 1, 2))


def test_nearest_code_float32_picks_a_minimal_distance():
    g = torch.Generator().manual_seed(1)
    vecs = torch.randn(500, 64, generator=g)
    codebook = torch.randn(64, 128, generator=g)
    idx = nearest_code_indices(vecs, codebook)
    dist = torch.cdist(vecs.double(), codebook.t().double())
    chosen = dist.gather(1, idx[:, None]).squeeze(1)
    torch.testing.assert_close(chosen, dist.min(dim=1).values, rtol=1e-6, atol=1e-6)


def test_nearest_code_search_does_not_materialise_the_difference_tensor():
    # (n, d, k) float32 differences would be 20000*256*2048*4 B = 42 GB, past this machine's RAM.
    vecs = torch.randn(20000, 256)
    codebook = torch.randn(256, 2048)
    idx = nearest_code_indices(vecs, codebook)
    assert idx.shape == (20000,)
    sample = vecs[:50]
    expected = torch.cdist(sample.double(), codebook.t().double()).argmin(dim=1)
    assert (idx[:50] == expected).float().mean() >= 0.98  # float32 near-ties aside


def test_straight_through_gradient_reaches_encoder_not_codebook():
    model = small_vqvae()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes, _ = model.quantize(model.encode(x))
    model.decode(codes).pow(2).mean().backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.emb.weight.grad is None


def test_straight_through_value_is_exactly_the_code():
    model = small_vqvae()
    z_e = torch.randn(2, 16, 4, 4, requires_grad=True)
    out, idx = model.quantize(z_e)
    assert torch.equal(out.detach(), model.emb.embed(idx).detach())
    out.sum().backward()
    torch.testing.assert_close(z_e.grad, torch.ones_like(z_e))


def _loss_term_grads(model, term):
    model.zero_grad(set_to_none=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, z_e, emb, idx = model(x)
    model.loss_terms(x, recon, z_e, emb)[term].backward()
    enc = model.encoder[0].weight.grad
    book = model.emb.weight.grad
    return (0.0 if enc is None else enc.abs().sum().item(),
            0.0 if book is None else book.abs().sum().item())


def test_codebook_gets_gradient_from_vq_term_only():
    model = small_vqvae()
    enc, book = _loss_term_grads(model, "vq")
    assert book > 0 and enc == 0
    enc, book = _loss_term_grads(model, "commit")
    assert book == 0 and enc > 0
    enc, book = _loss_term_grads(model, "mse")
    assert book == 0 and enc > 0


def test_loss_function_hand_computed():
    model = small_vqvae(d=2, k=3)
    x = torch.zeros(1, 3, 4, 4)
    recon = torch.full_like(x, 0.5)
    z_e = torch.zeros(1, 2, 1, 2)
    emb = torch.tensor([[[[1.0, 0.0]], [[2.0, 3.0]]]])  # position 0: e=(1,2); position 1: e=(0,3)
    loss = model.loss_function(x, recon, z_e, emb)
    # mse 0.25; vq = commit = mean(1+4, 0+9) = 7
    assert loss.item() == pytest.approx(0.25 + 1.0 * 7 + 0.5 * 7)


def test_codebook_gradient_is_averaged_over_positions_choosing_a_code():
    emb = NearestEmbed(3, 2)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[0.0, 10.0, -10.0], [0.0, 10.0, -10.0]]))
    # three positions pick code 0, one picks code 1, none picks code 2
    z_e = torch.tensor([[[[0.1, 0.2, -0.1, 9.0]], [[0.0, 0.1, 0.2, 9.5]]]])
    codes, idx = emb(z_e)
    assert idx.tolist() == [[[0, 0, 0, 1]]]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    (codes * weights).sum().backward()
    expected = torch.tensor([[2.0, 4.0, 0.0], [2.0, 4.0, 0.0]])  # mean(1,2,3)=2 ; 4 ; 0
    torch.testing.assert_close(emb.weight.grad, expected)
