"""Store schema v2: named targets with specs, v1 stores still train, portable fingerprints, never replacing what
fasd did not make."""

from __future__ import annotations

import json
import shutil

import numpy as np
import zarr

from fasd.store_schema.store import open_store
from helpers import fasd

TINY = ["--epochs", "1", "--max-draws", "32", "--batch-size", "16", "--workers", "0"]


def downgrade_to_v1(path) -> None:
    """Rewrite a v2 store in fasd 0.1's layout: schema 1, no target specs, no attack types, absolute paths in the
    source fingerprints."""
    root = zarr.open_group(str(path), mode="r+")
    teacher = dict(root.attrs["teacher"])
    del teacher["targets"], teacher["normalize"], teacher["interpolation"]
    root.attrs.update({"fasd_store": 1, "teacher": teacher})
    for name, group in root.groups():
        if name == "text":
            continue
        del group["attack_type"]
        source = dict(group.attrs["source"]) | {"path": f"/old/machine/{name}.h5"}
        group.attrs.update({"source": source})
        del group.attrs["source_path"]


def test_inspect_lists_every_target_with_shape_dtype_and_bytes(synth_store):
    result = fasd("inspect", synth_store, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["schema_version"] == 2
    assert summary["targets"] == {"feature": {"shape": [128], "dtype": "f2", "bytes_per_frame": 256},
                                  "logits": {"shape": [2], "dtype": "f4", "bytes_per_frame": 8}}
    text = fasd("inspect", synth_store).output
    assert "feature      128" in text and "256 B/frame" in text and "logits" in text


def test_v1_store_still_reads_and_trains(tmp_path, synth_config, synth_store):
    old = tmp_path / "v1.zarr"
    shutil.copytree(synth_store, old)
    downgrade_to_v1(old)
    store = open_store(str(old))
    assert store.version == 1 and set(store.targets) == {"feature", "logits"}
    assert store.targets["feature"].shape == (128,)
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", old, *TINY,
                  "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert log["train"]["kl"] > 0 and log["train"]["feat"] > 0
    assert "schema v1" in fasd("inspect", old).output


def test_packs_moved_to_another_folder_still_match_the_store(tmp_path, synth_config, synth_store):
    moved = tmp_path / "elsewhere"
    shutil.copytree(synth_config.parent, moved)
    result = fasd("train", "--split", "holdout-gamma", "--config", moved / "fasd.toml", "--store", synth_store,
                  *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output


def test_cache_never_writes_into_or_replaces_a_folder_fasd_did_not_make(tmp_path, synth_config,
                                                                       tiny_flip_checkpoint):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        result = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--checkpoint",
                      tiny_flip_checkpoint, "--store", precious, *extra)
        assert result.exit_code == 2 and "not a fasd teacher store" in result.output, result.output
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]
    foreign = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    foreign.attrs["owner"] = "someone else"
    foreign.create_array("data", shape=(3,), dtype="f4")
    result = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--checkpoint",
                  tiny_flip_checkpoint, "--store", tmp_path / "foreign.zarr", "--overwrite")
    assert result.exit_code == 2 and "did not create" in result.output, result.output
    assert np.array_equal(zarr.open_group(str(tmp_path / "foreign.zarr"), mode="r")["data"].shape, (3,))


def _corrupt_and_delete_chunks(path) -> None:
    """Garble the bytes of one feature chunk and delete one logits chunk of dataset 'alpha'."""
    from pathlib import Path

    chunks = Path(path) / "alpha"
    feature_chunks = sorted((chunks / "feature" / "c").rglob("*"))
    logit_chunks = sorted((chunks / "logits" / "c").rglob("*"))
    next(f for f in feature_chunks if f.is_file()).write_bytes(b"garbage" * 10)
    [f for f in logit_chunks if f.is_file()][-1].unlink()


def test_check_names_damaged_chunks_training_refuses_and_repair_recomputes(tmp_path, synth_config,
                                                                          tiny_flip_checkpoint):
    store = tmp_path / "s.zarr"
    cache = ["cache-teacher", "--dataset", "alpha", "--config", synth_config, "--checkpoint", tiny_flip_checkpoint,
             "--store", store, "--chunk-rows", "16", "--batch-size", "8"]
    assert fasd(*cache).exit_code == 0
    pristine = {n: zarr.open_group(str(store), mode="r")["alpha"][n][:] for n in ("feature", "logits")}
    assert fasd("inspect", store, "--check").exit_code == 0
    _corrupt_and_delete_chunks(store)
    checked = fasd("inspect", store, "--check")
    assert checked.exit_code == 1
    assert "2 damaged chunk(s): chunk 0: 'feature' cannot be decoded" in checked.output, checked.output
    assert "--repair" in checked.output
    trained = fasd("train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--store", store,
                   *TINY, "--out", tmp_path / "run")
    assert trained.exit_code == 2 and "--repair" in trained.output and "Traceback" not in trained.output
    repaired = fasd(*cache, "--repair")
    assert repaired.exit_code == 0 and "recomputing them" in repaired.output, repaired.output
    assert "in 2 chunk(s)" in repaired.output  # exactly the damaged ones
    assert fasd("inspect", store, "--check").exit_code == 0
    for name, values in pristine.items():
        np.testing.assert_array_equal(zarr.open_group(str(store), mode="r")["alpha"][name][:], values)
