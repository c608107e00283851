"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class FasdError(Exception):
    """A mistake in the user's input (flags, files, config) with a message that says what to do."""
