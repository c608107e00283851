"""Phase 1 through the CLI: synth -> cache-teacher -> inspect, and one clear line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import zarr

from fasd.store_schema import writer
from fasd.store_schema.inspect import summarize_store
from fasd.store_schema.specs import specs_to_json, v1_specs
from fasd.store_schema.store import create_or_check_store, open_store

from helpers import assert_one_line, fasd


def _cache(config, checkpoint, store, *extra):
    return fasd("cache-teacher", "--dataset", "alpha", "--config", config, "--store", store,
                "--checkpoint", checkpoint, "--batch-size", "32", *extra)


def test_cache_inspect_and_verify(tmp_path, synth_config, tiny_flip_checkpoint):
    store = tmp_path / "t.zarr"
    first = _cache(synth_config, tiny_flip_checkpoint, store)
    assert first.exit_code == 0 and "cached 60 frames" in first.output
    again = _cache(synth_config, tiny_flip_checkpoint, store)
    assert again.exit_code == 0 and "nothing to do" in again.output
    result = fasd("inspect", store, "--json", "--verify", "5", "--checkpoint", tiny_flip_checkpoint,
                  "--config", synth_config)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    alpha = summary["datasets"]["alpha"]
    assert summary["schema_version"] == 2 and summary["teacher"]["name"] == "flip-mcl"
    assert alpha["rows"] == 60 and alpha["completed"] and alpha["nan_rows"] == 0
    assert sum(alpha["labels"].values()) == 60 and set(alpha["splits"]) == {"train", "val", "test"}
    assert abs(alpha["feature_norm"]["min"] - 1) < 2e-3 and abs(alpha["feature_norm"]["max"] - 1) < 2e-3
    assert set(alpha["teacher_metrics"]) == {"train", "val", "test"}
    assert summary["verify"]["alpha"]["frames"] == 5
    assert summary["verify"]["alpha"]["worst_cosine"] > 0.999
    assert summary["verify"]["alpha"]["max_logit_diff"] < 0.05
    text = fasd("inspect", store)
    assert text.exit_code == 0 and "B/frame" in text.output and "teacher alone" in text.output


def test_store_bytes_per_frame_for_vit_b16_features(tmp_path):
    """512-d fp16 features + fp32 logits stay within 1.1 KB a frame on disk."""
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(2, 512)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    teacher = {"name": "x", "targets": specs_to_json(v1_specs(512))}
    store = create_or_check_store(str(tmp_path / "s.zarr"), teacher, {"centroids": centroids}, overwrite=False)
    rows = 8192
    ids = np.array([f"f{i:06d}" for i in range(rows)])
    columns = writer.frame_columns(ids, np.zeros(rows, np.int8), np.full(rows, "train"), np.full(rows, ""))
    group = writer.prepare_dataset(store, "d", {"frames": rows}, "", columns, 4096, overwrite=False)
    for chunk in range(2):
        feature = rng.normal(size=(4096, 512)).astype(np.float32)
        feature /= np.linalg.norm(feature, axis=1, keepdims=True)
        writer.write_chunk(group, chunk, {"feature": feature, "logits": 100 * feature @ centroids.T})
    summary = summarize_store(open_store(str(tmp_path / "s.zarr")))["datasets"]["d"]
    assert summary["completed"] and 900 < summary["target_bytes_per_frame"] <= 1100


def test_bad_inputs_are_one_line(tmp_path, synth_config, tiny_flip_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "t.zarr"
    assert_one_line(fasd("cache-teacher", "--dataset", "alpha", "--checkpoint", tiny_flip_checkpoint),
                      "no fasd.toml found")
    assert_one_line(fasd("cache-teacher", "--dataset", "omega", "--config", synth_config,
                           "--checkpoint", tiny_flip_checkpoint), "unknown dataset 'omega'", "alpha")
    assert_one_line(_cache(synth_config, tmp_path / "nope.pt", store), "checkpoint not found")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert_one_line(_cache(synth_config, garbage, store), "not a readable torch checkpoint")
    import torch

    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2, 2)}}, wrong)
    assert_one_line(_cache(synth_config, wrong, store), "not a CLIP ViT checkpoint", "visual.conv1.weight")
    for bad in ("2/2", "x", "1/0"):
        assert_one_line(_cache(synth_config, tiny_flip_checkpoint, store, "--shard", bad), "--shard")
    assert _cache(synth_config, tiny_flip_checkpoint, store).exit_code == 0

    other = tmp_path / "other.pt"
    from helpers import save_flip_checkpoint
    from fasd.teacher_cache.arch import openai_state_dict, random_clip

    save_flip_checkpoint(openai_state_dict(random_clip("fasd-tiny-clip", seed=9)), other)
    assert_one_line(_cache(synth_config, other, store), "another teacher", "--overwrite")
    zarr.open_group(str(store), mode="r+").attrs["fasd_store"] = 3
    assert_one_line(_cache(synth_config, tiny_flip_checkpoint, store), "schema version 3")
    assert_one_line(fasd("inspect", tmp_path / "missing.zarr"), "no teacher store")


def test_foreign_pickles_need_trust(tmp_path, synth_config, tiny_clip_state):
    import argparse

    import torch

    from helpers import save_flip_checkpoint

    path = save_flip_checkpoint(tiny_clip_state, tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=False)
    payload["args"] = argparse.Namespace(lr=1e-6)  # an arbitrary pickled object beside the weights
    torch.save(payload, path)
    store = tmp_path / "t.zarr"
    assert_one_line(_cache(synth_config, path, store), "argparse.Namespace", "--trust-checkpoint")
    assert _cache(synth_config, path, store, "--trust-checkpoint").exit_code == 0
