"""Phase 1: the caching job against the real store, with real open_clip teachers."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import zarr
from PIL import Image

from fasd.config import load_registry
from fasd.constants import FLIP_LIVE_PROMPTS, FLIP_SPOOF_PROMPTS, IMAGENET_MEAN, IMAGENET_STD
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.store_schema.store import open_store, read_strings
from fasd.teacher_cache.arch import openai_state_dict, random_clip
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher

from helpers import interrupt_on_call, save_flip_checkpoint


def _source(config, name="alpha"):
    return open_source(load_registry(config).dataset(name))


def _flip_reference(model: open_clip.model.CLIP, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """FLIP's evaluation math, computed independently: open_clip's own eval transform with FLIP's ImageNet
    statistics, encode_image, per-class mean of raw text embeddings, normalise, exp(logit_scale) * cosine, class
    order [spoof, real]."""
    preprocess = open_clip.image_transform(224, is_train=False, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.fromarray(img)) for img in images])
        feats = model.encode_image(batch)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        centroids = []
        for prompts in (FLIP_SPOOF_PROMPTS, FLIP_LIVE_PROMPTS):
            mean = model.encode_text(tokenizer(list(prompts))).mean(dim=0)
            centroids.append(mean / mean.norm())
        logits = model.logit_scale.exp() * feats @ torch.stack(centroids).t()
    return feats.numpy(), logits.numpy()


@pytest.mark.slow
def test_vit_b16_flip_checkpoint_matches_flip_evaluation(tmp_path, synth_config):
    model = random_clip("ViT-B-16", seed=1).float()
    state = openai_state_dict(model)
    checkpoint = save_flip_checkpoint(state, tmp_path / "flip_vitb16.pth.tar")
    # FLIP stores fp16 weights: the reference uses the same fp16-rounded weights.
    model.load_state_dict({k: v.half().float() for k, v in state.items()})
    source = _source(synth_config)
    loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
    assert loaded.fingerprint["arch"] == "ViT-12L-768W/16@224-D512"
    store_path = str(tmp_path / "teacher.zarr")
    run_cache(source, loaded, store_path, CacheOptions(splits=("test",), batch_size=8, chunk_rows=8,
                                                        progress=False))
    group = open_store(store_path).dataset("alpha")
    frame_ids = read_strings(group["frame_id"])[:6]
    rows = [int(np.flatnonzero(source.table.frame_id == f)[0]) for f in frame_ids]
    ref_feat, ref_logits = _flip_reference(model, [source.read_image(r) for r in rows])
    feat = group["feature"][:6].astype(np.float32)
    cosine = (feat * ref_feat).sum(1) / np.linalg.norm(feat, axis=1)
    assert cosine.min() >= 0.999
    np.testing.assert_allclose(group["logits"][:6], ref_logits, atol=0.05 * np.exp(np.log(1 / 0.07)) / 14)
    assert group["feature"].dtype == np.float16 and group["feature"].shape[1] == 512


def _cache(config, checkpoint, store, **overrides):
    options = CacheOptions(**{"batch_size": 4, "chunk_rows": 8, "progress": False, **overrides})
    loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
    return run_cache(_source(config), loaded, str(store), options)


def test_killed_job_resumes_to_identical_store(tmp_path, synth_config, tiny_flip_checkpoint, monkeypatch):
    full = _cache(synth_config, tiny_flip_checkpoint, tmp_path / "full.zarr")
    assert full.completed and full.chunks_written == full.chunks

    # Simulate Ctrl-C in the middle of the third chunk (chunk 8 rows, batch 4: the 6th forward).
    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    monkeypatch.setattr(loaded.module, "forward", interrupt_on_call(loaded.module.forward, 6))
    options = CacheOptions(batch_size=4, chunk_rows=8, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_cache(_source(synth_config), loaded, str(tmp_path / "resumed.zarr"), options)
    partial = zarr.open_group(str(tmp_path / "resumed.zarr"), mode="r")["alpha"]
    assert partial["done"][:].tolist()[:3] == [True, True, False] and not partial.attrs["completed"]

    resumed = _cache(synth_config, tiny_flip_checkpoint, tmp_path / "resumed.zarr")
    assert resumed.chunks_written == full.chunks - 2 and resumed.completed
    a = open_store(str(tmp_path / "full.zarr")).dataset("alpha")
    b = open_store(str(tmp_path / "resumed.zarr")).dataset("alpha")
    for name in ("feature", "logits", "frame_id", "label", "split", "done"):
        np.testing.assert_array_equal(a[name][:], b[name][:])

    again = _cache(synth_config, tiny_flip_checkpoint, tmp_path / "resumed.zarr")
    assert again.chunks_written == 0 and again.frames_computed == 0 and again.completed


def test_store_size_and_contents(tmp_path, synth_config, tiny_flip_checkpoint):
    _cache(synth_config, tiny_flip_checkpoint, tmp_path / "s.zarr", chunk_rows=4096)
    store = open_store(str(tmp_path / "s.zarr"))
    group = store.dataset("alpha")
    source = _source(synth_config)
    np.testing.assert_array_equal(read_strings(group["frame_id"]), source.table.frame_id)
    np.testing.assert_array_equal(group["label"][:], source.table.label)
    norms = np.linalg.norm(group["feature"][:].astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    centroids = store.centroids
    assert centroids.shape == (2, 128) and np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    expected = store.teacher["logit_scale"] * group["feature"][:].astype(np.float32) @ centroids.T
    np.testing.assert_allclose(group["logits"][:], expected, atol=0.02)


def test_other_teacher_is_refused_unless_overwrite(tmp_path, synth_config, tiny_flip_checkpoint):
    store = tmp_path / "t.zarr"
    _cache(synth_config, tiny_flip_checkpoint, store)
    other = save_flip_checkpoint(openai_state_dict(random_clip("fasd-tiny-clip", seed=5)), tmp_path / "o.pt")
    with pytest.raises(FasdError, match="another teacher"):
        _cache(synth_config, other, store)
    report = _cache(synth_config, other, store, overwrite=True)
    assert report.completed and report.chunks_written == report.chunks


def test_unreadable_frames_are_counted_or_fatal(tmp_path, synth_config, tiny_flip_checkpoint, monkeypatch):
    from fasd.data.source import UnreadableFrame

    source = _source(synth_config)
    bad_row = 3
    original = type(source).read_image

    def flaky(self, row):
        if row == bad_row:
            raise UnreadableFrame("broken")
        return original(self, row)

    monkeypatch.setattr(type(source), "read_image", flaky)
    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    options = CacheOptions(batch_size=4, chunk_rows=8, progress=False)
    report = run_cache(source, loaded, str(tmp_path / "u.zarr"), options)
    assert report.unreadable == [str(source.table.frame_id[bad_row])]
    logits = open_store(str(tmp_path / "u.zarr")).dataset("alpha")["logits"][:]
    assert np.isnan(logits[bad_row]).all() and np.isfinite(np.delete(logits, bad_row, axis=0)).all()
    with pytest.raises(FasdError, match="unreadable"):
        run_cache(source, loaded, str(tmp_path / "strict.zarr"),
                  CacheOptions(batch_size=4, chunk_rows=8, progress=False, strict=True))


def test_shards_take_disjoint_chunks(tmp_path, synth_config, tiny_flip_checkpoint):
    store = tmp_path / "sh.zarr"
    first = _cache(synth_config, tiny_flip_checkpoint, store, shard=0, num_shards=2)
    assert not first.completed and first.chunks_written == (first.chunks + 1) // 2
    second = _cache(synth_config, tiny_flip_checkpoint, store, shard=1, num_shards=2)
    assert second.completed and first.chunks_written + second.chunks_written == first.chunks
    single = _cache(synth_config, tiny_flip_checkpoint, tmp_path / "single.zarr")
    np.testing.assert_array_equal(open_store(str(store)).dataset("alpha")["feature"][:],
                                  open_store(str(tmp_path / "single.zarr")).dataset("alpha")["feature"][:])
    assert single.completed
