"""Suite-wide isolation: gin bindings are process-global, so a test that loads a config
(training, evaluate) must not change the defaults the next test's modules are built with."""
import gin
import pytest


@pytest.fixture(autouse=True)
def _clear_gin_bindings():
    yield
    gin.clear_config()
