"""The two kinds of work item: an annotated video and a group of still images.

A layout subclasses one of them and supplies only how to read its annotations and where to crop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from fasd.data.ingest.geometry import sample_evenly
from fasd.data.ingest.plan import Batch, FrameMeta, IngestOptions, ItemSkipped
from fasd.data.ingest.readers import decode_frames, read_image


@dataclass(frozen=True)
class AnnotatedVideo(ABC):
    """One video; frames are sampled among those that carry a face annotation."""

    name: str  # relative path shown in the summary
    video: Path
    annotation: Path
    meta: FrameMeta
    options: IngestOptions

    @property
    def units(self) -> int:
        return 1

    @abstractmethod
    def read_annotations(self) -> dict[int, Any]:
        """Face annotation per 0-based frame index, only for frames that have a face."""

    @abstractmethod
    def crop(self, frame: np.ndarray, annotation: Any) -> np.ndarray:
        """The face crop of one decoded frame."""

    def load(self) -> Batch:
        annotations = self.read_annotations()
        if not annotations:
            raise ItemSkipped("no frame with a face annotation")
        wanted = sample_evenly(sorted(annotations), self.options.frames_per_video)
        batch = Batch()
        for index, frame in decode_frames(self.video, wanted):
            batch.add(self.crop(frame, annotations[index]), f"{self.meta.video_id}/{index:04d}", self.meta)
        if not batch.images:
            raise ItemSkipped("no annotated frame in the decoded video")
        return batch


@dataclass(frozen=True)
class ImageGroup(ABC):
    """Still images (a subject's, or a chunk of a folder); a bad image is skipped on its own."""

    name: str
    root: Path
    entries: tuple[tuple[str, FrameMeta], ...]  # (path relative to root, metadata)
    options: IngestOptions

    @property
    def units(self) -> int:
        return len(self.entries)

    @abstractmethod
    def crop(self, path: Path, image: np.ndarray) -> np.ndarray:
        """The face crop of the image at ``path``."""

    def load(self) -> Batch:
        batch = Batch()
        for relative, meta in self.entries:
            path = self.root / relative
            try:
                crop = self.crop(path, read_image(path))
            except ItemSkipped as skip:
                batch.skipped.append(skip.at(relative))
                continue
            batch.add(crop, str(PurePosixPath(relative).with_suffix("")), meta)
        return batch
