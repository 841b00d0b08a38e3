"""User-facing errors.

A ``MetaalError`` is a problem with the user's input or environment (bad task
spec, missing file, inconsistent options).  The CLI prints each of its problems
on one line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager


class MetaalError(Exception):
    """One or more one-line, user-facing problems (CLI exit code 2)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = [" ".join(str(p).split()) for p in (problems or [message])]
        text = self.problems[0] if len(self.problems) == 1 else f"{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(text)


class Problems:
    """Gathers the problems of independent checks, so that a user fixes them all in one go instead of
    meeting them one rerun at a time::

        problems = Problems()
        with problems.check():
            check_tasks(...)
        with problems.check():
            check_policy(...)
        problems.raise_any()
    """

    def __init__(self):
        self.found: list[str] = []

    @contextmanager
    def check(self):
        try:
            yield
        except MetaalError as exc:
            self.found.extend(p for p in exc.problems if p not in self.found)

    def add(self, message: str) -> None:
        self.found.append(" ".join(str(message).split()))

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_any(self) -> None:
        if self.found:
            raise MetaalError(self.found[0], problems=list(self.found))
