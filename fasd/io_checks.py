"""Writability checks before long work starts, and the one-line wording of OSErrors."""

from __future__ import annotations

import errno
import os
import tempfile
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
