"""Recompute random cached frames online and compare with the store (``fasd inspect --verify``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fasd.data.source import FrameSource
from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import done_rows
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import TeacherOptions, load_teacher


def teacher_options(fingerprint: dict, checkpoint: Path, trust_checkpoint: bool) -> TeacherOptions:
    """The options that rebuild the teacher a store's fingerprint describes (from its checkpoint)."""
    return TeacherOptions(checkpoint=Path(checkpoint), trust_checkpoint=trust_checkpoint,
                          normalize=fingerprint.get("normalize", "clip"), prompts=fingerprint.get("prompts"),
                          centroid_mode=fingerprint.get("centroid_mode", "flip"), arch=fingerprint.get("timm_arch"),
                          layers=tuple(fingerprint.get("layers", ())),
                          layer_tap=fingerprint.get("layer_tap", "block"))


def verify_frames(store: TeacherStore, sources: list[FrameSource], checkpoint: Path, count: int,
                  seed: int = 0, trust_checkpoint: bool = False) -> dict:
    """Worst cosine similarity (per target, rows flattened) and largest logit difference over ``count`` random
    done frames per dataset."""
    fingerprint = store.teacher
    loaded = load_teacher(fingerprint["name"], teacher_options(fingerprint, checkpoint, trust_checkpoint))
    if loaded.fingerprint["checkpoint_sha256"] != fingerprint["checkpoint_sha256"]:
        raise FasdError(f"{checkpoint} is not the checkpoint this store was cached with "
                        f"(sha256 {fingerprint['checkpoint_sha256'][:16]}…)")
    rng = np.random.default_rng(seed)
    results = {}
    for source in sources:
        group = store.dataset(source.name)
        done = np.flatnonzero(done_rows(group))
        picked = np.sort(rng.choice(done, size=min(count, len(done)), replace=False))
        cached_logits = group[layout.LOGITS].get_orthogonal_selection((picked,))
        readable = np.isfinite(cached_logits).all(axis=1)
        picked, cached_logits = picked[readable], cached_logits[readable]
        if len(picked) == 0:
            raise FasdError(f"no cached frames to verify in '{source.name}'")
        row_of = {str(f): i for i, f in enumerate(source.table.frame_id)}
        ids = read_strings(group[layout.FRAME_ID])[picked]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise FasdError(f"{len(missing)} cached frame(s) of '{source.name}' are no longer in its source, "
                            f"e.g. {missing[0]}")
        pixels = np.stack([resize_uint8(source.read_image(row_of[i]), loaded.input_size) for i in ids])
        with torch.inference_mode():
            online = loaded.module(normalize_batch(torch.from_numpy(pixels), loaded.mean, loaded.std))
        worst = {}
        for name in loaded.targets:
            if name == layout.LOGITS:
                continue
            cached = torch.from_numpy(group[name].get_orthogonal_selection((picked,)).astype(np.float32))
            cosine = torch.nn.functional.cosine_similarity(online[name].float().reshape(len(picked), -1),
                                                           cached.reshape(len(picked), -1), dim=1)
            worst[name] = float(cosine.min())
        logit_diff = (online[layout.LOGITS].float() - torch.from_numpy(cached_logits)).abs().max()
        results[source.name] = {"frames": int(len(picked)), "worst_cosine": min(worst.values(), default=1.0),
                                "worst_cosine_per_target": worst, "max_logit_diff": float(logit_diff)}
    return results
