"""One exception type for problems a person caused and can fix; its message is shown as-is in one line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or missing resource, explained in one line for the UI and the CLI."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-blank line of an error, cut at `limit`: TensorFlow and converters write pages otherwise.

    An exception with no text gives its type name, so the UI and the CLI never show an empty reason.
    """
    text = str(exc)
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
