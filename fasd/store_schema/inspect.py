"""Summaries of a teacher store for ``fasd inspect``: completeness, integrity, targets and their size.

Teacher-alone metrics on the cached logits are added by fasd.evaluate.store_metrics (the store does not
depend on evaluation).
"""

from __future__ import annotations

import numpy as np
import zarr

from fasd.constants import CLASS_NAMES, NO_NORMALIZATION
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import done_rows, valid_rows
from fasd.store_schema.check import missing_metadata


def _stored_bytes(array: zarr.Array) -> int:
    return int(array.nbytes_stored())


def _counts(values: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(values, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def summarize_targets(specs: dict[str, TargetSpec]) -> dict:
    """Every target's per-frame shape, dtype and bytes (uncompressed), as inspect lists them."""
    return {name: {**spec.to_json(), "bytes_per_frame": spec.bytes_per_frame} for name, spec in specs.items()}


def summarize_dataset(group: zarr.Group, specs: dict[str, TargetSpec]) -> dict:
    rows = int(group.attrs[layout.ROWS_ATTR])
    done = group[layout.DONE][:]
    chunk_rows = int(group.attrs[layout.CHUNK_ROWS_ATTR])
    rows_done = done_rows(group, done)
    label = group[layout.LABEL][:]
    split = read_strings(group[layout.SPLIT])
    feature_norm, damaged = None, None
    try:
        valid = valid_rows(group, done)
        if layout.FEATURE in specs and valid.any():
            norms = np.linalg.norm(group[layout.FEATURE][:][valid].astype(np.float32), axis=1)
            feature_norm = {"min": float(norms.min()), "max": float(norms.max())}
    except Exception as exc:  # corrupt chunk bytes: report, let --check name the chunks
        valid, damaged = np.zeros(rows, dtype=bool), f"{type(exc).__name__}: {str(exc)[:80]}"
    gone = missing_metadata(group)
    if gone and damaged is None:  # a deleted label chunk reads as spoofs: the counts below would be wrong
        chunk, why = min(gone.items())
        damaged = f"{len(gone)} metadata chunk(s) missing, e.g. chunk {chunk}: {why}; label and split counts are wrong"
    target_bytes = sum(_stored_bytes(group[name]) for name in specs)
    total_bytes = sum(_stored_bytes(group[name]) for name in group.array_keys())
    return {
        "rows": rows, "chunk_rows": chunk_rows, "chunks_done": int(done.sum()), "chunks": int(len(done)),
        "completed": bool(done.all()), "rows_done": int(rows_done.sum()),
        "labels": {CLASS_NAMES[int(k)]: v for k, v in _counts(label).items()},
        "splits": _counts(split),
        "nan_rows": int((rows_done & ~valid).sum()),
        "unreadable": len(group.attrs.get(layout.UNREADABLE_ATTR, [])),
        "feature_norm": feature_norm,
        "bytes_stored": int(total_bytes),
        "target_bytes_per_frame": target_bytes / rows if rows else 0.0,
        "source": dict(group.attrs.get(layout.SOURCE_ATTR, {})),
        "source_path": group.attrs.get(layout.SOURCE_PATH_ATTR),
        "damaged": damaged,
    }


def summarize_store(store: TeacherStore, only: str | None = None) -> dict:
    teacher = store.teacher
    names = [only] if only else store.dataset_names()
    summary = {
        "path": store.path, "schema_version": store.root.attrs[layout.SCHEMA_ATTR],
        "fasd_version": store.root.attrs.get("fasd_version"), "created": store.root.attrs.get("created"),
        "teacher": teacher, "targets": summarize_targets(store.arrays),
        "datasets": {name: summarize_dataset(store.dataset(name), store.arrays) for name in names},
    }
    if store.views is not None:
        single = sum(spec.bytes_per_frame for spec in store.targets.values())
        summary["views"] = {**store.views.to_json(), "single_view_bytes_per_frame": single,
                            "view_bytes_per_frame": sum(spec.bytes_per_frame for name, spec in store.arrays.items()
                                                        if name.startswith(layout.VIEWS_GROUP + "/"))}
    return summary


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def _teacher_lines(teacher: dict) -> list[str]:
    """What the fingerprint says about the teacher: kind-specific keys are shown when present."""
    lines = [f"teacher     {teacher['name']}  {teacher['arch']}  sha256 {teacher['checkpoint_sha256'][:16]}…"]
    details = [f"input {teacher['input_size']}px"]
    if "normalize" in teacher:
        details.append("no mean/std (raw pixels)" if teacher["normalize"] == NO_NORMALIZATION else
                       f"{teacher['normalize']} mean/std")
    if "centroid_mode" in teacher:
        details.append(f"centroids {teacher['centroid_mode']}, logit scale {teacher['logit_scale']:.2f}, prompts "
                       f"{len(teacher['prompts']['spoof'])} spoof / {len(teacher['prompts']['live'])} live")
    if teacher.get("layers"):
        details.append(f"layers {','.join(map(str, teacher['layers']))} (tap {teacher['layer_tap']})")
    contract = teacher.get("contract")
    return lines + [f"            {', '.join(details)}"] + ([_contract_line(contract)] if contract else [])


def _contract_line(contract: dict) -> str:
    """The input contract and output mapping of a teacher that does not state its own (--teacher onnx)."""
    live = ",".join(map(str, contract["live_classes"]))
    feature = f"; feature = output {contract['feature_output']}" if contract.get("feature_output") else ""
    return (f"contract    input {contract['input']} {contract['layout']} {contract['input_size']}px "
            f"{contract['channel_order'].upper()} 0..{contract['pixel_range']}; output {contract['logits_output']}: "
            f"{contract['classes']} class logit(s), live class(es) {live}{feature}")


def format_summary(summary: dict) -> str:
    targets = summary["targets"]
    per_frame = sum(t["bytes_per_frame"] for t in targets.values())
    lines = [
        f"store       {summary['path']}  (schema v{summary['schema_version']}, fasd {summary['fasd_version']}, "
        f"created {summary['created']})",
        *_teacher_lines(summary["teacher"]),
        f"targets     {per_frame} B/frame uncompressed:",
        *(f"            {name:<12} {'x'.join(map(str, t['shape'])):<10} {t['dtype']}  {t['bytes_per_frame']} B/frame"
          for name, t in targets.items()),
    ]
    views = summary.get("views")
    if views:
        lines.append(f"views       K={views['count']} per frame (seed {views['seed']}, jitter "
                     f"{'on' if views['jitter'] else 'off'}): {views['view_bytes_per_frame']} B/frame for the views "
                     f"({views['view_bytes_per_frame'] / max(views['single_view_bytes_per_frame'], 1):.2f} x the "
                     f"{views['single_view_bytes_per_frame']} B of one view), uncompressed")
    for name, d in summary["datasets"].items():
        norm = d["feature_norm"]
        norm_text = f"feature norm {norm['min']:.4f}..{norm['max']:.4f}, " if norm else ""
        lines += [
            "",
            f"[{name}]  rows {d['rows']}  chunks {d['chunks_done']}/{d['chunks']} done "
            f"({'complete' if d['completed'] else 'INCOMPLETE: re-run cache-teacher to resume'})",
            f"  labels  {', '.join(f'{k} {v}' for k, v in d['labels'].items())}",
            f"  splits  {', '.join(f'{k} {v}' for k, v in d['splits'].items())}",
            f"  checks  {norm_text}NaN rows {d['nan_rows']}, unreadable {d['unreadable']}"
            + (f"; DAMAGED ({d['damaged']}): run `fasd inspect --check`" if d.get("damaged") else ""),
            f"  size    {d['bytes_stored'] / 1e6:.2f} MB on disk, {d['target_bytes_per_frame']:.0f} B/frame "
            f"for all targets (compressed)",
        ]
        if d.get("teacher_metrics"):
            lines.append("  teacher alone   split      n    EER%  ACER@EER%   AUC%")
            for split, m in d["teacher_metrics"].items():
                lines.append(f"                  {split:<6}{m['n']:>6} {_pct(m['eer'])}     "
                             f"{_pct(m['acer_at_eer'])} {_pct(m['auc'])}")
    return "\n".join(lines)
