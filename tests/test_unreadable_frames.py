"""Frames that cannot be decoded are left out of training and evaluation with a warning naming them, through the
CLI: cached as unreadable, trained around, scored around, and counted out of the metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fasd.config import load_registry, write_config
from fasd.data.folder import FolderFrameSource
from fasd.data.open_source import open_source
from fasd.evaluate.metrics import compute_metrics, stored_val_threshold
from fasd.export.runtimes import load_scorer
from fasd.training.transforms import eval_transform
from helpers import fasd

TINY = ["--epochs", "1", "--max-draws", "32", "--batch-size", "16"]


def _first(source: FolderFrameSource, split: str, label: int) -> str:
    rows = source.table.rows_in_splits([split])
    return str(source.table.frame_id[rows[source.table.label[rows] == label][0]])


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory, synth_config) -> tuple[Path, dict[str, str]]:
    """The synthetic domains as image folders with manifests, with three frames that are not images: one of
    alpha's train frames, one of its val frames and one of gamma's test frames. Returns the fasd.toml and
    {which: frame ID}."""
    root = tmp_path_factory.mktemp("folders")
    registry = load_registry(synth_config)
    for name in ("alpha", "beta", "gamma"):
        pack = open_source(registry.dataset(name))
        folder = root / name
        folder.mkdir()
        with open(folder / "manifest.csv", "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["frame_id", "path", "label", "split", "video_id", "attack_type"])
            for row in range(len(pack)):
                table = pack.table
                Image.fromarray(pack.read_image(row)).save(folder / f"{row:03d}.png")
                out.writerow([table.frame_id[row], f"{row:03d}.png", int(table.label[row]), table.split[row],
                              table.video_id[row], table.attack_type[row]])
    sources = {name: FolderFrameSource(root / name / "manifest.csv") for name in ("alpha", "beta", "gamma")}
    bad = {"train": _first(sources["alpha"], "train", 0), "val": _first(sources["alpha"], "val", 1),
           "test": _first(sources["gamma"], "test", 1)}
    for which, name in (("train", "alpha"), ("val", "alpha"), ("test", "gamma")):
        row = int(np.flatnonzero(sources[name].table.frame_id == bad[which])[0])
        (root / name / f"{row:03d}.png").write_bytes(b"not an image")
    config = root / "fasd.toml"
    write_config(config, {name: {"format": "folder", "path": name} for name in sources},
                 ["alpha", "beta", "gamma"])
    return config, bad


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corrupt, tiny_flip_checkpoint):
    """`fasd cache-teacher` (non-strict) of both sources, then `fasd train` on them; returns (run dir, outputs)."""
    config, _ = corrupt
    root = tmp_path_factory.mktemp("run")
    store = root / "teacher.zarr"
    outputs = []
    for name in ("alpha", "beta"):
        result = fasd("cache-teacher", "--dataset", name, "--config", config, "--store", store,
                      "--checkpoint", tiny_flip_checkpoint, "--batch-size", "32")
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    result = fasd("train", "--split", "holdout-gamma", "--config", config, "--store", store, *TINY,
                  "--out", root / "distilled")
    assert result.exit_code == 0, result.output
    return root / "distilled", "\n".join(outputs), result.output


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning: ")]


def _readable_test_rows(config: Path, bad: dict[str, str]) -> tuple[FolderFrameSource, np.ndarray]:
    source = open_source(load_registry(config).dataset("gamma"))
    rows = source.table.rows_in_splits(["test"])
    return source, rows[source.table.frame_id[rows] != bad["test"]]


def test_cached_unreadable_frames_are_left_out_of_training_by_name(trained, corrupt):
    run_dir, cache_output, train_output = trained
    _, bad = corrupt
    assert f"2 unreadable frame(s) in 'alpha' stored as NaN: {', '.join(sorted([bad['train'], bad['val']]))}" \
        in cache_output
    warnings = _warnings(train_output)
    left_out = [w for w in warnings if "records as unreadable" in w]
    assert len(left_out) == 1, warnings
    assert "2 frame(s)" in left_out[0] and bad["train"] in left_out[0] and bad["val"] in left_out[0]
    assert "missing from" not in train_output
    assert [w for w in warnings if "left out of the metrics" in w] == [
        f"warning: 1 unreadable frame(s) of 'gamma' left out of the metrics: {bad['test']}"]


def test_metrics_count_the_readable_test_frames_only(trained, corrupt):
    run_dir, _, _ = trained
    config, bad = corrupt
    source, rows = _readable_test_rows(config, bad)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    labels = source.table.label[rows]
    assert (metrics["n"], metrics["n_live"], metrics["n_spoof"]) == (len(rows), int(labels.sum()),
                                                                      int((labels == 0).sum()))
    with open(run_dir / "scores.csv") as handle:
        scored = [r["frame_id"] for r in csv.DictReader(handle)]
    assert scored == source.table.frame_id[rows].tolist()


def test_evaluate_leaves_the_unreadable_frame_out_of_the_metrics(trained, corrupt):
    run_dir, _, _ = trained
    config, bad = corrupt
    result = fasd("evaluate", run_dir / "best.pt", "--dataset", "gamma", "--config", config, "--json")
    assert result.exit_code == 0, result.output
    # (a 2-step student may also be warned about giving every frame the same score: not this test's subject)
    assert [w for w in _warnings(result.stderr) if "the same score" not in w] == [
        f"warning: 1 unreadable frame(s) of 'gamma' left out of the metrics: {bad['test']}"]
    reported = json.loads(result.stdout)
    # Independently: the checkpoint's own forward on the readable frames, plain resize, no fasd scoring code.
    source, rows = _readable_test_rows(config, bad)
    scorer = load_scorer(run_dir / "best.pt")
    images = torch.stack([eval_transform(scorer.metadata["input_size"])(source.read_image(int(r))) for r in rows])
    expected = compute_metrics(source.table.label[rows], scorer.p_live(images), source.table.attack_type[rows],
                               val_threshold=stored_val_threshold(torch.load(run_dir / "best.pt",
                                                                             weights_only=True)))
    for key in ("n", "n_live", "n_spoof", "eer", "auc", "hter"):
        assert reported[key] == pytest.approx(expected[key]), key
    assert reported["threshold"] == pytest.approx(expected["threshold"])
    assert reported["at_val"]["acer"] == pytest.approx(expected["at_val"]["acer"])


def test_no_teacher_run_trains_around_frames_that_fail_to_decode(tmp_path, corrupt, monkeypatch):
    from fasd.student_train import trainer

    config, bad = corrupt
    # Every train frame drawn once an epoch (the domain-balanced draws might miss the broken one).
    monkeypatch.setattr(trainer, "domain_balanced_sampler", lambda domains, draws, generator: range(draws))
    result = fasd("train", "--split", "holdout-gamma", "--config", config, "--no-teacher", "--epochs", "2",
                  "--max-draws", "1000", "--batch-size", "16", "--out", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    warnings = _warnings(result.output)
    # Each frame is named once, however often it is drawn or validated.
    assert sum(f"alpha:{bad['train']}" in w for w in warnings) == 1, warnings
    assert sum(f"alpha:{bad['val']}" in w and "left out of validation" in w for w in warnings) == 1, warnings
    assert any(bad["val"] in w and "left out of the validation threshold" in w for w in warnings), warnings
    log = [json.loads(line) for line in (tmp_path / "plain" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train"]["total"]) and np.isfinite(r["val"]["total"]) for r in log)
    assert json.loads((tmp_path / "plain" / "metrics.json").read_text())["n"] == len(
        _readable_test_rows(config, bad)[1])


def test_video_level_without_video_ids_says_so_before_scoring(trained, corrupt, tmp_path, monkeypatch):
    run_dir, _, _ = trained
    config, _ = corrupt
    folder = config.parent / "gamma"
    lines = (folder / "manifest.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    (tmp_path / "manifest.csv").write_text("frame_id,path,label,split\n" + "".join(
        f"{r[0]},{folder / r[1]},{r[2]},{r[3]}\n" for r in rows))
    write_config(tmp_path / "fasd.toml", {"plain": {"format": "folder", "path": str(tmp_path)}}, None)
    monkeypatch.setattr(FolderFrameSource, "read_image", lambda *a: pytest.fail("scored before refusing"))
    result = fasd("evaluate", run_dir / "best.pt", "--dataset", "plain", "--config", tmp_path / "fasd.toml",
                  "--video-level")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--video-level needs video IDs, but no frame of plain has one" in result.output
