"""Suite-wide isolation: gin bindings are process-global, so a test that loads a config
(training, evaluate) must not change the defaults the next test's modules are built with."""
import gin
import pytest


@pytest.fixture(autouse=True)
def _clear_gin_bindings():
    yield
    gin.clear_config()


@pytest.fixture
def one_cpu_thread():
    """Small-tensor tests: with several threads on a busy machine, the threads' spin-waits made
    them ten times slower. One thread, restored afterwards."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
