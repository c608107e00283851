"""Open, create and validate a teacher store. Paths may be local folders or fsspec URLs (s3://, gs://, ...).

Object-store credentials come from the usual environment (for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
or an AWS profile, AWS_ENDPOINT_URL for S3-compatible servers); fasd never prints them.

Several processes may create one store at the same time (cache-teacher shards on several machines): a
process that finds no finished layout creates whatever is missing with identical content and never deletes
anything; the attributes that describe a layout are written last, so a layout with them is complete and is
verified, not recreated. Only ``overwrite`` deletes.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.errors
from zarr.core.sync import sync

from fasd import __version__
from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec, v1_specs
from fasd.mixing import MIX, MIX_DTYPE
from fasd.views import PARAMS, PARAMS_DTYPE, ViewSettings


class StoreNotFound(FasdError):
    """No store (no root group) at the path."""


@contextmanager
def _store_errors(path: str) -> Iterator[None]:
    """Turn storage failures (missing fsspec backend, unreachable or forbidden object store) into one line."""
    try:
        yield
    except ImportError as exc:  # fsspec names the package a URL scheme needs (s3fs, gcsfs, adlfs, ...)
        raise FasdError(f"cannot open {path}: {exc}") from None
    except (zarr.errors.GroupNotFoundError, FileNotFoundError):
        raise StoreNotFound(f"no teacher store at {path}: run `fasd cache-teacher --store {path} ...` first") from None
    except PermissionError as exc:
        raise FasdError(f"access to {path} was refused ({exc}); check the credentials in your environment "
                        f"(e.g. AWS_PROFILE or AWS_ACCESS_KEY_ID) and the bucket's permissions") from None
    except (ValueError, zarr.errors.BaseZarrError) as exc:
        raise FasdError(f"{path} is not a readable Zarr v3 teacher store: {exc}") from None
    except OSError as exc:
        raise FasdError(f"cannot access {path}: {exc}") from None


def _open_group(path: str, mode: str) -> zarr.Group:
    with _store_errors(path):
        return zarr.open_group(path, mode=mode)


def _open_or_create(path: str) -> zarr.Group:
    """The root group, created when absent; never deletes what another process wrote."""
    with _store_errors(path):
        try:
            return zarr.open_group(path, mode="a")
        except zarr.errors.ContainsGroupError:  # another process created it between zarr's check and write
            return zarr.open_group(path, mode="r+")


def _try_open(path: str) -> zarr.Group | None:
    try:
        return _open_group(path, "r+")
    except StoreNotFound:
        return None


def require_array(group: zarr.Group, name: str, shape: tuple[int, ...], dtype, chunks: tuple[int, ...],
                  fill_value=None) -> zarr.Array:
    """The array ``name`` of ``group``: created when absent, else checked to have this shape, dtype and chunks
    (what another process creating the same layout made)."""
    try:
        return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value)
    except (zarr.errors.ContainsArrayError, zarr.errors.ContainsGroupError):
        array = group[name]
    expected = np.dtype(str) if dtype is str else np.dtype(dtype)
    same_dtype = array.dtype.kind in "OTU" if expected.kind == "U" else array.dtype == expected
    if not isinstance(array, zarr.Array) or array.shape != shape or array.chunks != chunks or not same_dtype:
        raise FasdError(f"{group.store_path}/{name} exists with another shape, dtype or chunking; the store "
                        f"is damaged or was written by another fasd version: re-cache with --overwrite")
    return array


def missing_row_chunks(array: zarr.Array, row_chunks: Iterable[int]) -> list[int]:
    """The chunks along the first axis (of ``row_chunks``) of which some chunk object is not stored: deleted, or
    never written because it equalled the fill value (fasd writes metadata and text arrays whole, see
    layout.METADATA_STORED_ATTR). Reading such a chunk silently gives the fill value."""
    store, prefix = array.store_path.store, array.store_path.path
    rest = list(itertools.product(*(range(n) for n in array.cdata_shape[1:])))

    def stored(coords: tuple[int, ...]) -> bool:
        return bool(sync(store.exists(f"{prefix}/{array.metadata.encode_chunk_key(coords)}")))

    return [c for c in row_chunks if not all(stored((c, *other)) for other in rest)]


def read_strings(array: zarr.Array) -> np.ndarray:
    """A string array as a plain numpy unicode array (zarr returns numpy's StringDType)."""
    values = array[:]
    return values.astype(object).astype(str) if len(values) else np.array([], dtype=str)


def check_version(group: zarr.Group, path: str) -> int:
    """The store's schema version; refuses a group that is not a fasd store or has a version this fasd
    cannot read."""
    found = group.attrs.get(layout.SCHEMA_ATTR)
    if found is None:
        raise FasdError(f"{path} is not a fasd teacher store (no '{layout.SCHEMA_ATTR}' attribute)")
    if found not in layout.READABLE_VERSIONS:
        readable = " and ".join(f"version {v}" for v in layout.READABLE_VERSIONS)
        raise FasdError(f"{path} has store schema version {found}, but this fasd reads {readable}: "
                        f"use the fasd version that wrote it, or re-cache it with this one")
    return int(found)


@dataclass
class TeacherStore:
    """A validated store: its root group, schema version, teacher fingerprint and target specs."""

    path: str
    root: zarr.Group

    @property
    def version(self) -> int:
        return int(self.root.attrs[layout.SCHEMA_ATTR])

    @property
    def teacher(self) -> dict:
        return dict(self.root.attrs[layout.TEACHER_ATTR])

    @property
    def targets(self) -> dict[str, TargetSpec]:
        """Every cached target by name (a schema-1 store: feature + logits)."""
        if self.version == 1:
            return v1_specs(self.root[layout.CENTROIDS].shape[1])
        return {name: TargetSpec.from_json(spec) for name, spec in self.teacher["targets"].items()}

    @property
    def views(self) -> ViewSettings | None:
        """The view settings the store was cached with (None: no views, one target per frame)."""
        value = self.teacher.get(layout.VIEWS_KEY) if self.version >= 2 else None
        return ViewSettings.from_json(value) if value else None

    @property
    def arrays(self) -> dict[str, TargetSpec]:
        """Every per-frame array the cache job writes: the targets, and with views ``views/params`` and
        ``views/<target>`` (their per-frame shape has the K views first)."""
        specs = self.targets
        if self.views is None:
            return specs
        k = self.views.count
        mix = {layout.VIEW_MIX: TargetSpec((k, MIX), MIX_DTYPE)} if self.views.mix.active else {}
        return {**specs, layout.VIEW_PARAMS: TargetSpec((k, PARAMS), PARAMS_DTYPE), **mix,
                **{layout.view_array(name): TargetSpec((k, *spec.shape), spec.dtype) for name, spec in specs.items()}}

    def text(self, name: str) -> np.ndarray | None:
        """An array of the store's ``text/`` group (centroids, captions, ...), None when absent."""
        key = f"{layout.TEXT_GROUP}/{name}"
        return self.root[key][:] if key in self.root else None

    @property
    def centroids(self) -> np.ndarray | None:
        return self.text("centroids")

    def dataset_names(self) -> list[str]:
        """Datasets whose layout is finished (a group still being created by another process is left out)."""
        with warnings.catch_warnings():
            # Temporary files of another process's write in progress are not members.
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
            return sorted(name for name, group in self.root.groups()
                          if name != layout.TEXT_GROUP and layout.SOURCE_ATTR in group.attrs)

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
    if layout.TEACHER_ATTR not in root.attrs or (root.attrs[layout.SCHEMA_ATTR] == 1 and layout.CENTROIDS not in root):
        raise FasdError(f"{path} is missing its teacher fingerprint or text centroids; re-cache it")
    store = TeacherStore(str(path), root)
    specs = store.arrays
    for name in store.dataset_names():
        group = root[name]
        rows = group.attrs.get(layout.ROWS_ATTR)
        for target, spec in specs.items():
            found = group[target].shape if target in group else None
            if found != (rows, *spec.shape):
                raise FasdError(f"{path}/{name}: target '{target}' has shape {found}, expected "
                                f"{(rows, *spec.shape)}; the store is damaged, re-cache with --overwrite")
    return store


def _refuse_foreign(path: str, existing: zarr.Group | None) -> None:
    """fasd only ever replaces or writes into a store it made: refuse a foreign Zarr group or a local folder that
    holds other files."""
    if existing is not None:
        if existing.attrs.asdict() and layout.SCHEMA_ATTR not in existing.attrs:
            raise FasdError(f"{path} is a Zarr group that fasd did not create; fasd will not write into or "
                            f"replace it: choose another --store")
        return
    local = Path(path)
    if "://" not in path and local.exists() and (not local.is_dir() or any(local.iterdir())):
        raise FasdError(f"{path} exists and is not a fasd teacher store; fasd will not write into or replace it: "
                        f"choose another --store")


def create_or_check_store(path: str, teacher: dict, texts: dict[str, np.ndarray], overwrite: bool) -> TeacherStore:
    """Create a store for ``teacher`` (with its ``text/`` arrays, e.g. centroids), or reuse one cached with the
    same teacher fingerprint.

    A store of another teacher (or schema version) is refused unless ``overwrite``, which replaces it whole —
    and only ever a store fasd made. Safe when several processes call it at once on the same store (see the
    module docstring).
    """
    path = str(path)
    existing = _try_open(path)
    _refuse_foreign(path, existing)
    # A root without attributes is a layout another process has only begun: finish it alongside.
    if existing is not None and existing.attrs.asdict():
        stored = dict(existing.attrs.get(layout.TEACHER_ATTR, {}))
        same_version = existing.attrs.get(layout.SCHEMA_ATTR) == layout.SCHEMA_VERSION
        if same_version and stored == teacher:
            store = open_store(path, writable=True)
            for name, values in texts.items():  # restore a deleted text chunk (same teacher: same values)
                array = store.root.get(f"{layout.TEXT_GROUP}/{name}")
                if isinstance(array, zarr.Array) and missing_row_chunks(array, range(array.cdata_shape[0])):
                    array.with_config({"write_empty_chunks": True})[:] = values
            return store
        if not overwrite:
            version = check_version(existing, path)
            if version != layout.SCHEMA_VERSION:
                raise FasdError(f"{path} was written with store schema {version}; this fasd writes schema "
                                f"{layout.SCHEMA_VERSION}: use another --store or pass --overwrite to replace it")
            changed = sorted(k for k in set(stored) | set(teacher) if stored.get(k) != teacher.get(k))
            raise FasdError(f"{path} was cached with another teacher (differs in: {', '.join(changed)}); "
                            f"use another --store or pass --overwrite to replace it")
        root = _open_group(path, "w")
    else:
        root = _open_or_create(path)
    with _store_errors(path):
        for name, values in texts.items():
            array = require_array(root, f"{layout.TEXT_GROUP}/{name}", values.shape, values.dtype, values.shape)
            array.with_config({"write_empty_chunks": True})[:] = values  # stored even if all fill: a deletion shows
        # Written last, in one metadata write: marks the layout finished for every other process.
        root.update_attributes({layout.SCHEMA_ATTR: layout.SCHEMA_VERSION, layout.TEACHER_ATTR: teacher,
                                "fasd_version": __version__,
                                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return TeacherStore(path, root)
