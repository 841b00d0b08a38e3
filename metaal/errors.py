"""User-facing errors.

A ``MetaalError`` is a problem with the user's input or environment (bad task
spec, missing file, inconsistent options).  The CLI prints its message on one
line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class MetaalError(Exception):
    """A one-line, user-facing problem (CLI exit code 2)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
