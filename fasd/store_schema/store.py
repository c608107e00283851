"""Open, create and validate a teacher store. Paths may be local folders or fsspec URLs."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np
import zarr
import zarr.errors

from fasd import __version__
from fasd.errors import FasdError
from fasd.store_schema import layout


def _open_group(path: str, mode: str) -> zarr.Group:
    try:
        return zarr.open_group(path, mode=mode)
    except FileNotFoundError:  # also zarr's GroupNotFoundError
        raise FasdError(f"no teacher store at {path}: run `fasd cache-teacher --store {path} ...` first") from None
    except (ValueError, zarr.errors.BaseZarrError) as exc:
        raise FasdError(f"{path} is not a readable Zarr v3 teacher store: {exc}") from None


def read_strings(array: zarr.Array) -> np.ndarray:
    """A string array as a plain numpy unicode array (zarr returns numpy's StringDType)."""
    values = array[:]
    return values.astype(object).astype(str) if len(values) else np.array([], dtype=str)


def check_version(group: zarr.Group, path: str) -> None:
    found = group.attrs.get(layout.SCHEMA_ATTR)
    if found is None:
        raise FasdError(f"{path} is not a fasd teacher store (no '{layout.SCHEMA_ATTR}' attribute)")
    if found != layout.SCHEMA_VERSION:
        raise FasdError(f"{path} has store schema version {found}, but this fasd reads version "
                        f"{layout.SCHEMA_VERSION}: re-cache it with this fasd version")


@dataclass
class TeacherStore:
    """A validated store: its root group, the teacher fingerprint and the text centroids."""

    path: str
    root: zarr.Group

    @property
    def teacher(self) -> dict:
        return dict(self.root.attrs[layout.TEACHER_ATTR])

    @property
    def centroids(self) -> np.ndarray:
        return self.root[layout.CENTROIDS][:]

    def dataset_names(self) -> list[str]:
        return sorted(name for name, _ in self.root.groups() if name != "text")

    def dataset(self, name: str) -> zarr.Group:
        if name not in self.dataset_names():
            cached = ", ".join(self.dataset_names()) or "none"
            raise FasdError(f"dataset '{name}' is not in the store {self.path} (cached: {cached}); "
                            f"run `fasd cache-teacher --dataset {name} --store {self.path}`")
        return self.root[name]


def open_store(path: str, writable: bool = False) -> TeacherStore:
    """Open an existing store and check its schema version and shape contract."""
    root = _open_group(str(path), "r+" if writable else "r")
    check_version(root, str(path))
    if layout.TEACHER_ATTR not in root.attrs or layout.CENTROIDS not in root:
        raise FasdError(f"{path} is missing its teacher fingerprint or text centroids; re-cache it")
    store = TeacherStore(str(path), root)
    dim = store.centroids.shape[1]
    for name in store.dataset_names():
        group = root[name]
        rows = group.attrs.get(layout.ROWS_ATTR)
        feature, logits = group[layout.FEATURE], group[layout.LOGITS]
        if feature.shape != (rows, dim) or logits.shape != (rows, 2):
            raise FasdError(f"{path}/{name}: feature {feature.shape} / logits {logits.shape} do not match "
                            f"{rows} rows of dimension {dim}; the store is damaged, re-cache with --overwrite")
    return store


def create_or_check_store(path: str, teacher: dict, centroids: np.ndarray, overwrite: bool) -> TeacherStore:
    """Create a store for ``teacher``, or reuse one cached with the same teacher fingerprint.

    A store of another teacher (or schema version) is refused unless ``overwrite``, which replaces it whole.
    """
    try:
        existing = zarr.open_group(str(path), mode="r+")
    except FileNotFoundError:
        existing = None
    if existing is not None:
        stored = dict(existing.attrs.get(layout.TEACHER_ATTR, {}))
        same_version = existing.attrs.get(layout.SCHEMA_ATTR) == layout.SCHEMA_VERSION
        if same_version and stored == teacher:
            return open_store(path, writable=True)
        if not overwrite:
            check_version(existing, str(path))
            changed = sorted(k for k in set(stored) | set(teacher) if stored.get(k) != teacher.get(k))
            raise FasdError(f"{path} was cached with another teacher (differs in: {', '.join(changed)}); "
                            f"use another --store or pass --overwrite to replace it")
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({layout.SCHEMA_ATTR: layout.SCHEMA_VERSION, layout.TEACHER_ATTR: teacher,
                       "fasd_version": __version__,
                       "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    text = root.create_group("text")
    array = text.create_array("centroids", shape=centroids.shape, dtype="f4")
    array[:] = centroids.astype(np.float32)
    return TeacherStore(str(path), root)
