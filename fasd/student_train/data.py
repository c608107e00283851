"""The student's data stream: frames of several domains, their labels and domains.

Items carry their index; the trainer fetches the cached teacher targets of a whole batch by index in its
own process (fasd.student_train.targets), so DataLoader workers never hold or copy the targets and the
teacher itself is never loaded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from fasd.data.source import FrameSource
from fasd.student_train.transforms import StudentTransform


@dataclass
class DomainRows:
    """The rows of one domain's frame source used in a stream."""

    source: FrameSource
    rows: np.ndarray  # source rows


class StudentFrames(Dataset):
    """Item i -> (image, label, domain index, i) over several domains; ``domain_of[i]`` and ``offset[i]``
    say which domain's which row item i is."""

    def __init__(self, domains: list[DomainRows], transform: StudentTransform):
        self.domains = domains
        self.transform = transform
        self.domain_of = np.concatenate([np.full(len(d.rows), i, dtype=np.int64) for i, d in enumerate(domains)])
        self.offset = np.concatenate([np.arange(len(d.rows)) for d in domains])

    def __len__(self) -> int:
        return len(self.domain_of)

    def labels(self) -> np.ndarray:
        return np.concatenate([d.source.table.label[d.rows] for d in self.domains]).astype(np.int64)

    def __getitem__(self, index: int):
        domain = int(self.domain_of[index])
        part, offset = self.domains[domain], int(self.offset[index])
        row = int(part.rows[offset])
        image = self.transform(part.source.read_image(row))
        return image, int(part.source.table.label[row]), domain, index


class EvalFrames(Dataset):
    """Item i -> (image, i) for scoring one source's rows with the evaluation transform."""

    def __init__(self, source: FrameSource, rows: np.ndarray, transform: StudentTransform):
        self.source, self.rows, self.transform = source, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.transform(self.source.read_image(int(self.rows[index]))), index
