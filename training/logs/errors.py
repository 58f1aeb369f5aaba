"""The single exception type for input that is not a usable purchase log."""


class LogError(Exception):
    """A one-line, human message naming the file, the column and what was expected.

    Raised for every kind of bad input so that callers (the CLI) can print it
    instead of a traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an underlying error, to quote inside a one-line LogError."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
