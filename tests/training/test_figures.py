"""The diagnostic pictures (training/figures.py) and the live-model parts they are made from
(training/visualize_run.py, VCT_Encoder.cross_attention_maps): each checked on inputs whose
answer is known."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.metrics import dci, mig
from evaluation.representation import fit_pca_per_concept
from models.visual_concept_tokenizor import Attention, VCT_Encoder
from training import figures as fig
from training import visualize_run
from training.visualize import swap_grid

FACTOR_SIZES = (5, 4, 6, 3)
NAMES = ["floor_hue", "wall_hue", "scale", "shape"]
PERMUTATION = [2, 0, 3, 1]  # concept j is factor PERMUTATION[j]; concepts 4 and 5 are noise


def permuted_codes(num_points, seed):
    """(codes (6, N), factors (4, N)) in disentanglement_lib's orientation: codes 0..3 are the
    factors PERMUTATION[j] with a little noise, codes 4 and 5 pure noise."""
    random = np.random.RandomState(seed)
    factors = np.stack([random.randint(size, size=num_points) for size in FACTOR_SIZES])
    codes = np.vstack([factors[PERMUTATION] + 0.05 * random.randn(4, num_points),
                       random.randn(2, num_points)])
    return codes, factors


@pytest.fixture(scope="module")
def metric_matrices():
    """The DCI importance and MIG normalised-MI matrices of the permuted representation."""
    codes, factors = permuted_codes(400, 0)
    test_codes, test_factors = permuted_codes(200, 1)
    importance = np.array(dci._compute_dci(codes, factors, test_codes, test_factors, n_jobs=1)["importance_matrix"])
    information = np.array(mig._compute_mig(codes, factors)["mutual_information_matrix"])
    return {"dci": importance, "mig": information}


@pytest.mark.parametrize("metric", ["dci", "mig"])
def test_matching_recovers_the_permutation_and_leaves_noise_codes_empty(metric_matrices, metric):
    matrix = metric_matrices[metric]
    assert matrix.shape == (6, 4)
    matches = fig.match_concepts(matrix)
    assert [m.factor for m in matches] == PERMUTATION + [None, None]
    assert not any(m.mixed for m in matches)


def test_heatmap_puts_the_mass_on_the_permutation_in_factor_order(metric_matrices):
    matches = fig.match_concepts(metric_matrices["dci"])
    order = fig.concept_order(matches)
    assert order[:4] == [int(np.argsort(PERMUTATION)[f]) for f in range(4)] and set(order[4:]) == {4, 5}
    figure = fig.factor_heatmap({"DCI": metric_matrices["dci"], "MIG": metric_matrices["mig"]}, NAMES, matches)
    for axes in figure.axes[::2]:  # each heatmap is followed by its colour bar
        shown = np.asarray(axes.images[0].get_array())                # (factors, ordered concepts)
        assert shown.shape == (4, 6)
        assert list(shown[:, :4].argmax(axis=0)) == [0, 1, 2, 3]       # a staircase: column k is factor k
        assert [t.get_text() for t in axes.get_yticklabels()] == NAMES
        assert [t.get_text().split("\n")[0] for t in axes.get_xticklabels()] == [f"c{j}" for j in order]


def test_swap_grid_cells_are_recovered_and_labelled_by_the_matching(metric_matrices):
    torch.manual_seed(0)
    sources = torch.rand(3, 3, 8, 8) * 2 - 1
    # Concept tokens = the four 4x4 quadrants' pixels; decoding puts them back.
    def encode(images):
        return images.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(len(images), 4, 48)

    def decode(tokens):
        quadrants = tokens.reshape(len(tokens), 2, 2, 3, 4, 4).permute(0, 3, 1, 4, 2, 5)
        return quadrants.reshape(len(tokens), 3, 8, 8)

    assert torch.equal(decode(encode(sources)), sources)
    grid = swap_grid(encode, decode, sources, sources.roll(1, dims=0)).permute(1, 2, 0).numpy()
    cells = fig.split_grid(grid, 4 + 2)
    assert cells.shape == (3, 6, 8, 8, 3)
    np.testing.assert_allclose(cells[:, 0], ((sources + 1) / 2).permute(0, 2, 3, 1).numpy(), atol=1e-6)

    matches = fig.match_concepts(metric_matrices["dci"])[:4]
    labels = fig.concept_labels(4, matches, NAMES)
    assert labels == [f"c{j} → {NAMES[PERMUTATION[j]]}" for j in range(4)]
    figure = fig.labelled_swap_grid(cells, labels)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["source", "target", *labels]
    with pytest.raises(ValueError, match="4 concepts"):
        fig.labelled_swap_grid(cells, labels[:3])


def test_empty_and_mixed_concepts_are_labelled_so():
    matrix = np.array([[0.9, 0.0, 0.0], [0.0, 0.01, 0.0], [0.4, 0.35, 0.3]])
    matches = fig.match_concepts(matrix)
    assert fig.concept_labels(3, matches, ["a", "b", "c"]) == ["c0 → a", "c1 → (empty)", "c2 → a (mixed)"]
    assert fig.concept_order(matches) == [0, 2, 1]


class InverseCoder:
    """Images (B, 3, 2, 2) <-> 3 concept tokens of width 4: decoding re-encodes exactly."""

    def encode_images(self, images):
        return images.reshape(len(images), 3, 4)

    def decode_concepts(self, tokens):
        return tokens.reshape(len(tokens), 3, 2, 2)


def test_a_traversal_changes_only_its_concept_code_and_re_encodes_to_it():
    torch.manual_seed(0)
    coder = InverseCoder()
    dataset = 0.1 * torch.randn(200, 3, 2, 2)
    projector = fit_pca_per_concept(coder.encode_images(dataset).numpy())
    values = visualize_run.traversal_values(projector.transform(coder.encode_images(dataset).numpy()), steps=5)
    source = coder.encode_images(dataset[:1])[0]
    sets = visualize_run.traverse_tokens(source, projector.mean_, projector.components_, values)
    assert sets.shape == (3, 5, 3, 4)
    # re-encode the decoded traversal images and compare their codes with the source's
    images = torch.from_numpy(visualize_run.decode_sets(coder, sets)).permute(0, 1, 4, 2, 3) * 2 - 1
    codes = projector.transform(coder.encode_images(images.reshape(15, 3, 2, 2)).numpy()).reshape(3, 5, 3)
    source_codes = projector.transform(source[None].numpy())[0]
    for concept in range(3):
        others = [c for c in range(3) if c != concept]
        np.testing.assert_allclose(codes[concept][:, others], np.broadcast_to(source_codes[others], (5, 2)), atol=1e-6)
        np.testing.assert_allclose(codes[concept][:, concept], values[concept], atol=1e-5)
        assert torch.equal(sets[concept][:, others], source[others].expand(5, 2, 4))


def test_traversal_figure_has_a_row_per_concept():
    images = np.random.RandomState(0).rand(3, 5, 4, 4, 3)
    figure = fig.traversal_figure(images[0, 0], images[0, 1], images, np.tile(np.linspace(-1, 1, 5), (3, 1)),
                                  ["a", "b", "c"])
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert len(labels) == 3 and labels[0].startswith("a  [-1")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["source", "recon", "low", "", "", "", "high"]


def test_explicit_attention_weights_are_the_ones_fused_attention_applies():
    torch.manual_seed(0)
    attention = Attention(16, 24, heads=2, dim_head=8)
    x, context = torch.randn(2, 5, 16), torch.randn(2, 9, 24)
    weights = attention.attention_weights(x, context)
    v = attention.to_kv(context).chunk(2, dim=-1)[1].reshape(2, 9, 2, 8).transpose(1, 2)
    explicit = attention.to_out((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(explicit, attention(x, context), rtol=1e-5, atol=1e-6)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, :3] = False
    assert attention.attention_weights(x, context, mask)[..., :3].abs().max() == 0


@pytest.mark.parametrize("depth", [1, 3])
def test_encoder_attention_maps_are_distributions_over_image_positions(depth):
    torch.manual_seed(0)
    encoder = VCT_Encoder(z_index_dim=5, dim=16, depth=depth, latent_dim=16, cross_heads=2, cross_dim_head=8,
                          latent_heads=2, latent_dim_head=8)
    tokens = torch.randn(2, 16, 16)
    weights = encoder.cross_attention_maps(tokens)
    assert weights.shape == (2, 5, 16) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    maps = fig.upsample_maps(weights[0].reshape(5, 4, 4).detach().numpy(), (16, 16))
    assert maps.shape == (5, 16, 16) and (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-10)


def test_attention_figure_and_mask_decomposition_render(tmp_path):
    random = np.random.RandomState(0)
    images = random.rand(2, 8, 8, 3)
    maps = np.stack([fig.upsample_maps(random.rand(3, 2, 2), (8, 8)) for _ in range(2)])
    figure = fig.attention_figure(images, maps, ["c0 → a", "c1", "c2"])
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["image", "c0 → a", "c1", "c2"]
    masks = torch.from_numpy(random.rand(2, 3, 8, 8)).softmax(dim=1).numpy()
    truth = np.zeros((2, 4, 8, 8), dtype=bool)
    truth[:, 0], truth[:, 1, :4, :4], truth[:, 0, :4, :4] = True, True, False
    figure = fig.mask_decomposition_figure(images, images, random.rand(2, 3, 8, 8, 3), masks, truth)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()][-3:] == ["concepts", "truth", "overlay"]
    assert fig.save_png(figure, tmp_path / "masks.png").stat().st_size > 1000
    segmentation = fig.segmentation_image(truth[0], np.eye(3)[[0, 1, 2, 0]], background=[0.5, 0.5, 0.5])
    assert (segmentation[:4, :4] == [0, 1, 0]).all() and (segmentation[4:, 4:] == 0.5).all()


def test_training_curves_have_a_panel_per_kind_of_scalar():
    series = {"train": {"loss": ([1, 2], [3.0, 2.0]), "dis_loss": ([1, 2], [1.0, 0.5]),
                        "swaps_kept": ([1, 2], [8, 8]), "swap_accuracy": ([1, 2], [0.1, 0.4]),
                        "lr": ([1, 2], [1e-3, 1e-3])},
              "eval": {"mig/discrete_mig": ([2], [0.1])}}
    figure = fig.training_curves(series)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0] == "training losses" and titles[1].startswith("swap accuracy")
    assert titles[2:] == ["concept swaps kept", "evaluation"]
    assert [line.get_label() for line in figure.axes[1].get_lines()] == ["swap_accuracy"]
    assert sorted(line.get_label() for line in figure.axes[0].get_lines()) == ["dis_loss", "loss"]
    assert figure.axes[0].get_yscale() == "log"


def test_attention_maps_of_a_setting_objective_follow_its_encoder():
    class Tokenizer:
        def tokenize(self, images, indices=None):
            return F.avg_pool2d(images, 2).flatten(2).transpose(1, 2).repeat(1, 1, 4), None

    class Objective:
        tokenizer = Tokenizer()
        encoder = VCT_Encoder(z_index_dim=3, dim=12, depth=2, latent_dim=8, cross_dim_head=4, latent_heads=2,
                              latent_dim_head=4)

    maps = visualize_run.attention_maps(Objective(), torch.rand(2, 3, 8, 8))
    assert maps.shape == (2, 3, 8, 8) and (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, rtol=1e-6)
