"""CLIPImageTokenizer with random ViT-B-32 weights (no download): shapes, preprocessing, the
frozen tower, fp32 features under bf16 autocast, and the weights hash."""
import pytest
import torch

from models.clip_tokenizer import CLIP_MEAN, CLIP_STD, CLIPImageTokenizer, clip_image_tower, state_sha256


@pytest.fixture(scope="module")
def tower():
    return clip_image_tower(seed=0)


@pytest.fixture
def clip(tower):
    torch.manual_seed(0)
    return CLIPImageTokenizer(tower)


def test_published_shapes_36_tokens_of_256_from_a_512_feature(clip):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert clip.image_size == 224 and clip.feature_dim == 512
    assert clip.features(images).shape == (2, 512)
    assert clip(images).shape == (2, 36, 256)
    # one MLP per token, published layout: nets.{i}.net.{0,2}, 512 -> 256 -> 256
    mlp = clip.mlp.state_dict()
    assert mlp["nets.35.net.0.weight"].shape == (256, 512) and mlp["nets.35.net.2.weight"].shape == (256, 256)


def test_preprocessing_is_clip_normalised_224px_bicubic(clip):
    grey = torch.zeros(1, 3, 64, 64)  # 0 in [-1, 1] is 0.5
    x = clip.preprocess(grey)
    assert x.shape == (1, 3, 224, 224)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(x[0, :, 100, 100], expected)
    # one channel is repeated; a non-square image is resized on its short side and centre-cropped
    assert clip.preprocess(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 224, 224)
    assert clip.preprocess(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 224, 224)


def test_tower_is_frozen_in_eval_mode_and_only_the_mlp_gets_gradient(clip):
    clip.train()
    assert not clip.tower.training and clip.mlp.training
    assert not any(p.requires_grad for p in clip.tower.parameters())
    clip(torch.rand(2, 3, 32, 32) * 2 - 1).square().sum().backward()
    assert all(p.grad is None for p in clip.tower.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in clip.mlp.parameters())


def test_features_are_float32_and_the_same_under_bf16_autocast(clip):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = clip.features(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = clip.features(images)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, rtol=0, atol=0)


def test_random_weights_are_seeded_and_hashed(tower, clip):
    state = torch.get_rng_state()
    again = clip_image_tower(seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert state_sha256(again) == clip.weights_sha256
    other = clip_image_tower(seed=1)
    assert state_sha256(other) != clip.weights_sha256
    assert CLIPImageTokenizer(other).features_id != clip.features_id
    # the activation is part of what the features depend on
    gelu = clip_image_tower(seed=0, quick_gelu=False)
    assert CLIPImageTokenizer(gelu).features_id != clip.features_id


def test_images_encoded_counts_images_run_through_the_tower(clip):
    before = clip.images_encoded
    clip.features(torch.zeros(3, 3, 32, 32))
    assert clip.images_encoded == before + 3
