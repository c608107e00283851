"""The student's data stream: frames of several domains, their labels and domains.

Items carry their index; the trainer fetches the cached teacher targets of a whole batch by index in its
own process (fasd.student_train.targets), so DataLoader workers never hold or copy the targets and the
teacher itself is never loaded here.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from fasd.training.frames import DomainRows
from fasd.training.transforms import StudentTransform


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
