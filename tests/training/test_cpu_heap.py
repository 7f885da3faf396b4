"""limit_cpu_heap_growth's policy against a stand-in for glibc's malloc controls."""
import pytest

from training import engine
from training.errors import UserError


class FakeLibc:
    def __init__(self, free_mb):
        self.free = int(free_mb * 2**20)
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("trim",))
        return 1

    def mallinfo2(self):
        return engine._MallInfo2(fordblks=self.free, fsmblks=0)


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc(free_mb=10)
    monkeypatch.setattr(engine, "_glibc", lambda: fake)
    return fake


def test_auto_waits_for_a_stage_that_leaves_much_free(libc):
    heap = engine.limit_cpu_heap_growth(enabled="auto", mmap_threshold_mb=16, auto_from_free_mb=256)
    heap.between_stages()
    assert libc.calls == []  # a small model's stage: glibc left alone
    libc.free = 300 * 2**20
    heap.between_stages()
    assert libc.calls == [("mallopt", -3, 16 * 2**20), ("trim",)]
    libc.free = 10 * 2**20
    heap.between_stages()  # threshold stays fixed; nothing worth trimming
    libc.free = 400 * 2**20
    heap.between_stages()
    assert libc.calls == [("mallopt", -3, 16 * 2**20), ("trim",), ("trim",)]


def test_enabled_fixes_the_threshold_at_once_and_trims_every_stage(libc):
    heap = engine.limit_cpu_heap_growth(enabled=True, mmap_threshold_mb=1)
    assert libc.calls == [("mallopt", -3, 2**20)]
    heap.between_stages()
    heap.between_stages()
    assert libc.calls[1:] == [("trim",), ("trim",)]


def test_disabled_never_touches_malloc(libc):
    libc.free = 10 * 2**30
    engine.limit_cpu_heap_growth(enabled=False).between_stages()
    assert libc.calls == []


def test_keep_never_maps_nor_trims(libc):
    heap = engine.limit_cpu_heap_growth(enabled="keep")
    assert libc.calls == [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)]
    libc.free = 10 * 2**30
    heap.between_stages()
    assert len(libc.calls) == 2


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(engine, "_glibc", lambda: None)
    for enabled in (True, "auto", "keep"):
        engine.limit_cpu_heap_growth(enabled=enabled).between_stages()  # no error, no effect


def test_a_bad_setting_is_one_line_error():
    with pytest.raises(UserError, match="limit_cpu_heap_growth.enabled = 'yes'"):
        engine.limit_cpu_heap_growth(enabled="yes")


def test_real_glibc_reports_free_heap_bytes():
    """On this Linux the stand-in's interface is glibc's own."""
    if engine._glibc() is None or not hasattr(engine._glibc(), "mallinfo2"):
        pytest.skip("not glibc >= 2.33")
    heap = engine.CPUHeap(False, 16, 256)
    assert heap.free_bytes() >= 0
    assert engine._glibc().malloc_trim(0) in (0, 1)


def test_the_step_policy_is_the_gin_one_on_cpu_and_inert_elsewhere(libc):
    import torch
    libc.free = 10 * 2**30
    engine.cpu_heap_policy(torch.device("meta")).between_stages()
    assert libc.calls == []
    engine.cpu_heap_policy(torch.device("cpu")).between_stages()
    assert libc.calls == [("mallopt", -3, 8 * 2**20), ("trim",)]
