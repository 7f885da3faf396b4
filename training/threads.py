"""The CPU thread policy of a training process, applied before torch is imported.

OpenMP's default lets a waiting thread spin for a long time at every barrier. Alone on the
machine that costs nothing; beside another CPU-bound process the spinning threads take the
cores the working ones need, and the step slows far below a fair share. A short spin before
sleeping (GOMP_SPINCOUNT) keeps nearly all of the speed alone and degrades to a fair share
under load (benchmarks/bench_contention.py; figures in benchmarks/RESULTS.md). The processes
of a torchrun job split the cores between them. A user's own OMP_NUM_THREADS, OMP_WAIT_POLICY
or GOMP_SPINCOUNT, or ``--cpu_threads``, win. The thread count is fixed for the whole run: the
same seed on CPU still gives the same numbers.
"""
import os
import sys

SPIN_COUNT = "3000"  # spins before a waiting OpenMP thread sleeps (libgomp's default: 300000)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads(local_world_size=None):
    """Intra-op threads per process: the cores this process may use, split between the
    processes of a torchrun job on this machine."""
    local = local_world_size or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, available_cores() // max(local, 1))


def apply_thread_policy(num_threads=None):
    """Set the OpenMP environment for torch, which reads it when it is first imported (if
    torch is imported already, only the thread count changes). Without ``num_threads`` or
    OMP_NUM_THREADS a single process keeps torch's own count (one thread per physical core)
    and the processes of a torchrun job split the cores. Returns the count set, or None."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if num_threads is None and "OMP_NUM_THREADS" not in os.environ and local > 1:
        num_threads = default_threads(local)
    if num_threads is None:
        return None
    os.environ["OMP_NUM_THREADS"] = str(num_threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(num_threads)
    return num_threads
