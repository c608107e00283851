"""The student's data stream: frames of several domains, their labels and domains.

Items carry their index; the trainer fetches the cached teacher targets of a whole batch by index in its
own process (fasd.student_train.targets), so DataLoader workers never hold or copy the targets and the
teacher itself is never loaded here.

A frame that cannot be decoded is a blank item with ``readable`` False (fasd.training.frames.read_or_blank);
the trainer drops it from its batch.

With stored views (``fasd train --views``) a draw is a pair (item, view): ViewSampler picks one of the K
views of each drawn frame, the stream replays that view's crop, flip and jitter at the student's size
(fasd.views.apply_view) and the item carries [index, view], so the trainer takes that view's targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
from torch.utils.data import Dataset, Sampler

from fasd.data.source import FrameSource
from fasd.student_train.mixed_replay import PartnerViews, view_soft_labels
from fasd.training.frames import BLANK_IMAGE, DomainRows, read_or_blank
from fasd.training.transforms import StudentTransform, ViewReplay


class StudentFrames(Dataset):
    """Item i -> (image, label, domain index, i, readable) over several domains; ``domain_of[i]`` and
    ``offset[i]`` say which domain's which row item i is.

    ``replay``: this stream replays stored views; once ``set_views`` gave it the view parameters, item
    (i, v) -> (view v of frame i, label, domain, [i, v], readable).
    """

    blank = BLANK_IMAGE  # what ``read`` stands in for an unreadable frame

    def __init__(self, domains: list[DomainRows], transform: StudentTransform, replay: ViewReplay | None = None):
        self.domains = domains
        self.transform = transform
        self.replay = replay
        self.view_params: list[np.ndarray] | None = None  # per domain, (rows, K, P) aligned with its rows
        self.partners: list[PartnerViews] | None = None  # per domain, with views cached with --mix
        self.domain_of = np.concatenate([np.full(len(d.rows), i, dtype=np.int64) for i, d in enumerate(domains)])
        self.offset = np.concatenate([np.arange(len(d.rows)) for d in domains])

    def __len__(self) -> int:
        return len(self.domain_of)

    def labels(self) -> np.ndarray:
        return np.concatenate([d.source.table.label[d.rows] for d in self.domains]).astype(np.int64)

    def read(self, source: FrameSource, row: int):
        """What the transform takes: the RGB image (multimodal streams read every modality)."""
        return source.read_image(row)

    def frame_name(self, index: int) -> str:
        """Item ``index`` as a message names it: dataset:frame ID."""
        part = self.domains[int(self.domain_of[index])]
        return f"{part.source.name}:{part.source.table.frame_id[part.rows[self.offset[index]]]}"

    def set_views(self, params: list[np.ndarray], partners: list[PartnerViews] | None = None) -> None:
        """The stored view parameters of every domain's rows (what the stream replays), and their mixing
        partners when the store's views are mixed (cache-teacher --mix)."""
        self.view_params, self.partners = params, partners

    def soft_labels(self, items: np.ndarray, labels: np.ndarray, smoothing: float) -> np.ndarray | None:
        """(n, 2) soft labels of the mixed stored views ``items`` (n, 2); None when the views are not mixed."""
        if self.partners is None:
            return None
        return view_soft_labels(self.partners, self.domain_of, self.offset, items, labels, smoothing)

    @property
    def view_count(self) -> int:
        """K stored views per frame to draw from; 0 when the stream does not replay views."""
        return 0 if self.view_params is None else int(self.view_params[0].shape[1])

    def __getitem__(self, key: int | tuple[int, int]):
        index, view = key if isinstance(key, tuple) else (key, None)
        domain = int(self.domain_of[index])
        part, offset = self.domains[domain], int(self.offset[index])
        row = int(part.rows[offset])
        label = int(part.source.table.label[row])
        if view is None:
            frame, readable = read_or_blank(partial(self.read, part.source), row, self.blank)
            return self.transform(frame), label, domain, index, readable
        image, readable = read_or_blank(part.source.read_image, row, BLANK_IMAGE)
        partner = self.partners[domain].partner(offset, view) if self.partners is not None else None
        if partner is not None:  # the partner frame as the cache job read it (zeros when it cannot be decoded)
            partner_row, partner_params, mix = partner
            partner_image, _ = read_or_blank(part.source.read_image, partner_row, BLANK_IMAGE)
            partner = (partner_image, partner_params, mix)
        return (self.replay(image, self.view_params[domain][offset, view], partner), label, domain,
                np.array([index, view], dtype=np.int64), readable)


class ViewSampler(Sampler[tuple[int, int]]):
    """A sampler's draws, each paired with one of ``views`` stored views, uniformly.

    The views come from their own generator seeded with the epoch's seed, so the frames drawn (and their
    order) are the ones a run without views draws.
    """

    def __init__(self, base: Sampler[int], views: int, seed: int):
        self.base, self.views, self.seed = base, views, seed

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.views])
        for index in self.base:
            yield int(index), int(rng.integers(self.views))
