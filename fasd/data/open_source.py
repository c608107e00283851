"""Open the frame source a fasd.toml dataset entry describes."""

from __future__ import annotations

from fasd.config import DatasetEntry, DatasetRegistry
from fasd.data.folder import FolderFrameSource
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.mcio import MCIOFrameSource
from fasd.data.pooled import PooledFrameSource
from fasd.data.source import FrameSource
from fasd.errors import FasdError


def open_source(entry: DatasetEntry) -> FrameSource:
    """The entry's frames; the source is named after the entry whatever the file itself says."""
    if entry.format == "hdf5":
        return HDF5FrameSource(entry.path, entry.name)
    if entry.format == "folder":
        return FolderFrameSource(entry.manifest or entry.path / "manifest.csv", entry.name)
    if entry.format == "mcio":
        return MCIOFrameSource(entry.path, entry.name)
    raise FasdError(f"dataset '{entry.name}': unknown format '{entry.format}' (use hdf5, folder or mcio)")


def open_target(registry: DatasetRegistry, target: str) -> FrameSource:
    """A protocol's test set by its target name: the dataset itself, or for a pooled ``C+D`` (several targets,
    ``A,B-to-C,D``) their frames concatenated (fasd.data.pooled)."""
    entries = registry.entries(target)
    return open_source(entries[0]) if len(entries) == 1 else PooledFrameSource([open_source(e) for e in entries])
