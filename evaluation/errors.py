"""Exceptions raised by the evaluation package.

All are ``ValueError`` subclasses with a one-line message that says what was
wrong and what was expected, so a caller can catch them together with
``except ValueError`` or precisely with ``except EvaluationError``.
"""


class EvaluationError(ValueError):
    """Base class of every error the evaluation package raises on bad input."""

    def __init__(self, *args):
        super().__init__(*args)
        # gin re-raises errors from a configurable as a proxy whose message has
        # the call trace appended; ``original`` (looked up through the proxy)
        # lets callers re-raise the one-line error itself.
        self.original = self


class RepresentationError(EvaluationError):
    """A representation function returned something a metric cannot use.

    Raised for a wrong number of rows, a wrong number of dimensions, a code
    size that changes between calls, or non-finite values (NaN / inf).
    """


class GroundTruthDataError(EvaluationError):
    """The dataset has no ground-truth factors (e.g. a multi-object scene set)."""
