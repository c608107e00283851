"""``fasd ingest faces``: a user's own photos and videos of faces -> a pack of detected face crops.

Layout: ``<root>/<train|val|test>/<live|spoof>[/<attack_type>]/<file>``. Under ``spoof/`` the first folder
names the attack type (files directly under ``spoof/`` get ``unknown``); any deeper folders only group files.
Photos (.jpg, .png, ...) are turned upright by their EXIF orientation tag, as phone photos need; each is its own
``video_id``. A video (.mp4, .mov, ...) is one ``video_id``; ``--frames-per-video`` frames are sampled evenly
(default: every frame). Every frame goes through one detector (``--detector``) and one crop policy
(fasd.faces.policy: the largest face, ``--crop-scale`` x its box, ``--size`` px), and the pack records that
policy so ``fasd predict`` crops camera frames the same way. Frames without a face and unreadable files are
left out and named in the summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from fasd.constants import CLASS_NAMES, LABEL_LIVE, LABEL_SPOOF, SPLITS
from fasd.data.image_io import decode_image
from fasd.data.ingest.geometry import sample_evenly
from fasd.data.ingest.plan import Batch, FrameMeta, IngestOptions, ItemSkipped, Plan, Skip, register_layout
from fasd.data.ingest.readers import decode_frames, require_av
from fasd.data.source import UnreadableFrame
from fasd.errors import FasdError
from fasd.faces.detectors import DETECTORS, find_face, load_detector
from fasd.faces.policy import DEFAULT_CROP_SCALE, DEFAULT_DETECTOR, CropPolicy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
UNKNOWN_ATTACK = "unknown"
CHUNK = 64  # photos per work item
NO_FACE = "no face found"
LAYOUT = ("a folder of <train|val|test>/<live|spoof>[/<attack_type>]/ photos (" + ", ".join(IMAGE_SUFFIXES)
          + ") and videos (" + ", ".join(VIDEO_SUFFIXES) + ")")


def crop_policy(options: IngestOptions) -> CropPolicy:
    """The policy ``options`` ask for; eyes are levelled whenever the detector gives eye landmarks."""
    detector = options.detector or DEFAULT_DETECTOR
    return CropPolicy(detector=detector, scale=DEFAULT_CROP_SCALE if options.crop_scale is None else options.crop_scale,
                      size=options.size, align_eyes=DETECTORS.get(detector).landmarks)


def read_upright(path: Path) -> np.ndarray:
    """The photo at ``path`` as upright RGB (its EXIF orientation applied); ItemSkipped when unreadable."""
    try:
        return decode_image(path, upright=True)
    except UnreadableFrame as exc:
        raise ItemSkipped("unreadable image", str(exc)) from None


def video_frames(path: Path, count: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """``count`` RGB frames of the video at ``path`` spread evenly over it (all when None), with their 0-based
    indices; ItemSkipped when the file is not a readable video."""
    av = require_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ItemSkipped("unreadable video", "no video stream")
            stream = container.streams.video[0]
            total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as exc:
        raise ItemSkipped("unreadable video", str(exc)) from None
    yield from decode_frames(path, sample_evenly(range(total), count))


@dataclass(frozen=True)
class _Detecting:
    options: IngestOptions

    def policy(self) -> CropPolicy:
        return crop_policy(self.options)

    def crop(self, image: np.ndarray) -> np.ndarray | None:
        return find_face(image, load_detector(self.policy().detector, self.options.detector_weights),
                         self.policy()).crop


@dataclass(frozen=True)
class Photos(_Detecting):
    """Photos, each its own video_id; an unreadable one or one without a face is skipped on its own."""

    name: str
    root: Path
    entries: tuple[tuple[str, FrameMeta], ...]  # (path relative to root, metadata)

    @property
    def units(self) -> int:
        return len(self.entries)

    def load(self) -> Batch:
        batch = Batch()
        for relative, meta in self.entries:
            try:
                crop = self.crop(read_upright(self.root / relative))
            except ItemSkipped as skip:
                batch.skipped.append(skip.at(relative))
                continue
            if crop is None:
                batch.skipped.append(Skip(relative, NO_FACE))
            else:
                batch.add(crop, relative, meta)
        return batch


@dataclass(frozen=True)
class Video(_Detecting):
    """One video, one video_id; frames without a face are skipped, a video with none is skipped whole."""

    name: str
    path: Path
    meta: FrameMeta

    @property
    def units(self) -> int:
        return 1

    def load(self) -> Batch:
        batch, faceless = Batch(), []
        for index, frame in video_frames(self.path, self.options.frames_per_video):
            crop = self.crop(frame)
            if crop is None:
                faceless.append(Skip(f"{self.name} frame {index}", "video frame without a face"))
            else:
                batch.add(crop, f"{self.name}/{index:05d}", self.meta)
        if not batch.images:
            raise ItemSkipped("no face in any frame" if faceless else "unreadable video", "no decodable frame")
        batch.skipped += faceless
        return batch


def _meta(relative: PurePosixPath) -> FrameMeta | str:
    """The frame metadata a file's place in the layout gives, or why it has none."""
    parts = relative.parts
    if len(parts) < 3 or parts[0] not in SPLITS or parts[1] not in CLASS_NAMES:
        return f"not under <{'|'.join(SPLITS)}>/<{'|'.join(CLASS_NAMES)}>/"
    live = parts[1] == CLASS_NAMES[LABEL_LIVE]
    attack = "" if live else (parts[2] if len(parts) > 3 else UNKNOWN_ATTACK)
    return FrameMeta(label=LABEL_LIVE if live else LABEL_SPOOF, split=parts[0], video_id=relative.as_posix(),
                     attack_type=attack)


@register_layout("faces", video=True, options=("detector", "detector_weights", "crop_scale"))
def plan(root: Path, options: IngestOptions) -> Plan:
    policy = crop_policy(options)
    load_detector(policy.detector, options.detector_weights)  # a wrong weights file fails here, before any work
    if not any((root / split).is_dir() for split in SPLITS):
        raise FasdError(f"{root} is not {LAYOUT}")
    photos: dict[PurePosixPath, list[tuple[str, FrameMeta]]] = {}
    items, skipped, seen = [], [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            continue  # notes, sidecar files: not media
        seen += 1
        meta = _meta(relative)
        if isinstance(meta, str):
            skipped.append(Skip(str(relative), meta))
        elif suffix in VIDEO_SUFFIXES:
            items.append(Video(options, str(relative), path, meta))
        else:
            photos.setdefault(relative.parent, []).append((str(relative), meta))
    for folder, entries in photos.items():
        items += [Photos(options, f"{folder}[{start}:]", root, tuple(entries[start:start + CHUNK]))
                  for start in range(0, len(entries), CHUNK)]
    return Plan("files", policy, items, seen=seen, skipped=skipped)
