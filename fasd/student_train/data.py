"""The student's data stream: frames of several domains, their labels, domains and cached teacher targets.

Teacher targets come from the store, loaded into memory once and looked up by frame ID; the teacher
itself is never loaded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fasd.data.source import FrameSource
from fasd.student_train.transforms import StudentTransform


@dataclass
class DomainRows:
    """The rows of one domain's frame source used in a stream, with their store rows when distilling."""

    source: FrameSource
    rows: np.ndarray  # source rows
    store_feature: np.ndarray | None = None  # (len(rows), D) float16 teacher features, aligned with rows
    store_logits: np.ndarray | None = None  # (len(rows), 2) float32 teacher logits


class StudentFrames(Dataset):
    """Item i -> (image, label, domain index, teacher feature, teacher logits) over several domains.

    Without teacher targets the last two are empty tensors, so ``--no-teacher`` needs no store.
    """

    def __init__(self, domains: list[DomainRows], transform: StudentTransform):
        self.domains = domains
        self.transform = transform
        self.domain_of = np.concatenate([np.full(len(d.rows), i, dtype=np.int64) for i, d in enumerate(domains)])
        self.offset = np.concatenate([np.arange(len(d.rows)) for d in domains])
        self.has_targets = all(d.store_feature is not None for d in domains)

    def __len__(self) -> int:
        return len(self.domain_of)

    def labels(self) -> np.ndarray:
        return np.concatenate([d.source.table.label[d.rows] for d in self.domains]).astype(np.int64)

    def __getitem__(self, index: int):
        domain = int(self.domain_of[index])
        part, offset = self.domains[domain], int(self.offset[index])
        row = int(part.rows[offset])
        image = self.transform(part.source.read_image(row))
        label = int(part.source.table.label[row])
        if self.has_targets:
            feature = torch.from_numpy(part.store_feature[offset].astype(np.float32))
            logits = torch.from_numpy(part.store_logits[offset].astype(np.float32))
        else:
            feature = logits = torch.empty(0)
        return image, label, domain, feature, logits


class EvalFrames(Dataset):
    """Item i -> (image, i) for scoring one source's rows with the evaluation transform."""

    def __init__(self, source: FrameSource, rows: np.ndarray, transform: StudentTransform):
        self.source, self.rows, self.transform = source, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.transform(self.source.read_image(int(self.rows[index]))), index
