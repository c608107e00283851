"""Phase 2: distillation from the store, end to end through the CLI, and its user errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import zarr

from fasd.evaluate.metrics import compute_metrics

from helpers import assert_one_line, fasd, interrupt_on_call

TINY = ["--epochs", "2", "--max-draws", "32", "--batch-size", "16"]


@pytest.fixture(scope="module")
def distilled_run(tmp_path_factory, synth_config, synth_store):
    run_dir = tmp_path_factory.mktemp("runs") / "distilled"
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", synth_store,
                  *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def test_train_writes_run_directory(distilled_run, synth_config):
    files = {p.name for p in distilled_run.iterdir()}
    assert {"config.json", "log.jsonl", "best.pt", "last.pt", "metrics.json", "report.md", "scores.csv"} <= files
    log = [json.loads(line) for line in (distilled_run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    for record in log:
        assert record["train"]["steps"] == 2  # 32 draws / batch 16
        assert record["train"]["kl"] > 0 and record["train"]["feat"] > 0 and np.isfinite(record["val"]["total"])
    metrics = json.loads((distilled_run / "metrics.json").read_text())
    assert metrics["protocol"] == "holdout-gamma" and metrics["sources"] == ["alpha", "beta"]
    assert metrics["target"] == "gamma" and metrics["loss_weights"]["lambda_kl"] == 1.0
    best = min(log, key=lambda r: r["val"]["total"])["epoch"]
    assert metrics["best_epoch"] == best
    with open(distilled_run / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["n"] and all(r["frame_id"].startswith("gamma") for r in rows)
    recomputed = compute_metrics(np.array([int(r["label"]) for r in rows]),
                                 np.array([float(r["score"]) for r in rows]))
    assert recomputed["eer"] == pytest.approx(metrics["eer"])
    assert "holdout-gamma" in (distilled_run / "report.md").read_text()


def test_evaluate_json_and_scores_agree(distilled_run, synth_config, tmp_path):
    scores_path = tmp_path / "scores.csv"
    result = fasd("evaluate", distilled_run / "best.pt", "--split", "holdout-gamma", "--config", synth_config,
                  "--json", "--scores", scores_path)
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout[result.stdout.index("{"):])
    with open(scores_path) as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    recomputed = compute_metrics(labels, scores, val_threshold=reported["threshold"].get("val"))
    for key in ("n", "n_live", "eer", "auc", "hter"):
        assert recomputed[key] == pytest.approx(reported[key])
    for key in ("apcer", "bpcer", "acer"):  # the rows also nest per-attack-type rates (fasd 0.2)
        assert recomputed["at_0.5"][key] == pytest.approx(reported["at_0.5"][key])
    training = json.loads((distilled_run / "metrics.json").read_text())
    assert reported["eer"] == pytest.approx(training["eer"], abs=1e-6)


def test_no_teacher_needs_no_store(tmp_path, synth_config):
    run_dir = tmp_path / "plain"
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", tmp_path / "none.zarr",
                  "--no-teacher", *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert all(r["train"]["kl"] == 0 and r["train"]["feat"] == 0 and r["train"]["triplet"] == 0 for r in log)
    assert json.loads((run_dir / "metrics.json").read_text())["no_teacher"] is True


@pytest.mark.slow
def test_training_is_deterministic_and_resume_matches(tmp_path, synth_config, synth_store):
    args = ["train", "--split", "alpha-to-beta", "--config", synth_config, "--store", synth_store, *TINY]
    assert fasd(*args, "--out", tmp_path / "a").exit_code == 0
    assert fasd(*args, "--out", tmp_path / "b").exit_code == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["eer"] == b["eer"] and a["auc"] == b["auc"]
    # A run stopped after epoch 1 and resumed ends where the uninterrupted run ended.
    one = ["train", "--split", "alpha-to-beta", "--config", synth_config, "--store", synth_store,
           "--epochs", "2", "--max-draws", "32", "--batch-size", "16"]
    from fasd.student_train import trainer as trainer_module

    original = trainer_module.Trainer._validate
    trainer_module.Trainer._validate = interrupt_on_call(original, 2)  # Ctrl-C after epoch 1 is saved
    try:
        interrupted = fasd(*one, "--out", tmp_path / "c")
    finally:
        trainer_module.Trainer._validate = original
    assert interrupted.exit_code == 130 and (tmp_path / "c" / "last.pt").is_file()
    assert not (tmp_path / "c" / "metrics.json").exists()
    resumed = fasd("train", "--resume", tmp_path / "c")
    assert resumed.exit_code == 0, resumed.output
    c = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert c["eer"] == a["eer"] and c["auc"] == a["auc"]
    log_a = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    log_c = (tmp_path / "c" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["val"] for x in log_a] == [json.loads(x)["val"] for x in log_c]


def test_missing_frames_are_named(tmp_path, synth_config, tiny_flip_checkpoint):
    store = tmp_path / "partial.zarr"
    for name in ("alpha", "beta"):
        result = fasd("cache-teacher", "--dataset", name, "--config", synth_config, "--store", store,
                      "--checkpoint", tiny_flip_checkpoint, "--splits", "test", "--batch-size", "32")
        assert result.exit_code == 0, result.output
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", store, *TINY)
    assert_one_line(result, "missing from", "alpha", "fasd cache-teacher --dataset alpha")


def test_store_of_another_schema_is_refused(tmp_path, synth_config, synth_store):
    import shutil

    copy = tmp_path / "old.zarr"
    shutil.copytree(synth_store, copy)
    zarr.open_group(str(copy), mode="r+").attrs["fasd_store"] = 99
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", copy, *TINY)
    assert_one_line(result, "version 99", "version 1")
    assert_one_line(fasd("inspect", copy), "version 99")


def test_unknown_protocol_lists_valid_ones(synth_config):
    result = fasd("train", "--split", "holdout-omega", "--config", synth_config, "--no-teacher")
    assert_one_line(result, "holdout-omega", "holdout-alpha", "alpha-to-beta")


def test_empty_split_is_a_clear_error(tmp_path, synth_config):
    import h5py

    from fasd.config import load_registry, write_config

    registry = load_registry(synth_config)
    pack = tmp_path / "noval.h5"
    import shutil

    shutil.copy(registry.dataset("alpha").path, pack)
    with h5py.File(pack, "r+") as handle:
        split = handle["split"].asstr()[()]
        handle["split"][:] = np.where(split == "val", "train", split).astype(object)
    write_config(tmp_path / "fasd.toml", {"alpha": {"format": "hdf5", "path": str(pack)},
                                           "beta": {"format": "hdf5", "path": str(registry.dataset("beta").path)}},
                 ["alpha", "beta"])
    result = fasd("train", "--split", "alpha-to-beta", "--config", tmp_path / "fasd.toml", "--no-teacher", *TINY,
                  "--out", tmp_path / "r")
    assert_one_line(result, "no frames in split 'val'", "alpha")
