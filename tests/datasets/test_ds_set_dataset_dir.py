"""set_dataset_dir.py: rewrites only the path bindings, keeps everything else, idempotent; and
$VCT_DATA, the default data root: explicit argument / gin binding > $VCT_DATA > built-in default."""
from pathlib import Path

import gin
import pytest

import set_dataset_dir
from datasets import DatasetError, get_dataset, make_synthetic_shapes3d, resolve_data_dir
from .ds_fixtures import assert_one_line_error, write_shapes3d

CE = ('# Shapes3D, CE tokens\n'
      'get_args.name = "shapes3d"\n'
      'get_args.data_dir = "/path/to/your/datasets"  # set with set_dataset_dir.py\r\n'
      "get_dataset.data_dir = '/old'\n"
      'get_args.batch_size = 32\n')
SHARED = ("get_args.vqvae_path = 'checkpoints/shapes3d/vqvae.pt'\n"
          'get_args.hidden = 256\n'
          '# get_args.data_dir = "/commented/out"\n')
TOY = ("get_args.name = 'synthetic_shapes3d'\n"
       "get_args.data_dir = 'data/toy'\n")


def write_configs(folder: Path):
    folder.mkdir()
    (folder / "shapes3d_ce.gin").write_bytes(CE.encode())
    (folder / "shapes3d_shared.gin").write_bytes(SHARED.encode())
    (folder / "toy_ce.gin").write_bytes(TOY.encode())


def read(path: Path) -> str:
    return path.read_bytes().decode()


def test_rewrites_bindings_keeps_other_lines_and_is_idempotent(tmp_path, capsys):
    configs, data, checkpoints = tmp_path / "configs", tmp_path / "data", tmp_path / "ckpt"
    write_configs(configs)
    data.mkdir()
    checkpoints.mkdir()
    argv = ["--datasets", str(data), "--checkpoints", str(checkpoints), "--configs", str(configs)]
    assert set_dataset_dir.main(argv) == 0
    ce = read(configs / "shapes3d_ce.gin")
    assert ce == CE.replace("/path/to/your/datasets", str(data)).replace("'/old'", f"'{data}'")
    assert read(configs / "shapes3d_shared.gin") == SHARED.replace(
        "checkpoints/shapes3d/vqvae.pt", str(checkpoints / "shapes3d" / "vqvae.pt"))
    assert read(configs / "toy_ce.gin") == TOY  # synthetic data stays out of the user's folder
    out = capsys.readouterr().out
    assert "shapes3d_ce.gin:3: get_args.data_dir: '/path/to/your/datasets' ->" in out
    assert "toy_ce.gin: synthetic data" in out and "3 binding(s) changed" in out
    assert set_dataset_dir.main(argv) == 0
    assert "0 binding(s) changed" in capsys.readouterr().out
    assert read(configs / "shapes3d_ce.gin") == ce


def test_a_checkpoint_file_is_written_as_given(tmp_path):
    configs, checkpoint = tmp_path / "configs", tmp_path / "my_vqvae.pth"
    write_configs(configs)
    checkpoint.write_bytes(b"")
    assert set_dataset_dir.main(["--checkpoints", str(checkpoint), "--configs", str(configs)]) == 0
    assert read(configs / "shapes3d_shared.gin").startswith(f"get_args.vqvae_path = '{checkpoint}'\n")
    assert read(configs / "shapes3d_ce.gin") == CE


def test_refuses_a_path_that_does_not_exist(tmp_path, capsys):
    configs = tmp_path / "configs"
    write_configs(configs)
    assert set_dataset_dir.main(["--datasets", str(tmp_path / "missing"), "--configs", str(configs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--datasets path does not exist" in err and "missing" in err
    assert read(configs / "shapes3d_ce.gin") == CE


def test_vct_data_is_the_data_dir_nobody_gave(tmp_path, monkeypatch):
    _, images = write_shapes3d(tmp_path / "root")
    monkeypatch.setenv("VCT_DATA", str(tmp_path / "root"))
    assert get_dataset("shapes3d").num_observations == len(images)


def test_an_explicit_data_dir_or_gin_binding_wins_over_vct_data(tmp_path, monkeypatch):
    write_shapes3d(tmp_path / "explicit", factor_sizes=(1, 1, 1, 1, 1, 2))
    monkeypatch.setenv("VCT_DATA", str(tmp_path / "absent"))
    assert get_dataset("shapes3d", str(tmp_path / "explicit")).num_observations == 2
    gin.parse_config([f"get_dataset.data_dir = '{tmp_path / 'explicit'}'"])
    assert get_dataset("shapes3d").num_observations == 2


def test_missing_data_dir_names_vct_data(tmp_path, monkeypatch):
    monkeypatch.delenv("VCT_DATA", raising=False)
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes3d")
    assert_one_line_error(error.value, "data_dir", "VCT_DATA")
    monkeypatch.setenv("VCT_DATA", str(tmp_path / "absent"))
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes3d")
    assert_one_line_error(error.value, tmp_path / "absent", "from $VCT_DATA")


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("VCT_DATA", raising=False)
    assert resolve_data_dir(None) is None and resolve_data_dir("data") == "data"
    monkeypatch.setenv("VCT_DATA", str(tmp_path))
    # None and the built-in default / configs' placeholder 'data' count as "not chosen".
    assert resolve_data_dir(None) == resolve_data_dir("data") == str(tmp_path)
    assert resolve_data_dir("/explicit") == "/explicit" and resolve_data_dir("data/toy") == "data/toy"


def test_synthetic_data_ignores_vct_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VCT_DATA", str(tmp_path / "user_datasets"))
    make_synthetic_shapes3d(tmp_path / "toy", size=32, factor_sizes=[1, 1, 1, 1, 2, 2], progress=False)
    assert get_dataset("shapes3d", str(tmp_path / "toy")).num_observations == 4
    assert not (tmp_path / "user_datasets").exists()
    monkeypatch.delenv("VCT_DATA")
    assert get_dataset("shapes3d", str(tmp_path / "toy")).num_observations == 4


def test_training_reads_vct_data_when_the_config_leaves_data_dir_at_its_default(tmp_path, monkeypatch):
    from training.data import build_dataset
    write_shapes3d(tmp_path / "root")
    monkeypatch.setenv("VCT_DATA", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)  # no ./data here: only $VCT_DATA has the files
    assert build_dataset("shapes3d", "data").num_observations == 2 * 3 * 2 * 2 * 2 * 3
    with pytest.raises(DatasetError) as error:
        build_dataset("shapes3d", str(tmp_path / "elsewhere"))  # an explicit folder wins
    assert_one_line_error(error.value, "elsewhere")
