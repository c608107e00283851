"""The ``fasd`` command line: a thin typer shell; each submodule registers its commands on ``app``."""

from fasd.cli import cache, deploy, train  # noqa: F401  (importing them registers their commands)
from fasd.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
