"""The errors a user can fix, and how they are shown: one line, exit status 2."""
class UserError(Exception):
    """A problem the user can fix (bad path, bad binding, missing checkpoint): reported as one
    line on stderr with a non-zero exit, never as a traceback."""


def user_errors():
    """What run_main reports as one line; everything else is a bug and keeps its traceback.
    (Imported here, not at the top, so that --help does not load the datasets package.)"""
    from datasets.errors import DatasetError
    from evaluation.errors import EvaluationError
    return UserError, DatasetError, EvaluationError


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (gin appends a multi-line note to errors
    raised inside configurables), or its type name when it has no message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
