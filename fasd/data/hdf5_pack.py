"""HDF5 frame pack: the fast frame source written by ``fasd synth`` and ``fasd ingest``.

Layout: ``images`` uint8 (N, H, W, 3) chunked one image per chunk, and per-frame ``frame_id``,
``label`` (i1), ``split``, ``video_id``, ``attack_type``; attrs ``dataset``, ``source``, ``crop_policy``.
The file handle is opened lazily and dropped on pickling so DataLoader workers each open their own.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from fasd.data.source import FrameSource, FrameTable, UnreadableFrame
from fasd.errors import FasdError

STR_DTYPE = h5py.string_dtype("utf-8")
META_FIELDS = ("frame_id", "split", "video_id", "attack_type")


class PackWriter:
    """Append frames to a new HDF5 pack in blocks; the file is valid after every ``append``."""

    def __init__(self, path: str | Path, dataset: str, size: int, source: str, crop_policy: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update({"dataset": dataset, "source": source, "crop_policy": crop_policy,
                                 "size": size})
        self._file.create_dataset("images", shape=(0, size, size, 3), maxshape=(None, size, size, 3),
                                  dtype="u1", chunks=(1, size, size, 3))
        self._file.create_dataset("label", shape=(0,), maxshape=(None,), dtype="i1", chunks=(4096,))
        for name in META_FIELDS:
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=STR_DTYPE, chunks=(4096,))
        self.rows = 0

    def append(self, images: np.ndarray, frame_id, label, split, video_id, attack_type) -> None:
        count = len(images)
        if count == 0:
            return
        start, end = self.rows, self.rows + count
        columns = {"images": np.asarray(images, dtype=np.uint8), "label": np.asarray(label, dtype=np.int8),
                   "frame_id": frame_id, "split": split, "video_id": video_id, "attack_type": attack_type}
        for name, values in columns.items():
            dataset = self._file[name]
            dataset.resize(end, axis=0)
            dataset[start:end] = values if name in ("images", "label") else np.asarray(values, dtype=object)
        self.rows = end
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PackWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strings(dataset: h5py.Dataset) -> np.ndarray:
    return dataset.asstr()[()].astype(str) if len(dataset) else np.array([], dtype=str)


class HDF5FrameSource(FrameSource):
    format = "hdf5"

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FasdError(f"HDF5 frame pack not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as handle:
                missing = [k for k in ("images", "label", *META_FIELDS) if k not in handle]
                if missing:
                    raise FasdError(f"{self.path} is not a fasd frame pack (missing {', '.join(missing)})")
                self.name = name or str(handle.attrs.get("dataset", self.path.stem))
                self.table = FrameTable(
                    frame_id=_strings(handle["frame_id"]), label=handle["label"][()].astype(np.int8),
                    split=_strings(handle["split"]), video_id=_strings(handle["video_id"]),
                    attack_type=_strings(handle["attack_type"]))
        except OSError as exc:
            raise FasdError(f"cannot read HDF5 frame pack {self.path}: {exc}") from None
        self._handle: h5py.File | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def read_image(self, row: int) -> np.ndarray:
        if self._handle is None:
            self._handle = h5py.File(self.path, "r")
        try:
            return self._handle["images"][row]
        except (OSError, ValueError) as exc:
            raise UnreadableFrame(f"{self.table.frame_id[row]}: {exc}") from None
