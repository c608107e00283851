"""The typer app, the command decorator (one-line errors) and small option parsers shared by commands."""

from __future__ import annotations

import functools
import json
import math
import os
from importlib.metadata import version as package_version
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperCommand

from fasd.errors import FasdError
from fasd.io_checks import os_error_line
from fasd.student_train.recipes import RECIPES

app = typer.Typer(
    help="fasd: distil large face anti-spoofing teachers (FLIP-MCL / CLIP, timm ViT/DeiT) into phone-sized "
         "students (MobileNetV3-Small, DeiT-Tiny) through a cached teacher store. Recipes: "
         f"{', '.join(RECIPES)} (default {next(iter(RECIPES))}; `fasd train --help`). Labels: 0 = spoof, 1 = live.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"fasd {package_version('fasd')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print fasd's version and exit.")] = None) -> None:
    """fasd: distil a vision-language face anti-spoofing teacher into a phone-sized student."""


_LAZY_HELP: dict[str, Callable[[], str]] = {}


def lazy_help(text: Callable[[], str]) -> str:
    """An option's help built from a registry when help is shown, not when the CLI starts: registries whose
    members import torch (export formats, students) stay unimported by every other command and `--help`."""
    key = f"\0{len(_LAZY_HELP)}"
    _LAZY_HELP[key] = text
    return key


def _detectors_help(lead: str) -> str:
    """``lead`` and every registered face detector (imports OpenCV: only when help is shown)."""
    from fasd.faces.detectors import detectors_help

    return f"{lead}. {detectors_help()}."


class _RegistryHelpCommand(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        for param in self.params:
            if getattr(param, "help", None) in _LAZY_HELP:
                param.help = _LAZY_HELP[param.help]()
        super().format_help(ctx, formatter)


def command(name: str) -> Callable:
    """Register a command whose user errors print one line (no traceback) and exit 2."""
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except FasdError as exc:
                typer.echo(f"fasd {name}: error: {exc}", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.echo(f"fasd {name}: interrupted; completed work is kept, re-run the same command to "
                           f"resume", err=True)
                raise typer.Exit(130) from None
            except OSError as exc:  # disk full, read-only folder, permission denied, ...
                typer.echo(f"fasd {name}: error: {os_error_line(exc)}", err=True)
                raise typer.Exit(2) from None
        return app.command(name, cls=_RegistryHelpCommand)(wrapper)
    return decorate


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _shard(value: Optional[str]) -> tuple[int, int]:
    """``--shard I/N``, else torchrun's RANK/WORLD_SIZE, else the whole job."""
    if value is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise FasdError(f"--shard must look like I/N (e.g. 0/4), got '{value}'") from None
    if count < 1 or not 0 <= index < count:
        raise FasdError(f"--shard {value}: need 0 <= I < N")
    return index, count


def _positive(name: str, value: float) -> None:
    """Refuse values <= 0, nan and inf."""
    _finite(name, value)
    if value <= 0:
        raise FasdError(f"{name} must be > 0, got {value}")


def _finite(name: str, value: float) -> None:
    """Refuse nan and +-inf (typer parses both from a float option)."""
    if not math.isfinite(value):
        raise FasdError(f"{name} must be a finite number, got {value}")


def _layers(value: str) -> list[int]:
    """``--layers 4,6,8``: distinct 0-based block indices (the model checks they exist)."""
    try:
        layers = [int(v) for v in _csv(value)]
    except ValueError:
        raise FasdError(f"--layers must be comma-separated block indices like 4,6,8, got '{value}'") from None
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise FasdError(f"--layers must name distinct blocks >= 0, got '{value}'")
    return layers


def _finite_in(name: str, value: float, low: float, high: float) -> None:
    """Refuse nan, inf and values outside [low, high]."""
    if not low <= value <= high:  # False for nan
        raise FasdError(f"{name} must be a number in [{low}, {high}], got {value}")


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=float))

