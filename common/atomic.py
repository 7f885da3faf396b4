"""Atomic file writes: a reader (or a resume after a crash) sees the old file or the new one,
never a half-written one."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="w", fsync=False):
    """``with atomic_write(path, "wb") as f: ...`` writes a temporary file beside ``path`` and
    renames it over ``path`` when the block ends without an error (else it is deleted).
    The parent folder is created. ``fsync`` also flushes the data to disk before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other files of a run are 0644
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_write(path, "w") as file:
        file.write(text)
