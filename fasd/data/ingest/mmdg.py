"""MMDG benchmark lists (Lin et al. 2024; also MMDG++): WMCA (W), CASIA-CeFA (C), PADISI (P), CASIA-SURF (S).

``<lists>/<X>-{train,val,test}.txt`` (``--lists``, default the root), one sample a line:
``rgb_path depth_path ir_path label``, paths relative to ``--root`` (absolute ones work too), label
1 = live, 0 = spoof. Depth and IR are 3-channel JPEGs (a one-channel image is replicated to three).
PADISI samples are ``.npz`` files: a modality whose path ends in ``.npz`` is read from that file's
array (key ``data``, else its only array), taking ``[0]`` of a 4-D one: 5 x H x W floats in [0, 1],
RGB in channels 0-2, IR 3, depth 4; a line may then name the one file for all three (``x.npz label``).

One pack per dataset: ``--dataset X`` picks the lists ``X-*.txt`` (needed only when the folder holds
several datasets' lists), so W, C, P and S each become a registered dataset and the leave-one-out
protocols (``holdout-wmca`` ...) run over them as over any other set. The frames are face crops
already, so each modality is only resized to ``--size`` (bicubic, no crop, as MMDG's loaders do).
frame_id = the RGB path as listed, without extension. video_id = the RGB file's folder joined with
its name less a trailing frame number (``v/0001.jpg`` -> ``v``, ``rgb/v12_3.jpg`` -> ``rgb/v12``), or for
an ``.npz`` sample its path without extension; attack_type is unknown (''). Lines that are malformed,
repeat an earlier RGB path, or name a file that does not exist are skipped and reported.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, MODALITIES, SPLITS
from fasd.data.ingest.plan import Batch, FrameMeta, IngestOptions, ItemSkipped, Plan, Skip, register_layout
from fasd.data.ingest.readers import read_image
from fasd.data.source import modality_mask
from fasd.errors import FasdError

LIST_NAME = re.compile(rf"^(?P<dataset>.+)-(?P<split>{'|'.join(SPLITS)})\.txt$")
LINE_ORDER = ("rgb", "depth", "ir")  # the modalities' order on a list line
LABELS = {str(LABEL_SPOOF): LABEL_SPOOF, str(LABEL_LIVE): LABEL_LIVE}
NPZ_BANDS = 5
NPZ_CHANNELS = {"rgb": slice(0, 3), "ir": slice(3, 4), "depth": slice(4, 5)}
FRAME_NUMBER = re.compile(r"(?:^|[_-])(?:frame)?\d+$")
ALL_PRESENT = modality_mask(MODALITIES)
CHUNK = 128  # samples per work item
LAYOUT = ("an MMDG list folder: <X>-{train,val,test}.txt with lines 'rgb_path depth_path ir_path label' "
          "(1 = live), paths relative to --root")


@dataclass(frozen=True)
class Sample:
    where: str  # list file and line, for the report
    frame_id: str
    paths: tuple[str, str, str]  # rgb, depth, ir as listed
    meta: FrameMeta


@dataclass(frozen=True)
class SampleChunk:
    name: str
    root: Path
    samples: tuple[Sample, ...]
    size: int

    @property
    def units(self) -> int:
        return len(self.samples)

    def load(self) -> Batch:
        batch = Batch()
        for sample in self.samples:
            try:
                frames = read_sample(self.root, sample.paths, self.size)
            except ItemSkipped as skip:
                batch.skipped.append(skip.at(sample.where))
                continue
            batch.add(frames["rgb"], sample.frame_id, sample.meta,
                      {"depth": frames["depth"], "ir": frames["ir"], "present": ALL_PRESENT})
        return batch


def read_sample(root: Path, paths: tuple[str, str, str], size: int) -> dict[str, np.ndarray]:
    """The sample's rgb, depth and ir as (size, size, 3) uint8; an .npz file is read once for all its bands."""
    archives: dict[Path, np.ndarray] = {}
    frames = {}
    for name, listed in zip(LINE_ORDER, paths):
        path = root / listed
        if path.suffix.lower() == ".npz":
            if path not in archives:
                archives[path] = read_npz(path)
            bands = archives[path][..., NPZ_CHANNELS[name]]
            image = (np.clip(bands, 0, 1) * 255 + 0.5).astype(np.uint8)
            image = np.repeat(image, 3 // image.shape[-1], axis=-1)
        else:
            image = read_image(path)
        frames[name] = _resize(image, size)
    return frames


def read_npz(path: Path) -> np.ndarray:
    """A PADISI sample as (H, W, 5) float32 (RGB, IR, depth), or ItemSkipped."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = loaded.files
                key = "data" if "data" in names else names[0] if len(names) == 1 else None
                if key is None:
                    raise ItemSkipped("unreadable npz", f"{path.name}: no 'data' array among {names}")
                loaded = loaded[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ItemSkipped("unreadable npz", f"{path.name}: {exc}") from None
    data = loaded[0] if loaded.ndim == 4 else loaded
    if data.ndim != 3 or data.shape[0] != NPZ_BANDS or data.dtype.kind not in "fiu" or 0 in data.shape:
        raise ItemSkipped("unreadable npz", f"{path.name}: expected {NPZ_BANDS} x H x W numbers, got "
                                            f"{loaded.dtype} {loaded.shape}")
    if not np.isfinite(data).all():
        raise ItemSkipped("unreadable npz", f"{path.name}: non-finite values")
    return np.moveaxis(data, 0, -1).astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def video_id(rgb: str) -> str:
    path = PurePosixPath(rgb)
    if path.suffix.lower() == ".npz":
        return path.with_suffix("").as_posix()
    stem = FRAME_NUMBER.sub("", path.stem)
    folder = path.parent.as_posix()
    if not stem:
        return folder if folder != "." else path.stem
    return stem if folder == "." else f"{folder}/{stem}"


def list_files(folder: Path) -> dict[str, dict[str, Path]]:
    """dataset prefix -> split -> list file, for every ``<X>-<split>.txt`` in ``folder``."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = LIST_NAME.match(path.name)
        if match and path.is_file():
            found.setdefault(match["dataset"], {})[match["split"]] = path
    return found


def _choose(found: dict[str, dict[str, Path]], wanted: str | None, folder: Path) -> str:
    if wanted is None:
        if len(found) == 1:
            return next(iter(found))
        raise FasdError(f"{folder} holds the lists of {', '.join(found)}: choose one with --dataset "
                        "(each dataset becomes its own pack)")
    by_name = {name.lower(): name for name in found}
    if wanted.lower() not in by_name:
        raise FasdError(f"--dataset {wanted}: no {wanted}-{{train,val,test}}.txt in {folder} "
                        f"(lists found: {', '.join(found)})")
    return by_name[wanted.lower()]


def _parse(fields: list[str]) -> tuple[tuple[str, str, str], int] | None:
    """(rgb, depth, ir paths, label) of a list line, or None when it is malformed."""
    if len(fields) == 2 and fields[0].lower().endswith(".npz"):
        fields = [fields[0]] * 3 + fields[1:]
    if len(fields) != 4 or fields[3] not in LABELS:
        return None
    return (fields[0], fields[1], fields[2]), LABELS[fields[3]]


@register_layout("mmdg", options=("lists", "dataset"))
def plan(root: Path, options: IngestOptions) -> Plan:
    folder = options.lists or root
    if not folder.is_dir():
        raise FasdError(f"--lists {folder}: folder not found")
    found = list_files(folder)
    if not found:
        raise FasdError(f"{folder} is not {LAYOUT}")
    lists = found[_choose(found, options.dataset, folder)]
    samples, skipped, seen, ids = [], [], 0, set()
    for split in SPLITS:
        if split not in lists:
            continue
        text = lists[split].read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            seen += 1
            where = f"{lists[split].name}:{number}"
            parsed = _parse(fields)
            if parsed is None:
                skipped.append(Skip(where, "malformed line (expected 'rgb depth ir label', label 0 or 1)"))
                continue
            paths, label = parsed
            missing = next((p for p in paths if not (root / p).is_file()), None)
            frame_id = PurePosixPath(paths[0]).with_suffix("").as_posix()
            if missing is not None:
                skipped.append(Skip(f"{where} ({missing})", "file missing"))
            elif frame_id in ids:
                skipped.append(Skip(where, "repeats an earlier sample"))
            else:
                ids.add(frame_id)
                meta = FrameMeta(label=label, split=split, video_id=video_id(paths[0]), attack_type="")
                samples.append(Sample(where, frame_id, paths, meta))
    items = [SampleChunk(f"{samples[start].where}+", root, tuple(samples[start:start + CHUNK]), options.size)
             for start in range(0, len(samples), CHUNK)]
    policy = (f"pre-cropped multimodal frames (rgb, depth, ir): each resized to {options.size}x{options.size}, "
              "bicubic, no crop")
    return Plan("samples", policy, items, seen=seen, skipped=skipped, modalities=MODALITIES)
