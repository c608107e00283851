"""Fill a teacher store with random unit features (no teacher run) for benchmarks of the student side.

The cost of looking up or distilling from cached targets does not depend on which teacher produced them,
only on their shape: 512-d fp16 features (ViT-B/16's) and two logits per frame.
"""

from __future__ import annotations

import numpy as np

from fasd.data.source import FrameSource
from fasd.store_schema import writer
from fasd.store_schema.specs import specs_to_json, v1_specs
from fasd.store_schema.store import create_or_check_store

DIM = 512
TEACHER = {"name": "synthetic", "arch": "random", "checkpoint_sha256": "none", "input_size": 224,
           "targets": specs_to_json(v1_specs(DIM))}


def write_random_targets(path: str, sources: list[FrameSource], chunk_rows: int = 4096, seed: int = 0) -> None:
    """Cache every frame of ``sources`` into the store at ``path`` with random unit features."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(2, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    store = create_or_check_store(path, TEACHER, {"centroids": centroids}, overwrite=False)
    for source in sources:
        table = source.table
        fingerprint = {**source.fingerprint(), "splits": ["train", "val", "test"]}
        columns = writer.frame_columns(table.frame_id, table.label, table.split, table.video_id, table.attack_type)
        group = writer.prepare_dataset(store, source.name, fingerprint, str(source.path), columns, chunk_rows,
                                       overwrite=False)
        for chunk in writer.pending_chunks(group):
            n = min(chunk_rows, len(table) - chunk * chunk_rows)
            feature = rng.standard_normal((n, DIM), dtype=np.float32)
            feature /= np.linalg.norm(feature, axis=1, keepdims=True)
            writer.write_chunk(group, chunk, {"feature": feature, "logits": 100 * feature @ centroids.T})
        writer.finalize(group)
