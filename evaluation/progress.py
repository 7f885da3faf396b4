"""Progress bars for evaluation runs."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(iterable, progress: bool = True, **options):
    """``tqdm(iterable)``, shown only when ``progress`` is on and stderr is a terminal.

    Evaluation runs inside the training loop's own bar, so a bar of its own is removed when
    done (``leave=False``); in a redirected log a bar is nothing but carriage returns and
    escape codes, so there it is off.
    """
    return tqdm(iterable, disable=not (progress and _stderr_is_terminal()), leave=False, **options)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)  # stderr may be None or a bare stream
    return bool(isatty and isatty())
