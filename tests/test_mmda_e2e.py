"""MMDA end to end through the CLI (issue 16): MMDG-format lists -> ingest -> teacher-finetune --method mmda ->
cache-teacher --teacher mmda -> train --recipe mmda -> evaluate (all modalities, depth missing) -> export ONNX
with three inputs -> ONNX Runtime parity; plus the pieces each step relies on, checked independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fasd.config import load_registry
from fasd.constants import LABEL_LIVE, MODALITIES, SPLITS
from fasd.data.open_source import open_source
from fasd.rs2_math import rs2_align_loss
from fasd.student_train.losses import CompositeLoss, LossSettings, StepBatch
from fasd.training.modalities import modality_eval_transform, modality_train_transform
from fasd.training.transforms import eval_transform

SIZE = 32


def _face(rng: np.random.Generator, live: bool, name: str, domain: int) -> np.ndarray:
    """A frame of one modality: live depth is a smooth bump, spoof depth flat; IR brighter on live skin."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    bump = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 8)
    if name == "rgb":
        base = np.stack([0.6 + 0.1 * domain, 0.4, 0.3])[None, None] * (0.7 + 0.3 * bump[..., None])
    elif name == "depth":
        base = np.repeat((bump if live else np.full_like(bump, 0.5))[..., None], 3, axis=2)
    else:
        base = np.repeat(((0.8 if live else 0.3) * bump)[..., None], 3, axis=2)
    noisy = base + rng.normal(0, 0.03, base.shape)
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def write_mmdg(root: Path, dataset: str, domain: int, per_split: int = 6) -> None:
    """MMDG lists (``rgb depth ir label``, 1 = live) and their JPEGs for one dataset."""
    rng = np.random.default_rng(domain)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        lines = []
        for i in range(per_split):
            live = i % 2 == 0
            paths = []
            for name in MODALITIES:
                path = Path(dataset) / split / f"{i}_{name}.jpg"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_face(rng, live, name, domain)).save(root / path, quality=95)
                paths.append(str(path))
            lines.append(" ".join([*paths, str(int(live))]))
        (root / "lists" / f"{dataset}-{split}.txt").write_text("\n".join(lines) + "\n")


def test_rs2_term_reads_the_store_captions_hand_example() -> None:
    """The rs2 loss term on a hand example: v = (1, 1)/√2 against captions e1 (spoof) and e2 (live):
    cos = 1/√2 to both, d = (1 − 1/√2)/2; live: −log(1 − d), spoof: −log d; the batch mean."""
    texts = {"captions": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "caption_labels": torch.tensor([0, 1])}
    loss = CompositeLoss({"rs2": 1.0}, LossSettings(texts=texts))
    projection = torch.tensor([[3.0, 3.0], [2.0, 2.0]])  # the term normalises the projection
    batch = StepBatch({"projection": projection}, torch.tensor([LABEL_LIVE, 0]), torch.zeros(2), {})
    total, logged = loss(batch)
    d = (1 - 1 / np.sqrt(2)) / 2
    assert float(total) == pytest.approx((-np.log(1 - d) - np.log(d)) / 2, rel=1e-5)
    assert logged["rs2"] == pytest.approx(float(rs2_align_loss(projection, batch.labels, *texts.values())))
    assert loss.needed_texts == ("captions", "caption_labels") and loss.needs_teacher


def test_modality_train_transform_shares_the_crop_and_jitters_rgb_only() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    frame = {"rgb": image, "depth": image.copy(), "ir": image.copy(), "mask": np.ones(3, bool)}
    torch.manual_seed(0)
    stacked = modality_train_transform(24)(frame)
    assert stacked.shape == (3, 3, 24, 24)
    torch.testing.assert_close(stacked[1], stacked[2])  # depth and IR: the same crop and flip
    plain = eval_transform(24)(image)
    assert not torch.allclose(stacked[1], plain, atol=1e-3)  # ... which is a real crop (seed 0)
    assert not torch.allclose(stacked[0], stacked[1], atol=1e-3)  # RGB also jittered
    missing = modality_eval_transform(24, ("depth",))(frame)
    torch.testing.assert_close(missing[0], eval_transform(24)(image))
    torch.testing.assert_close(missing[1], eval_transform(24)(np.zeros_like(image)))


@pytest.mark.slow
def test_mmda_end_to_end_through_the_cli(tmp_path: Path) -> None:
    from helpers import fasd

    from fasd.export.runtimes import OnnxStudent
    from fasd.student_train.checkpoint import load_student
    from fasd.teacher_cache.mmda.finetune import load_mmda_teacher
    from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
    from fasd.constants import NORMALIZATIONS
    from fasd.store_schema.store import open_store

    root, config = tmp_path / "mmdg", tmp_path / "fasd.toml"
    for domain, name in enumerate(("W", "C")):
        write_mmdg(root, name, domain)
        result = fasd("ingest", "mmdg", "--root", root, "--lists", root / "lists", "--dataset", name, "--out",
                      tmp_path / f"{name}.h5", "--size", SIZE, "--register", name, "--config", config)
        assert result.exit_code == 0, result.output

    teacher = tmp_path / "mmda.pt"
    result = fasd("teacher-finetune", "--method", "mmda", "--sources", "W", "--out", teacher, "--config", config,
                  "--epochs", 1, "--batch-size", 4, "--udsa-depth", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "cache it with --teacher mmda" in result.output and (tmp_path / "mmda.pt.json").is_file()

    store = str(tmp_path / "teacher.zarr")
    for name in ("W", "C"):
        result = fasd("cache-teacher", "--dataset", name, "--config", config, "--store", store, "--teacher", "mmda",
                      "--checkpoint", teacher, "--batch-size", 8, "--workers", 0, "--device", "cpu")
        assert result.exit_code == 0, result.output
    # The cached targets are the teacher's own forward on every modality (independent preprocessing).
    module = load_mmda_teacher(teacher)
    source = open_source(load_registry(config).dataset("C"))
    opened = open_store(store)
    group = opened.root["C"]
    frames = [source.read_modalities(row) for row in range(4)]
    mean, std = NORMALIZATIONS["clip"]
    images = {m: normalize_batch(torch.from_numpy(np.stack([resize_uint8(f[m], module.input_size) for f in frames])),
                                 mean, std) for m in MODALITIES}
    with torch.no_grad():
        expected = module(images, torch.from_numpy(np.stack([f["mask"] for f in frames])))
    np.testing.assert_allclose(group["logits"][:4], expected["logits"].numpy(), atol=1e-4)
    np.testing.assert_allclose(group["feature"][:4], expected["feature"].numpy(), atol=2e-3)
    np.testing.assert_allclose(group["caption_cos"][:4], expected["caption_cos"].numpy(), atol=2e-3)
    with torch.no_grad():  # the captions through the U-DSA's exit (paper B Appendix B), what caption_cos used
        np.testing.assert_allclose(opened.text("captions"), module.caption_depths()[0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(opened.text("caption_labels"), module.caption_labels.numpy())
    result = fasd("inspect", store, "--verify", 3, "--checkpoint", teacher, "--config", config, "--json")
    assert result.exit_code == 0, result.output
    verified = json.loads(result.stdout[result.stdout.index("{"):])["verify"]
    assert verified["C"]["worst_cosine"] > 0.999 and verified["C"]["max_logit_diff"] < 1e-3

    run = tmp_path / "run"
    result = fasd("train", "--sources", "W", "--target", "C", "--config", config, "--store", store, "--recipe",
                  "mmda", "--epochs", 1, "--batch-size", 4, "--max-draws", 8, "--workers", 0, "--device", "cpu",
                  "--modality-dropout", 0.3, "--out", run)
    assert result.exit_code == 0, result.output
    log = (run / "log.jsonl").read_text()
    assert '"rs2"' in log and '"feat"' in log and '"kl"' in log

    scores = {}
    for missing in ((), ("depth",)):
        out = tmp_path / f"scores{len(missing)}.csv"
        args = ["evaluate", run / "best.pt", "--dataset", "C", "--config", config, "--scores", out]
        result = fasd(*args, *(["--missing", ",".join(missing)] if missing else []))
        assert result.exit_code == 0, result.output
        scores[missing] = np.loadtxt(out, delimiter=",", skiprows=1, usecols=2)
    # Independent: the deployed student on each modality's own RGB eval transform, depth as the zero frame.
    student, _ = load_student(run / "best.pt")
    rows = source.table.rows_in_splits(["test"])
    transform = eval_transform()
    for missing, got in scores.items():
        stacks = [[transform(np.zeros_like(f[m]) if m in missing else f[m]) for m in MODALITIES]
                  for f in (source.read_modalities(int(r)) for r in rows)]
        with torch.no_grad():
            _, p_live = student.deployable()(*(torch.stack(s) for s in zip(*stacks)))
        np.testing.assert_allclose(got, p_live.numpy(), atol=1e-5)
    with torch.no_grad():  # a missing depth changes what the student sees (its scores may tie after 2 steps)
        stack = [transform(frames[0][m]).unsqueeze(0) for m in MODALITIES]
        assert not torch.equal(student.core.embed(stack), student.core.embed(
            [stack[0], transform(np.zeros_like(frames[0]["depth"])).unsqueeze(0), stack[2]]))

    onnx = tmp_path / "student.onnx"
    result = fasd("export", run / "best.pt", "--out", onnx, "--parity-data", "C", "--config", config)
    assert result.exit_code == 0, result.output
    assert "max |Δ logit|" in result.output
    runtime = OnnxStudent(onnx)
    assert [i.name for i in runtime._session.get_inputs()] == list(MODALITIES)
    result = fasd("evaluate", onnx, "--dataset", "C", "--config", config, "--missing", "depth",
                  "--scores", tmp_path / "onnx.csv")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.loadtxt(tmp_path / "onnx.csv", delimiter=",", skiprows=1, usecols=2),
                               scores[("depth",)], atol=1e-5)
    # predict: RGB files, depth from --depth DIR by file name, no --ir (missing) == evaluate --missing ir
    result = fasd("evaluate", onnx, "--dataset", "C", "--config", config, "--missing", "ir",
                  "--scores", tmp_path / "no-ir.csv")
    assert result.exit_code == 0, result.output
    for name in ("rgb", "depth"):
        (tmp_path / name).mkdir()
        for row in rows:
            Image.fromarray(source.read_modalities(int(row))[name]).save(tmp_path / name / f"{row:03d}.png")
    result = fasd("predict", onnx, tmp_path / "rgb", "--depth", tmp_path / "depth", "--json")
    assert result.exit_code == 0, result.output
    predicted = [r["p_live"] for r in json.loads(result.stdout[result.stdout.index("["):])]
    np.testing.assert_allclose(predicted, np.loadtxt(tmp_path / "no-ir.csv", delimiter=",", skiprows=1, usecols=2),
                               atol=1e-5)
    result = fasd("evaluate", run / "best.pt", "--dataset", "C", "--config", config, "--missing", "rgb")
    assert result.exit_code == 2 and "--missing rgb" in result.output
