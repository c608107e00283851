"""User-facing errors: the CLI prints their message as one line and exits non-zero; warnings: one line, and go on."""

import sys

from tqdm import tqdm


def one_line(message: str) -> str:
    """``message`` on one line: line breaks that came in with user data (a key or file name) are shown escaped."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


class FasdError(Exception):
    """A mistake in the user's input (flags, files, config) with a message that says what to do; always one line,
    whatever names the message quotes."""

    def __init__(self, message: str = "") -> None:
        super().__init__(one_line(str(message)))


def warn(message: str) -> None:
    """One line on stderr, above any progress bar: something was left out or is undefined, and the command goes on."""
    tqdm.write(f"warning: {one_line(message)}", file=sys.stderr)


def listed(names, shown: int = 5) -> str:
    """The first ``shown`` of ``names`` and how many more, for a one-line message: "a, b, c and 4 more"."""
    names = [str(name) for name in names]
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
