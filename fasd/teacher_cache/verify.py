"""Recompute random cached frames online and compare with the store (``fasd inspect --verify``).

A store with views also gets one random stored view of each picked frame recomputed: its parameters are drawn
again from (view seed, frame ID) and must equal the stored ones, and the teacher's output on that view
rendered from them must match ``views/<target>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fasd.constants import MODALITIES
from fasd.data.source import FrameSource
from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.reader import damaged_store
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import done_rows
from fasd.teacher_cache.job import forward_modalities, multimodal
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, contract_options, load_teacher
from fasd.views import apply_view, draw_views, impossible_views


def teacher_options(fingerprint: dict, checkpoint: Path, trust_checkpoint: bool) -> TeacherOptions:
    """The options that rebuild the teacher a store's fingerprint describes (from its checkpoint)."""
    return TeacherOptions(checkpoint=Path(checkpoint), trust_checkpoint=trust_checkpoint,
                          normalize=fingerprint.get("normalize", "clip"), prompts=fingerprint.get("prompts"),
                          centroid_mode=fingerprint.get("centroid_mode", "flip"), arch=fingerprint.get("timm_arch"),
                          layers=tuple(fingerprint.get("layers", ())),
                          layer_tap=fingerprint.get("layer_tap", "block"), **contract_options(fingerprint))


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
        readable = np.isfinite(group[layout.LOGITS].get_orthogonal_selection((picked,))).all(axis=1)
        picked = picked[readable]
        if len(picked) == 0:
            raise FasdError(f"no cached frames to verify in '{source.name}'")
        row_of = {str(f): i for i, f in enumerate(source.table.frame_id)}
        ids = read_strings(group[layout.FRAME_ID])[picked]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise FasdError(f"{len(missing)} cached frame(s) of '{source.name}' are no longer in its source, "
                            f"e.g. {missing[0]}")
        cached = {name: group[name].get_orthogonal_selection((picked,)) for name in loaded.targets}
        result = {"frames": int(len(picked))}
        if multimodal(loaded):  # every modality through the cache job's own multimodal forward (no views)
            frames = [source.read_modalities(row_of[i]) for i in ids]
            pixels = np.stack([[resize_uint8(f[m], loaded.input_size) for m in MODALITIES] for f in frames])
            online = forward_modalities(loaded.module, loaded, torch.from_numpy(pixels),
                                         torch.from_numpy(np.stack([f["mask"] for f in frames])),
                                         torch.device("cpu"), len(frames))
            worst, logit_diff = _compare_outputs(online, cached)
            results[source.name] = {**result, "worst_cosine": min(worst.values(), default=1.0),
                                    "worst_cosine_per_target": worst, "max_logit_diff": logit_diff}
            continue
        images = [source.read_image(row_of[i]) for i in ids]
        pixels = np.stack([resize_uint8(image, loaded.input_size) for image in images])
        worst, logit_diff = _compare(loaded, pixels, cached)
        if store.views is not None:
            views = rng.integers(store.views.count, size=len(picked))
            stored = group[layout.VIEW_PARAMS].get_orthogonal_selection((picked,))[np.arange(len(picked)), views]
            if impossible_views(stored).any():
                raise damaged_store(store.path, source.name, f"'{layout.VIEW_PARAMS}' holds view parameters no "
                                                             f"draw could give")
            drawn = np.stack([draw_views(i, store.views)[v] for i, v in zip(ids, views)])
            view_pixels = np.stack([apply_view(image, p, loaded.input_size) for image, p in zip(images, stored)])
            if store.views.mix.active:  # mixed with their stored partners (cache-teacher --mix)
                from fasd.teacher_cache.mixed_views import verify_mixed

                view_pixels, result["view_mix_match"] = verify_mixed(group, store.views, source, picked, views,
                                                                     view_pixels, loaded.input_size)
            cached = {layout.view_array(name): group[layout.view_array(name)].get_orthogonal_selection(
                (picked,))[np.arange(len(picked)), views] for name in loaded.targets}
            view_worst, view_diff = _compare(loaded, view_pixels, cached)
            worst |= view_worst
            logit_diff = max(logit_diff, view_diff)
            result["view_params_match"] = bool(np.array_equal(stored, drawn))
        results[source.name] = {**result, "worst_cosine": min(worst.values(), default=1.0),
                                "worst_cosine_per_target": worst, "max_logit_diff": logit_diff}
    return results


def _compare(loaded: LoadedTeacher, pixels: np.ndarray, cached: dict[str, np.ndarray]) -> tuple[dict, float]:
    """The teacher run on ``pixels`` (n, S, S, 3) uint8 against ``cached`` {array name: (n, *shape)} whose names
    end in the teacher's target names: worst cosine per non-logit target, largest logit difference."""
    with torch.inference_mode():
        online = loaded.module(normalize_batch(torch.from_numpy(pixels), loaded.mean, loaded.std))
    return _compare_outputs(online, cached)


def _compare_outputs(online: dict, cached: dict[str, np.ndarray]) -> tuple[dict, float]:
    """The teacher's outputs {target: (n, *shape)} against ``cached`` (see _compare)."""
    worst, logit_diff = {}, 0.0
    for array_name, values in cached.items():
        name = array_name.rsplit("/", 1)[-1]
        count = len(values)
        values = torch.from_numpy(values.astype(np.float32)).reshape(count, -1)
        mine = torch.as_tensor(online[name]).float().reshape(count, -1)
        if name == layout.LOGITS:
            logit_diff = float((mine - values).abs().max())
        else:
            worst[array_name] = float(torch.nn.functional.cosine_similarity(mine, values, dim=1).min())
    return worst, logit_diff
