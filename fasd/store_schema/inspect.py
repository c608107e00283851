"""Summaries of a teacher store for ``fasd inspect``: completeness, integrity, size and teacher-alone metrics."""

from __future__ import annotations

import numpy as np
import zarr

from fasd.constants import CLASS_NAMES, SPLITS
from fasd.evaluate.metrics import compute_metrics
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import done_rows


def p_live(logits: np.ndarray) -> np.ndarray:
    """P(live) from [spoof, live] logits (a numerically stable two-class softmax)."""
    return 1.0 / (1.0 + np.exp(logits[:, 0].astype(np.float64) - logits[:, 1]))


def _stored_bytes(array: zarr.Array) -> int:
    return int(array.nbytes_stored())


def _counts(values: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(values, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def summarize_dataset(group: zarr.Group) -> dict:
    rows = int(group.attrs[layout.ROWS_ATTR])
    done = group[layout.DONE][:]
    chunk_rows = int(group.attrs[layout.CHUNK_ROWS_ATTR])
    rows_done = done_rows(group, done)
    feature = group[layout.FEATURE][:].astype(np.float32)
    logits = group[layout.LOGITS][:]
    label = group[layout.LABEL][:]
    split = read_strings(group[layout.SPLIT])
    finite = np.isfinite(feature).all(axis=1) & np.isfinite(logits).all(axis=1)
    valid = rows_done & finite
    norms = np.linalg.norm(feature[valid], axis=1)
    target_bytes = _stored_bytes(group[layout.FEATURE]) + _stored_bytes(group[layout.LOGITS])
    total_bytes = sum(_stored_bytes(group[name]) for name in group.array_keys())
    summary = {
        "rows": rows, "chunk_rows": chunk_rows, "chunks_done": int(done.sum()), "chunks": int(len(done)),
        "completed": bool(done.all()), "rows_done": int(rows_done.sum()),
        "labels": {CLASS_NAMES[int(k)]: v for k, v in _counts(label).items()},
        "splits": _counts(split),
        "nan_rows": int((rows_done & ~finite).sum()),
        "unreadable": len(group.attrs.get(layout.UNREADABLE_ATTR, [])),
        "feature_norm": {"min": float(norms.min()), "max": float(norms.max())} if len(norms) else None,
        "bytes_stored": int(total_bytes),
        "target_bytes_per_frame": target_bytes / rows if rows else 0.0,
        "source": dict(group.attrs.get(layout.SOURCE_ATTR, {})),
        "teacher_metrics": {},
    }
    scores = p_live(logits)
    for name in SPLITS:
        mask = valid & (split == name)
        if mask.any():
            m = compute_metrics(label[mask], scores[mask])
            summary["teacher_metrics"][name] = {"n": m["n"], "eer": m["eer"], "acer_at_eer": m["at_eer"]["acer"],
                                                "auc": m["auc"]}
    return summary


def summarize_store(store: TeacherStore, only: str | None = None) -> dict:
    teacher = store.teacher
    names = [only] if only else store.dataset_names()
    return {
        "path": store.path, "schema_version": store.root.attrs[layout.SCHEMA_ATTR],
        "fasd_version": store.root.attrs.get("fasd_version"), "created": store.root.attrs.get("created"),
        "teacher": teacher,
        "datasets": {name: summarize_dataset(store.dataset(name)) for name in names},
    }


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def format_summary(summary: dict) -> str:
    teacher = summary["teacher"]
    lines = [
        f"store       {summary['path']}  (schema v{summary['schema_version']}, fasd {summary['fasd_version']}, "
        f"created {summary['created']})",
        f"teacher     {teacher['name']}  {teacher['arch']}  sha256 {teacher['checkpoint_sha256'][:16]}…",
        f"            centroids {teacher['centroid_mode']}, logit scale {teacher['logit_scale']:.2f}, "
        f"input {teacher['input_size']}px, prompts {len(teacher['prompts']['spoof'])} spoof / "
        f"{len(teacher['prompts']['live'])} live",
    ]
    for name, d in summary["datasets"].items():
        norm = d["feature_norm"]
        norm_text = f"{norm['min']:.4f}..{norm['max']:.4f}" if norm else "n/a"
        lines += [
            "",
            f"[{name}]  rows {d['rows']}  chunks {d['chunks_done']}/{d['chunks']} done "
            f"({'complete' if d['completed'] else 'INCOMPLETE: re-run cache-teacher to resume'})",
            f"  labels  {', '.join(f'{k} {v}' for k, v in d['labels'].items())}",
            f"  splits  {', '.join(f'{k} {v}' for k, v in d['splits'].items())}",
            f"  checks  feature norm {norm_text}, NaN rows {d['nan_rows']}, unreadable {d['unreadable']}",
            f"  size    {d['bytes_stored'] / 1e6:.2f} MB on disk, {d['target_bytes_per_frame']:.0f} B/frame "
            f"for feature + logits",
            "  teacher alone   split      n    EER%  ACER@EER%   AUC%",
        ]
        for split, m in d["teacher_metrics"].items():
            lines.append(f"                  {split:<6}{m['n']:>6} {_pct(m['eer'])}     {_pct(m['acer_at_eer'])} "
                         f"{_pct(m['auc'])}")
    return "\n".join(lines)
