"""Several datasets read as one: the pooled test set of a protocol with several targets (``A,B-to-C,D``).

Paper B's limited-source protocols (CW→PS) report one HTER and AUC over the union of the targets' test
frames, so the targets are concatenated row by row, in the order given. Frame and video IDs are prefixed with
their dataset's name (``C/<id>``) so they stay unique across datasets; labels, splits and attack types are
kept as they are.
"""

from __future__ import annotations

import numpy as np

from fasd.config import POOL
from fasd.constants import MODALITIES
from fasd.data.source import FrameSource, FrameTable

ID_SEPARATOR = "/"


def _prefixed(name: str, ids: np.ndarray) -> np.ndarray:
    return np.array([f"{name}{ID_SEPARATOR}{value}" if value else "" for value in ids.astype(str)], dtype=str)


class PooledFrameSource(FrameSource):
    """The rows of ``parts`` one after another; named ``C+D``."""

    format = "pooled"

    def __init__(self, parts: list[FrameSource]):
        self.parts = list(parts)
        self.name = POOL.join(part.name for part in self.parts)
        self.path = " ".join(str(part.path) for part in self.parts)
        self.modalities = tuple(m for m in MODALITIES if any(m in part.modalities for part in self.parts))
        self._starts = np.cumsum([0, *(len(part) for part in self.parts)])
        tables = [part.table for part in self.parts]
        self.table = FrameTable(
            frame_id=np.concatenate([_prefixed(p.name, t.frame_id) for p, t in zip(self.parts, tables)]),
            label=np.concatenate([t.label for t in tables]),
            split=np.concatenate([t.split.astype(str) for t in tables]),
            video_id=np.concatenate([_prefixed(p.name, t.video_id) for p, t in zip(self.parts, tables)]),
            attack_type=np.concatenate([t.attack_type.astype(str) for t in tables]))

    def _locate(self, row: int) -> tuple[FrameSource, int]:
        index = int(np.searchsorted(self._starts, row, side="right")) - 1
        return self.parts[index], row - int(self._starts[index])

    def read_image(self, row: int) -> np.ndarray:
        part, local = self._locate(row)
        return part.read_image(local)

    def read_modalities(self, row: int) -> dict[str, np.ndarray]:
        part, local = self._locate(row)
        return part.read_modalities(local)
