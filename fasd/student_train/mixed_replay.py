"""The student's side of mixed views (fasd.mixing): each stored view's partner frame, the partner's view, the
mixing parameters and the partner's label, aligned with a domain's rows, and the mixed views' soft labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.data.source import FrameSource
from fasd.errors import FasdError
from fasd.mixing import mixed_soft_labels
from fasd.store_schema.reader import DatasetTargets


@dataclass
class PartnerViews:
    """One domain's mixing, aligned with its rows: per view k, the partner's source row, its view k's
    parameters, the mixing row (fasd.mixing.MIX_COLUMNS) and its label."""

    rows: np.ndarray  # (n, K) int64
    params: np.ndarray  # (n, K, P)
    mix: np.ndarray  # (n, K, MIX)
    labels: np.ndarray  # (n, K) int64

    def partner(self, offset: int, view: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(partner's source row, its view parameters, the mixing row) of view ``view`` of row ``offset``; None
        when that view is not mixed (λ = 1)."""
        mix = self.mix[offset, view]
        return None if mix[1] >= 1.0 else (int(self.rows[offset, view]), self.params[offset, view], mix)


def partner_views(source: FrameSource, targets: DatasetTargets, store_rows: np.ndarray, store_path: str
                  ) -> PartnerViews:
    """The mixing of the views of store rows ``store_rows`` of ``source``'s dataset, partners resolved to
    ``source``'s rows by frame ID."""
    mix = targets.view_mix[store_rows]
    partner_store = mix[..., 0].astype(np.int64)
    row_of = {str(f): i for i, f in enumerate(source.table.frame_id)}
    rows = np.array([row_of.get(str(f), -1) for f in targets.frame_id[partner_store.ravel()]],
                    dtype=np.int64).reshape(partner_store.shape)
    if (rows < 0).any():
        missing = targets.frame_id[partner_store.ravel()[np.argmin(rows.ravel())]]
        raise FasdError(f"{store_path}: the mixing partner {missing} of a stored view of '{source.name}' is not in "
                        f"the dataset any more; re-cache it with `fasd cache-teacher --dataset {source.name} "
                        f"--overwrite ...`")
    params = targets.view_params[partner_store, np.arange(partner_store.shape[1])[None, :]]
    return PartnerViews(rows, params, mix, source.table.label[rows].astype(np.int64))


def view_soft_labels(partners: list[PartnerViews], domain_of: np.ndarray, offset: np.ndarray, items: np.ndarray,
                     labels: np.ndarray, smoothing: float) -> np.ndarray:
    """(n, 2) soft labels of (item, view) pairs ``items`` (n, 2): each view's λ of its own label and 1 − λ of
    its partner's, label-smoothed (timm's mixup_target)."""
    index, view = items[:, 0], items[:, 1]
    lam = np.empty(len(items), dtype=np.float64)
    partner_labels = np.empty(len(items), dtype=np.int64)
    for i, (d, o, v) in enumerate(zip(domain_of[index], offset[index], view)):
        lam[i] = partners[d].mix[o, v, 1]
        partner_labels[i] = partners[d].labels[o, v]
    return mixed_soft_labels(labels, partner_labels, lam, smoothing)
