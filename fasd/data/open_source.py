"""Open the frame source a fasd.toml dataset entry describes."""

from __future__ import annotations

from collections.abc import Callable

from fasd.config import DatasetEntry, DatasetRegistry
from fasd.data.folder import FolderFrameSource
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.mcio import MCIOFrameSource
from fasd.data.pooled import PooledFrameSource
from fasd.data.source import FrameSource
from fasd.errors import FasdError
from fasd.registry import Registry


# A fasd.toml dataset's ``format`` -> how its frames are opened (path, name).
SOURCE_FORMATS: Registry[Callable[[DatasetEntry], FrameSource]] = Registry("format")
SOURCE_FORMATS.add("hdf5", lambda entry: HDF5FrameSource(entry.path, entry.name))
SOURCE_FORMATS.add("folder", lambda entry: FolderFrameSource(entry.manifest or entry.path / "manifest.csv", entry.name))
SOURCE_FORMATS.add("mcio", lambda entry: MCIOFrameSource(entry.path, entry.name))


def open_source(entry: DatasetEntry) -> FrameSource:
    """The entry's frames; the source is named after the entry whatever the file itself says."""
    if entry.format not in SOURCE_FORMATS:
        raise FasdError(f"dataset '{entry.name}': unknown format '{entry.format}' (use {', '.join(SOURCE_FORMATS)})")
    return SOURCE_FORMATS[entry.format](entry)


def open_target(registry: DatasetRegistry, target: str) -> FrameSource:
    """A protocol's test set by its target name: the dataset itself, or for a pooled ``C+D`` (several targets,
    ``A,B-to-C,D``) their frames concatenated (fasd.data.pooled)."""
    entries = registry.entries(target)
    return open_source(entries[0]) if len(entries) == 1 else PooledFrameSource([open_source(e) for e in entries])
