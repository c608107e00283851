"""Open the frame source a fasd.toml dataset entry describes."""

from __future__ import annotations

from fasd.config import DatasetEntry
from fasd.data.folder import FolderFrameSource
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.mcio import MCIOFrameSource
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
