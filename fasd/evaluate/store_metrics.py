"""Teacher-alone metrics on a store's cached logits (``fasd inspect``, the demo's teacher row)."""

from __future__ import annotations

import numpy as np

from fasd.constants import SPLITS
from fasd.evaluate.metrics import compute_metrics
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import valid_rows


def p_live(logits: np.ndarray) -> np.ndarray:
    """P(live) from [spoof, live] logits (a numerically stable two-class softmax)."""
    return 1.0 / (1.0 + np.exp(logits[:, 0].astype(np.float64) - logits[:, 1]))


def teacher_metrics(store: TeacherStore, name: str) -> dict:
    """Per split: frames, EER, ACER at the test EER threshold and AUC of the teacher's cached logits."""
    group = store.dataset(name)
    valid = valid_rows(group)
    label = group[layout.LABEL][:]
    split = read_strings(group[layout.SPLIT])
    scores = p_live(group[layout.LOGITS][:])
    summary = {}
    for split_name in SPLITS:
        mask = valid & (split == split_name)
        if mask.any():
            m = compute_metrics(label[mask], scores[mask])
            summary[split_name] = {"n": m["n"], "eer": m["eer"], "acer_at_eer": m["at_eer"]["acer"],
                                   "auc": m["auc"]}
    return summary
