"""Writability checks before long work starts, and the one-line wording of OSErrors."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fasd.errors import FasdError


# errnos that mean "this output cannot be written": full disk, read-only mount, permissions, quota.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
                          errno.ENOTDIR, errno.EEXIST})


def os_error_line(exc: OSError) -> str:
    """``cannot write PATH: reason`` for write failures, ``cannot access PATH: reason`` for the rest."""
    verb = "cannot write" if exc.errno in WRITE_ERRNOS else "cannot access"
    if exc.filename is None:  # e.g. h5py: the path is in the message
        return f"{verb}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return f"{verb} {exc.filename}: {exc.strerror or str(exc) or type(exc).__name__}"


def ensure_writable(path: Path) -> None:
    """Refuse, before any long work, an output ``path`` whose folder cannot be created or written.

    ``path`` is the file or folder fasd is about to write; its nearest existing ancestor must be a
    writable folder (root is checked by really creating a file: permission bits do not stop root, a
    read-only mount does). An existing ``path`` must itself be writable.
    """
    path = Path(path)
    probe = path if path.is_dir() else path.parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise FasdError(f"cannot write {path}: {probe} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".fasd-write-check-"):
            pass
    except OSError as exc:
        raise FasdError(f"cannot write {path}: {probe} is not writable ({exc.strerror or exc})") from None
    if path.is_file() and not os.access(path, os.W_OK):
        raise FasdError(f"cannot write {path}: the file is read-only")


# How torch.save reports a write that failed part-way (a full disk, a quota): a RuntimeError, not an OSError.
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``: ``path`` is never half written, and no temporary file is
    left behind when the write fails (a full disk: one line naming ``path``, as an OSError or FasdError)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    except RuntimeError as exc:
        if not any(marker in str(exc) for marker in _TORCH_WRITE_FAILURES):
            raise
        free = shutil.disk_usage(path.parent).free
        raise FasdError(f"cannot write {path}: the write failed part-way ({free / 1e6:.1f} MB free on its disk); "
                        f"free some space and run the same command again") from None
    finally:
        tmp.unlink(missing_ok=True)


def refuse_replacing(path: Path, flag: str, overwrite: bool, ours: Callable[[Path], bool], what: str) -> None:
    """Nothing the user has is replaced: an existing ``path`` only with ``--overwrite``, and only when
    ``ours(path)`` says fasd wrote it. ``what`` names what fasd writes there, e.g. "a teacher checkpoint"."""
    path = Path(path)
    if not path.exists():
        return
    if not ours(path):
        raise FasdError(f"{flag} {path} exists and is not {what} that fasd wrote; fasd will not replace it: "
                        f"choose another {flag}")
    if not overwrite:
        raise FasdError(f"{flag} {path} exists ({what} that fasd wrote): pass --overwrite to replace it, or choose "
                        f"another {flag}")
