"""report.html (training/report.py) and visualize.py: the page parses, every picture it names
exists, its metrics are the metrics JSON's, its labels follow the saved matrices; a saved tiny
run gets its traversals and attention maps offline; a real browser renders it."""
import copy
import functools
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import visualize
from evaluation.metrics import dci, mig
from evaluation.runner import write_results_json
from tests.training.conftest import TINY_SCENES, TINY_SHARED, build_setting, run_with_output
from tests.training.test_figures import NAMES, PERMUTATION, permuted_codes
from training import figures as fig
from training.report import Picture, write_report
from training.runner import vct_main
from training.visualize import reconstruction_grid, swap_grid


class PageParser(HTMLParser):
    """The images, the metrics rows and the matching rows of a report, and its tags."""

    def __init__(self):
        super().__init__()
        self.images, self.metrics, self.matching, self.tags = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr" and "data-metric" in attrs:
            self.metrics.append((attrs["data-metric"], attrs["data-score"], json.loads(attrs["data-value"])))
        if tag == "tr" and "data-concept" in attrs:
            self.matching.append((int(attrs["data-concept"]), attrs["data-factor"]))


def parse(path):
    parser = PageParser()
    parser.feed(Path(path).read_text())
    parser.close()
    return parser


@functools.lru_cache(maxsize=None)
def permuted_results():
    """Metrics results of a 6-concept model whose concept j is factor PERMUTATION[j] (concepts
    4 and 5 noise), with the real DCI / MIG matrices (computed once: the boosting takes a while)."""
    codes, factors = permuted_codes(300, 0)
    test_codes, test_factors = permuted_codes(150, 1)
    return {"mig": {**mig._compute_mig(codes, factors), "factor_names": NAMES},
            "dci": {**dci._compute_dci(codes, factors, test_codes, test_factors, n_jobs=1), "factor_names": NAMES},
            "beta_vae": {"train_accuracy": 0.875, "eval_accuracy": 0.8125}}


def fake_run(run_dir):
    """A run directory as the runner leaves it, with the metrics of ``permuted_results``."""
    results = copy.deepcopy(permuted_results())
    write_results_json(str(run_dir / "metrics" / "metrics_00000020.json"), results, {"step": 20})
    (run_dir / "run_args.json").write_text(json.dumps({"setting": "vq", "seed": 0, "precision": "fp32",
                                                       "config": "toy_ce.gin"}))
    (run_dir / "config.gin").write_text("get_args.concepts_num = 6\nget_args.name = 'synthetic_shapes3d'\n"
                                        "get_args.lr = 0.0003\n")
    rows = [{"step": s, "split": "train", "time": s, "loss": 5.0 / s, "im_loss": 4.0 / s, "dis_loss": 1.0 / s,
             "swaps_kept": 8.0} for s in range(1, 21)]
    rows.append({"step": 20, "split": "eval", "time": 21, "mig/discrete_mig": results["mig"]["discrete_mig"]})
    (run_dir / "scalars.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    tokens = lambda x: x.reshape(len(x), 6, 32)  # noqa: E731  (6 concepts of 32 pixels)
    grid = swap_grid(tokens, lambda t: t.reshape(len(t), 3, 8, 8), images, images.roll(1, 0))
    (run_dir / "images").mkdir()
    torchvision.utils.save_image(grid, str(run_dir / "images" / "swap_00000020.png"))
    torchvision.utils.save_image(reconstruction_grid(images, images), str(run_dir / "images" / "recon_00000020.png"))
    return results


def check_page(path):
    """Parse the page; every image it references exists beside it, none is remote."""
    page = parse(path)
    assert "script" not in page.tags and page.images
    for src in page.images:
        assert "://" not in src and (Path(path).parent / src).is_file(), src
    return page


def test_report_parses_names_existing_images_and_shows_the_metrics_json(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    results = fake_run(run_dir)
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = check_page(path)
    saved = json.loads((run_dir / "metrics" / "metrics_00000020.json").read_text())["results"]
    expected = [(m, s, v) for m, scores in saved.items() for s, v in scores.items() if isinstance(v, (int, float))]
    assert page.metrics == expected and ("dci", "disentanglement", results["dci"]["disentanglement"]) in expected
    assert {Path(src).name for src in page.images} >= {"curves.png", "heatmap.png", "swaps.png", "recon_00000020.png"}
    # the matching table and the swap grid's labels follow the saved matrices
    assert sorted(page.matching)[:4] == [(j, NAMES[PERMUTATION[j]]) for j in range(4)]
    assert {factor for _, factor in sorted(page.matching)[4:]} == {""}


def test_live_pictures_are_kept_when_the_report_is_rewritten_from_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fake_run(run_dir)
    extra = fig.save_png(fig.training_curves({}), tmp_path / "gan_traversals.png")
    shutil.copyfile(extra, run_dir / "images" / "traversal_00000020.png")  # a GAN setting's grid
    picture = fig.traversal_figure(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((2, 3, 4, 4, 3)),
                                   np.zeros((2, 3)), ["a", "b"])
    write_report(run_dir, {"traversals": Picture(picture, "moved"), "gan_traversals": extra}, step=20)
    write_report(run_dir)  # e.g. after an evaluate.py: no live model this time
    page = check_page(run_dir / "report.html")
    assert {"report/traversals.png", "report/gan_traversals.png", "report/traversal_00000020.png"} <= set(page.images)
    assert "moved (step 20)" in (run_dir / "report.html").read_text()


def test_report_into_another_folder_is_whole(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "elsewhere"
    run_dir.mkdir()
    fake_run(run_dir)
    path = write_report(run_dir, out_dir=out)
    assert path == out / "report.html" and not (run_dir / "report.html").exists()
    check_page(path)


def test_a_run_without_metrics_or_images_still_gets_a_page(tmp_path):
    (tmp_path / "run").mkdir()
    page = parse(write_report(tmp_path / "run"))
    assert page.metrics == [] and page.images == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step VQ-VAE-setting run of the tiny world, evaluated on MIG only (the world has a
    factor of one value, which DCI's classifiers refuse), over an untrained VQ-VAE: the
    pictures need a tokenizer, not a good one, and training one would take most of the time."""
    from models.vqvae import VQ_CVAE
    base = tmp_path_factory.mktemp("report_world")
    config, vqvae = base / "tiny_ce.gin", base / "vqvae.pt"
    config.write_text(TINY_SHARED.format(data=base / "data", vqvae=vqvae))
    torch.manual_seed(0)
    torch.save(VQ_CVAE(d=16, k=8).state_dict(), vqvae)
    out = base / "run"
    vct_main(["--config", str(config), "--max_steps", "3", "--out", str(out), "--device", "cpu",
              "--gin_bindings", "get_args.evaluate_at_end = True", "--gin_bindings", "evaluation.metrics = ['mig']",
              "--gin_bindings", "mig.num_train = 64"])
    return out


def test_visualize_writes_traversals_and_attention_of_a_saved_run(tiny_run, tmp_path, capsys):
    code, printed, err = run_with_output(visualize.main, ["--checkpoint", tiny_run, "--out", tmp_path / "v",
                                                          "--device", "cpu"], capsys)
    assert code == 0, err[-5:]
    assert f"report: {tmp_path / 'v' / 'report.html'}" in printed
    page = check_page(tmp_path / "v" / "report.html")
    assert {"report/traversals.png", "report/attention.png", "report/swaps.png", "report/heatmap.png"} <= set(page.images)
    saved = json.loads((tiny_run / "metrics" / "metrics_00000003.json").read_text())["results"]
    assert page.metrics == [("mig", "discrete_mig", saved["mig"]["discrete_mig"])]
    assert len(page.matching) == 4  # the concepts, matched on MIG's matrix (its constant factor is null)
    manifest = json.loads((tmp_path / "v" / "report" / "figures.json").read_text())
    # the traversals follow the PCA the evaluation fitted to these weights
    assert manifest["traversals"]["step"] == 3 and "the evaluation's PCA" in manifest["traversals"]["caption"]


def test_visualize_of_a_file_that_is_no_vct_checkpoint_stops_with_one_line(tiny_run, tmp_path, capsys):
    code, _, err = run_with_output(visualize.main, ["--checkpoint", tiny_run.parent / "vqvae.pt", "--out", tmp_path],
                                   capsys)
    assert code == 2 and len(err) == 1 and "vqvae.pt" in err[0], err


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no chromium on PATH (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fake_run(run_dir)
    path = write_report(run_dir)
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,2400", path.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as image:
        picture = np.asarray(image.convert("RGB"))
    assert picture.shape[:2] == (2400, 1280)
    assert picture.std() > 10  # not a blank page: text, tables and pictures were drawn


def test_mask_setting_pictures_show_the_decomposition_against_the_truth(tmp_path):
    from models.vqvae import VQ_CVAE
    from training.setting import get_setting
    from training.visualize_run import concept_figures, scene_figures
    config, vqvae = tmp_path / "scenes_ce.gin", tmp_path / "vqvae.pt"
    config.write_text(TINY_SCENES.format(data=tmp_path / "data", vqvae=vqvae))
    torch.manual_seed(0)
    torch.save(VQ_CVAE(d=16, k=8).state_dict(), vqvae)
    setting = get_setting("mask")
    objective, ctx = build_setting(setting, config, run_dir=tmp_path / "run")
    objective.eval()
    pictures = {**concept_figures(ctx, objective), **scene_figures(ctx, objective, setting.scenes, count=3)}
    assert set(pictures) == {"traversals", "attention", "decomposition"}
    columns = [t.get_text() for t in pictures["decomposition"].image.axes[0].get_xticklabels()]
    assert columns == ["image", "recon", *[f"c{j}" for j in range(4)], "concepts", "truth", "overlay"]
    page = check_page(write_report(tmp_path / "run", pictures))
    assert "report/decomposition.png" in page.images
