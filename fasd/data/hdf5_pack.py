"""HDF5 frame pack: the fast frame source written by ``fasd synth`` and ``fasd ingest``.

Layout: ``images`` uint8 (N, H, W, 3) RGB, chunked one image per chunk, and per-frame ``frame_id``,
``label`` (i1: 0 = spoof, 1 = live), ``split``, ``video_id``, ``attack_type``; attrs ``dataset``, ``source``,
``crop_policy`` (a fasd.faces.policy.CropPolicy as JSON text, or a free-text description in packs of
annotation-based layouts and earlier fasd versions), ``size``. A multimodal pack also holds ``depth`` and/or
``ir``, shaped and chunked like ``images`` (3-channel, as the MMDG lists store them), and ``modalities``
(N, 3) bool: which of rgb, depth, ir each frame has. An absent modality reads as an all-zero image whatever
is stored. A pack without ``modalities`` marks every modality it stores present; a pack without ``depth`` and
``ir`` is RGB only.

Opening a pack validates it (array kinds, lengths, shapes and dtypes, labels, unique non-empty frame IDs,
splits, the modality mask): a bad pack is refused with one FasdError line naming the file and the first
problem, as the manifest reader does. The file handle is opened lazily and dropped on pickling so
DataLoader workers each open their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, MODALITIES, SPLITS
from fasd.data.source import FrameSource, FrameTable, UnreadableFrame, modality_mask
from fasd.errors import FasdError, warn
from fasd.faces.policy import CropPolicy, policy_from_json, policy_text

STR_DTYPE = h5py.string_dtype("utf-8")
META_FIELDS = ("frame_id", "split", "video_id", "attack_type")
EXTRA_MODALITIES = MODALITIES[1:]  # stored beside ``images`` under their own names
ARRAY_OF = {"rgb": "images", **{name: name for name in EXTRA_MODALITIES}}
MASK = "modalities"
META_CHUNK = 4096


class PackWriter:
    """Append frames to a new HDF5 pack in blocks; the file is valid after every ``append``.

    ``modalities`` (rgb always among them) fixes which image arrays the pack stores; every ``append``
    then passes an array for each stored one beside ``images``.
    """

    def __init__(self, path: str | Path, dataset: str, size: int, source: str, crop_policy: CropPolicy | str,
                 modalities: Sequence[str] = ("rgb",)):
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or "rgb" not in modalities:
            raise ValueError(f"pack modalities {list(modalities)}: must include rgb, from {', '.join(MODALITIES)}")
        self.extra = tuple(name for name in EXTRA_MODALITIES if name in modalities)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update({"dataset": dataset, "source": source, "crop_policy": policy_text(crop_policy),
                                 "size": size})
        image = (size, size, 3)
        for name in ("images", *self.extra):
            self._file.create_dataset(name, shape=(0, *image), maxshape=(None, *image), dtype="u1",
                                      chunks=(1, *image))
        if self.extra:
            self._file.create_dataset(MASK, shape=(0, len(MODALITIES)), maxshape=(None, len(MODALITIES)),
                                      dtype=bool, chunks=(META_CHUNK, len(MODALITIES)))
        self._file.create_dataset("label", shape=(0,), maxshape=(None,), dtype="i1", chunks=(META_CHUNK,))
        for name in META_FIELDS:
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=STR_DTYPE, chunks=(META_CHUNK,))
        self.rows = 0

    def append(self, images: np.ndarray, frame_id, label, split, video_id, attack_type, *,
               depth: np.ndarray | None = None, ir: np.ndarray | None = None,
               present: np.ndarray | None = None) -> None:
        """Append N frames. ``present`` (N, 3) bool defaults to every stored modality present."""
        count = len(images)
        if count == 0:
            return
        given = {"depth": depth, "ir": ir}
        wrong = [name for name, value in given.items() if (value is None) == (name in self.extra)]
        if wrong or (present is not None and not self.extra):
            raise ValueError(f"this pack stores {', '.join(('rgb', *self.extra))}: pass exactly those arrays "
                             f"(and present only for a multimodal pack)")
        columns = {"images": np.asarray(images, dtype=np.uint8), "label": np.asarray(label, dtype=np.int8),
                   **{name: np.asarray(given[name], dtype=np.uint8) for name in self.extra}}
        if self.extra:
            columns[MASK] = (np.tile(modality_mask(("rgb", *self.extra)), (count, 1)) if present is None
                             else np.asarray(present, dtype=bool))
        columns.update({name: np.asarray(values, dtype=object)
                        for name, values in zip(META_FIELDS, (frame_id, split, video_id, attack_type))})
        lengths = {name: len(values) for name, values in columns.items()}
        if set(lengths.values()) != {count}:
            raise ValueError(f"per-frame columns differ in length: {lengths}")
        start, end = self.rows, self.rows + count
        for name, values in columns.items():
            dataset = self._file[name]
            dataset.resize(end, axis=0)
            dataset[start:end] = values
        self.rows = end
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PackWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HDF5FrameSource(FrameSource):
    format = "hdf5"

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FasdError(f"HDF5 frame pack not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as handle:
                self.name = name or str(handle.attrs.get("dataset", self.path.stem))
                self.crop_policy = policy_from_json(handle.attrs.get("crop_policy"))
                contents = _read_pack(handle, self.path)
        except OSError as exc:
            raise FasdError(f"cannot read HDF5 frame pack {self.path}: {exc}") from None
        self.table, self.modalities, self._present, self._image_shape = contents
        self._all_present = modality_mask(self.modalities)
        self._handle: h5py.File | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def _present_at(self, row: int) -> np.ndarray:
        return self._all_present if self._present is None else self._present[row]

    def _read(self, modality: str, row: int) -> np.ndarray:
        if self._handle is None:
            self._handle = h5py.File(self.path, "r")
        try:
            return self._handle[ARRAY_OF[modality]][row]
        except (OSError, ValueError) as exc:
            raise UnreadableFrame(f"{self.table.frame_id[row]}: {exc}") from None

    def read_image(self, row: int) -> np.ndarray:
        if not self._present_at(row)[0]:
            return np.zeros(self._image_shape, dtype=np.uint8)
        return self._read("rgb", row)

    def read_modalities(self, row: int) -> dict[str, np.ndarray]:
        present = self._present_at(row)
        frames = {name: self._read(name, row) if present[index] else np.zeros(self._image_shape, dtype=np.uint8)
                  for index, name in enumerate(MODALITIES)}
        return {**frames, "mask": present.copy()}


# --------------------------------------------------------------------------------------------------
# Validation on open: every check names the pack and the first offending frame.


def _read_pack(handle: h5py.File, path: Path
               ) -> tuple[FrameTable, tuple[str, ...], np.ndarray | None, tuple[int, ...]]:
    """The pack's table, stored modalities, per-frame mask (None: all stored present) and image shape."""
    def bad(problem: str) -> FasdError:
        return FasdError(f"frame pack {path}: {problem}")

    missing = [k for k in ("images", "label", *META_FIELDS) if k not in handle]
    if missing:
        raise FasdError(f"{path} is not a fasd frame pack (missing {', '.join(missing)})")
    extra = tuple(name for name in EXTRA_MODALITIES if name in handle)
    names = ("images", *extra, "label", *META_FIELDS, *((MASK,) if MASK in handle else ()))
    arrays = {name: handle[name] for name in names}
    for name, array in arrays.items():
        if not isinstance(array, h5py.Dataset) or array.ndim == 0:
            raise bad(f"'{name}' must be a per-frame array")
    lengths = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise bad("per-frame arrays differ in length (" + ", ".join(f"{k} {n}" for k, n in lengths.items()) + ")")
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise bad(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    for name in extra:
        if arrays[name].dtype != np.uint8 or arrays[name].shape != images.shape:
            raise bad(f"{name} must match images (uint8 {images.shape}), got {arrays[name].dtype} "
                      f"{arrays[name].shape}")
    for name in ("label", *META_FIELDS):
        if arrays[name].ndim != 1:
            raise bad(f"{name} must be one value per frame, got shape {arrays[name].shape}")
    strings = {name: _strings(arrays[name], bad) for name in META_FIELDS}
    frame_id = strings["frame_id"]

    def at(row: int) -> str:
        return f"frame '{frame_id[row]}' (row {row})"

    empty = np.flatnonzero(frame_id == "")
    if len(empty):
        raise bad(f"row {empty[0]} has an empty frame_id")
    unique, counts = np.unique(frame_id, return_counts=True)
    if len(unique) < len(frame_id):
        duplicate = unique[np.argmax(counts)]
        raise bad(f"frame_id '{duplicate}' occurs {counts.max()} times; frame IDs must be unique")
    label = arrays["label"][()]
    if label.dtype.kind not in "iub":
        raise bad(f"labels must be integers {LABEL_SPOOF} (spoof) or {LABEL_LIVE} (live), got {label.dtype}")
    wrong = np.flatnonzero(~np.isin(label, (LABEL_SPOOF, LABEL_LIVE)))
    if len(wrong):
        raise bad(f"{at(wrong[0])} has label {label[wrong[0]]}; labels must be {LABEL_SPOOF} (spoof) or "
                  f"{LABEL_LIVE} (live)")
    wrong = np.flatnonzero(~np.isin(strings["split"], SPLITS))
    if len(wrong):
        raise bad(f"{at(wrong[0])} has split '{strings['split'][wrong[0]]}'; splits are {', '.join(SPLITS)}")
    present = _mask(arrays.get(MASK), ("rgb", *extra), bad, at)
    table = FrameTable(frame_id=frame_id, label=label.astype(np.int8), split=strings["split"],
                       video_id=strings["video_id"], attack_type=strings["attack_type"])
    return table, ("rgb", *extra), present, images.shape[1:]


def _strings(dataset: h5py.Dataset, bad) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is None:
        raise bad(f"{dataset.name.lstrip('/')} must hold strings, got {dataset.dtype}")
    if not len(dataset):
        return np.array([], dtype=str)
    try:
        return dataset.asstr()[()].astype(str)
    except UnicodeDecodeError:
        raise bad(f"{dataset.name.lstrip('/')} holds text that is not UTF-8") from None


def _mask(dataset: h5py.Dataset | None, stored: tuple[str, ...], bad, at) -> np.ndarray | None:
    """The (N, 3) per-frame modality mask, checked against what the pack stores; None when absent."""
    if dataset is None:
        return None
    if dataset.dtype != bool or dataset.shape[1:] != (len(MODALITIES),):
        raise bad(f"{MASK} must be an (N, {len(MODALITIES)}) bool mask ({', '.join(MODALITIES)}), got "
                  f"{dataset.dtype} {dataset.shape}")
    present = dataset[()]
    for index, name in enumerate(MODALITIES):
        rows = np.flatnonzero(present[:, index]) if name not in stored else []
        if len(rows):
            raise bad(f"{at(rows[0])} marks {name} present but the pack has no {name} array")
    rows = np.flatnonzero(~present.any(axis=1))
    if len(rows):
        raise bad(f"{at(rows[0])} has no modality (rgb, depth and ir all marked absent)")
    if len(present) and not present[:, MODALITIES.index("rgb")].any():  # every RGB image reads as zeros
        warn(str(bad(f"{MASK} marks rgb absent on every frame: an RGB model sees only blank images")))
    return present
