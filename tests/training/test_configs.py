"""Every config the project ships parses (its includes, imports and configurables exist), and
an import that does not resolve is one clear line, not a traceback."""
from pathlib import Path

import pytest

from training.cli import load_gin
from training.config import RunConfig
from training.errors import UserError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.gin"))


def test_the_configs_are_found():
    assert {"toy_ce.gin", "toy_scenes_ce.gin", "shapes3d_ce.gin"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_parses_and_binds_valid_run_settings(config):
    load_gin([config])
    RunConfig()  # every get_args value it binds passes the checks


def test_an_import_of_a_missing_module_is_one_line(tmp_path):
    config = tmp_path / "stale_ce.gin"
    config.write_text("import training.no_such_module\nget_args.batch_size = 4\n")
    with pytest.raises(UserError, match="bad gin configuration: .*no_such_module"):
        load_gin([config])
