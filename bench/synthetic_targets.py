"""Fill a teacher store with random targets (no teacher run) for benchmarks of the student side.

The cost of looking up or distilling from cached targets does not depend on which teacher produced them,
only on their shapes: by default 512-d fp16 unit features (ViT-B/16's) and two logits per frame.
"""

from __future__ import annotations

import numpy as np

from fasd.data.source import FrameSource
from fasd.store_schema import layout, writer
from fasd.store_schema.specs import TargetSpec, specs_to_json, v1_specs
from fasd.store_schema.store import create_or_check_store

DIM = 512


def write_random_targets(path: str, sources: list[FrameSource], teacher: dict | None = None,
                         chunk_rows: int = 4096, seed: int = 0) -> None:
    """Cache every frame of ``sources`` into the store at ``path`` with random targets of the shapes the teacher
    fingerprint ``teacher`` declares (default: 512-d features + logits; features unit norm, logits 100·f·cᵀ
    when both exist)."""
    teacher = teacher or {"name": "synthetic", "arch": "random", "checkpoint_sha256": "none", "input_size": 224,
                          "targets": specs_to_json(v1_specs(DIM))}
    targets = {name: TargetSpec.from_json(spec) for name, spec in teacher["targets"].items()}
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(2, targets[layout.FEATURE].shape[0] if layout.FEATURE in targets else DIM))
    centroids = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
    store = create_or_check_store(path, teacher, {"centroids": centroids}, overwrite=False)
    for source in sources:
        table = source.table
        fingerprint = {**source.fingerprint(), "splits": ["train", "val", "test"]}
        columns = writer.frame_columns(table.frame_id, table.label, table.split, table.video_id, table.attack_type)
        group = writer.prepare_dataset(store, source.name, fingerprint, str(source.path), columns, chunk_rows,
                                       overwrite=False)
        for chunk in writer.pending_chunks(group):
            n = min(chunk_rows, len(table) - chunk * chunk_rows)
            values = {name: rng.standard_normal((n, *spec.shape), dtype=np.float32) for name, spec in targets.items()}
            if layout.FEATURE in values:
                values[layout.FEATURE] /= np.linalg.norm(values[layout.FEATURE], axis=1, keepdims=True)
                values[layout.LOGITS] = 100 * values[layout.FEATURE] @ centroids.T
            writer.write_chunk(group, chunk, values)
        writer.finalize(group)
