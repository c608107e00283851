"""Bad inputs of the v0.2 sweep (issue 26): one line naming the file or flag, exit 2, no traceback, and
nothing of the user's replaced (``--overwrite`` replaces only a file fasd wrote)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fasd.errors import FasdError
from fasd.io_checks import write_atomically
from helpers import assert_one_line as assert_user_error, fasd


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what "nothing changed" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory) -> Path:
    from fasd.student_train.checkpoint import save_checkpoint
    from fasd.student_train.model import Student

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student") / "best.pt"
    save_checkpoint(path, Student().eval(), epoch=0, config={"seed": 0, "student": "mobilenetv3-small"})
    return path


# --- user files: never replaced without --overwrite, and --overwrite replaces only what fasd wrote ----------

def test_teacher_finetune_never_replaces_a_pack_or_its_init(tmp_path, synth_config):
    pack = synth_config.parent / "alpha.h5"
    before = pack.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert_user_error(fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--out", pack,
                               *extra), f"--out {pack} exists and is not a teacher checkpoint that fasd wrote")
    init = tmp_path / "init.pt"
    init.write_bytes(b"a user's checkpoint")
    assert_user_error(fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--out", init,
                           "--init", init, "--overwrite"), "is the --init checkpoint")
    assert pack.read_bytes() == before and init.read_bytes() == b"a user's checkpoint"


def test_teacher_finetune_replaces_its_own_checkpoint_only_with_overwrite(tmp_path, synth_config):
    out = tmp_path / "teacher.pt"
    out.write_bytes(b"fasd's checkpoint")
    (tmp_path / "teacher.pt.json").write_text(json.dumps({"out": str(out), "method": "clip"}))
    assert_user_error(fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--out", out),
                      "pass --overwrite to replace it")
    assert out.read_bytes() == b"fasd's checkpoint"


@pytest.mark.parametrize("ours", [False, True])
def test_ingest_never_replaces_a_file_without_overwrite(tmp_path, ours):
    out = tmp_path / "pack.h5"
    if ours:
        with h5py.File(out, "w") as handle:
            handle.attrs["source"] = "mcio"
    else:
        out.write_bytes(b"my notes")
    before = out.read_bytes()
    (tmp_path / "root").mkdir()
    expected = "pass --overwrite" if ours else "is not a pack that fasd wrote"
    assert_user_error(fasd("ingest", "mcio", "--root", tmp_path / "root", "--out", out), expected)
    if not ours:
        assert_user_error(fasd("ingest", "mcio", "--root", tmp_path / "root", "--out", out, "--overwrite"), expected)
    assert out.read_bytes() == before


def test_ingest_register_never_rebinds_a_name_and_adds_the_domain(tmp_path):
    from fasd.config import load_registry, register_dataset

    config = tmp_path / "fasd.toml"
    config.write_text('[datasets.mine]\nformat = "hdf5"\npath = "elsewhere.h5"\n')
    before = config.read_text()
    (tmp_path / "root").mkdir()
    assert_user_error(fasd("ingest", "mcio", "--root", tmp_path / "root", "--out", tmp_path / "new.h5",
                           "--register", "mine", "--config", config), "already registers 'mine'")
    assert config.read_text() == before and not (tmp_path / "new.h5").exists()
    register_dataset(config, "other", "hdf5", tmp_path / "other.h5")
    assert load_registry(config).domains == ["mine", "other"]  # --split other-to-mine works at once


def test_export_never_replaces_a_users_model_or_package(tmp_path, student_checkpoint):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"my own model")
    for extra in ([], ["--overwrite"]):
        assert_user_error(fasd("export", student_checkpoint, "--out", mine, *extra),
                          "is not a model file that fasd wrote")
    package = tmp_path / "pkg.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "notes.txt").write_text("mine")
    before = _tree(package)
    assert_user_error(fasd("export", student_checkpoint, "--format", "coreml", "--out", package, "--overwrite"),
                      "is not a model file that fasd wrote")
    assert mine.read_bytes() == b"my own model" and _tree(package) == before


def test_export_replaces_its_own_file_only_with_overwrite(tmp_path, student_checkpoint):
    out = tmp_path / "student.onnx"
    assert fasd("export", student_checkpoint, "--out", out).exit_code == 0
    first = out.read_bytes()
    assert_user_error(fasd("export", student_checkpoint, "--out", out), "pass --overwrite to replace it")
    assert out.read_bytes() == first
    assert fasd("export", student_checkpoint, "--out", out, "--overwrite").exit_code == 0


def test_experiment_never_overwrites_a_users_tables(tmp_path, synth_config):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "tables.md").write_text("my tables")
    assert_user_error(fasd("experiment", "--protocols", "alpha-to-beta", "--seeds", "0", "--ablations",
                           "no-teacher", "--config", synth_config, "--out", out),
                      "holds tables.md that fasd experiment did not write")
    assert _tree(out) == {"tables.md": b"my tables"}


# --- a full disk: one line naming the file, no temporary file left --------------------------------------------

def _full_disk_save(payload, path, *args, **kwargs):
    """torch.save on a full disk: part of the file written, then torch's own RuntimeError."""
    Path(path).write_bytes(b"PK\x03\x04partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_leaves_no_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _full_disk_save)
    out = tmp_path / "best.pt"
    with pytest.raises(FasdError, match=f"cannot write {out}: the write failed part-way") as info:
        write_atomically(out, lambda tmp: torch.save({}, tmp))
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk_is_one_line_and_keeps_no_tmp(tmp_path, synth_config, monkeypatch):
    from fasd.student_train import checkpoint

    monkeypatch.setattr(checkpoint.torch, "save", _full_disk_save)
    run = tmp_path / "run"
    assert_user_error(fasd("train", "--config", synth_config, "--split", "alpha-to-beta", "--no-teacher",
                           "--epochs", "1", "--max-draws", "16", "--batch-size", "8", "--workers", "0", "--out", run),
                      f"cannot write {run}")
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_an_ordinary_write_error_keeps_its_errno_and_names_the_file(tmp_path):
    def fail(tmp):
        tmp.write_text("x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as info:
        write_atomically(tmp_path / "plan.json", fail)
    assert info.value.errno == 28 and info.value.filename == str(tmp_path / "plan.json")
    assert list(tmp_path.iterdir()) == []


# --- usage errors and help answer before the heavy imports -------------------------------------------------

def test_help_and_usage_errors_import_no_torch(tmp_path):
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom fasd.cli import app\n"
             "for args in (['--help'], ['train', '--help'], ['train', '--config', sys.argv[1]]):\n"
             "    CliRunner().invoke(app, args)\n"
             "print(sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))\n")
    config = tmp_path / "fasd.toml"
    config.write_text('[datasets.a]\npath = "a.h5"\n')
    result = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_ingest_help_states_the_margin_default():
    from fasd.data.ingest.geometry import DEFAULT_MARGIN

    assert f"(default {DEFAULT_MARGIN})" in " ".join(fasd("ingest", "--help").output.split())


# --- synth and demo: a user's fasd.toml keeps its names; a damaged timings.json is tolerated ----------------

def test_synth_never_rebinds_a_name_the_users_config_points_elsewhere(tmp_path):
    config = tmp_path / "fasd.toml"
    config.write_text('[datasets.alpha]\nformat = "hdf5"\npath = "/data/my_alpha.h5"\n')
    before = config.read_text()
    assert_user_error(fasd("synth", tmp_path, "--domains", "2", "--frames", "36", "--size", "32"),
                      "already registers 'alpha'")
    assert config.read_text() == before and _tree(tmp_path) == {"fasd.toml": before.encode()}


def test_demo_never_merges_into_a_users_data_config(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "fasd.toml").write_text('[datasets.mine]\nformat = "hdf5"\npath = "mine.h5"\n')
    before = _tree(tmp_path)
    assert_user_error(fasd("demo", "--out", tmp_path), "registers datasets of its own (mine)")
    assert _tree(tmp_path) == before


def test_a_truncated_timings_json_is_tolerated_and_rewritten_whole(tmp_path, capsys):
    from fasd.demo.pipeline import StageClock

    (tmp_path / "timings.json").write_text('{"synth": 1.')
    clock = StageClock(tmp_path / "timings.json", lambda _line: None)
    assert clock.seconds == {} and "timings.json is damaged" in capsys.readouterr().err
    with clock.stage("teacher"):
        pass
    assert list(json.loads((tmp_path / "timings.json").read_text())) == ["teacher"]
    assert [p.name for p in tmp_path.iterdir()] == ["timings.json"]


@pytest.mark.parametrize("recipe, paper", [("vlmkd", "paper A"), ("mmda", None), ("hatfas", None)])
def test_the_demo_verdict_compares_with_the_recipes_own_paper_only(recipe, paper):
    from fasd.demo.report import testable_check
    from fasd.demo.stats import PAPER_EFFECTS, compare

    comparison = compare([0.10, 0.12, 0.11], [0.30, 0.25, 0.35], paper=PAPER_EFFECTS.get(recipe))
    block = {"teacher": {"at_eer": {"acer": 0.05}}, "no_teacher": {"mean": {"at_eer": {"acer": 0.30}}},
             "comparison": comparison}
    text = comparison["verdict"] + testable_check(block)
    assert ("paper A" in text) == (paper == "paper A") and "paper B" not in text


# --- inspect --check sees every deleted or impossible chunk; --repair restores it ------------------------------

@pytest.fixture
def store_copy(tmp_path, synth_store) -> Path:
    import shutil

    return Path(shutil.copytree(synth_store, tmp_path / "teacher.zarr"))


def _labels(store: Path) -> dict:
    from fasd.store_schema.inspect import summarize_store
    from fasd.store_schema.store import open_store

    return summarize_store(open_store(str(store)), "alpha")["datasets"]["alpha"]["labels"]


@pytest.mark.parametrize("array", ["label", "split", "video_id", "attack_type"])
def test_a_deleted_metadata_chunk_is_flagged_and_repaired(store_copy, synth_config, tiny_flip_checkpoint, array):
    before = _labels(store_copy)
    (store_copy / "alpha" / array / "c" / "0").unlink()
    plain = fasd("inspect", store_copy, "--dataset", "alpha")
    assert plain.exit_code == 0 and f"its '{array}' chunk is missing (deleted)" in plain.output
    checked = fasd("inspect", store_copy, "--check")
    assert checked.exit_code == 1 and f"[alpha] 1 damaged chunk(s): chunk 0: its '{array}' chunk" in checked.output
    assert "[beta] every chunk reads back intact" in checked.output
    repaired = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store", store_copy,
                    "--checkpoint", tiny_flip_checkpoint, "--repair", "--workers", "0")
    assert repaired.exit_code == 0, repaired.output
    assert fasd("inspect", store_copy, "--check").exit_code == 0 and _labels(store_copy) == before


def test_a_deleted_text_array_is_flagged_and_restored(store_copy, synth_config, tiny_flip_checkpoint):
    (store_copy / "text" / "centroids" / "c" / "0" / "0").unlink()
    checked = fasd("inspect", store_copy, "--check")
    assert checked.exit_code == 1 and "text/centroids: a chunk is missing (deleted)" in checked.output
    restored = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store", store_copy,
                    "--checkpoint", tiny_flip_checkpoint, "--workers", "0")
    assert restored.exit_code == 0, restored.output
    assert "[text] every text array reads back intact" in fasd("inspect", store_copy, "--check").output


def test_impossible_view_parameters_are_told_from_every_drawn_one():
    from fasd.views import ViewSettings, draw_views, impossible_views

    drawn = np.concatenate([draw_views(f"frame{i}", ViewSettings(4, 0, True)) for i in range(200)])
    assert not impossible_views(drawn).any()
    for column, value in [(2, 5.0), (4, 0.5), (0, -0.1), (3, 0.0), (5, -1.0), (7, np.nan)]:
        broken = drawn[:3].copy()
        broken[1, column] = value
        assert impossible_views(broken).tolist() == [False, True, False], (column, value)


def test_impossible_view_parameters_are_flagged_and_refused(tmp_path, synth_config, tiny_flip_checkpoint):
    import zarr

    column, value = 2, 5.0  # crop h = 5

    store = tmp_path / "views.zarr"
    for name in ("alpha", "beta"):
        cached = fasd("cache-teacher", "--dataset", name, "--config", synth_config, "--store", store, "--checkpoint",
                      tiny_flip_checkpoint, "--views", "2", "--workers", "0")
        assert cached.exit_code == 0, cached.output
    params = zarr.open_array(str(store / "alpha" / "views" / "params"), mode="r+")
    row = params[3]
    row[:, column] = value  # every view of the row, whichever --verify draws
    params[3] = row
    checked = fasd("inspect", store, "--check")
    assert checked.exit_code == 1 and "view parameters no draw could give" in checked.output
    assert_user_error(fasd("inspect", store, "--dataset", "alpha", "--verify", "60", "--checkpoint",
                           tiny_flip_checkpoint, "--config", synth_config), "view parameters no draw could give")
    assert_user_error(fasd("train", "--config", synth_config, "--split", "alpha-to-beta", "--store", store,
                           "--views", "--epochs", "1", "--max-draws", "16", "--batch-size", "8", "--workers", "0",
                           "--out", tmp_path / "run"), "view parameters no draw could give", "--repair")


# --- tracebacks that are now one line -----------------------------------------------------------------------

BINARY = bytes(range(256)) * 4


def test_binary_prompts_and_captions_are_one_line(tmp_path, synth_config, tiny_flip_checkpoint):
    binary = tmp_path / "prompts.json"
    binary.write_bytes(BINARY)
    assert_user_error(fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--checkpoint",
                           tiny_flip_checkpoint, "--prompts", binary, "--store", tmp_path / "s.zarr"),
                      f"--prompts {binary} is not a UTF-8 text file")
    assert_user_error(fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--method", "mmda",
                           "--captions", binary, "--out", tmp_path / "t.pt"), f"--captions {binary} is not a UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.json"]


STUDENT_RUN = ["--split", "alpha-to-beta", "--no-teacher", "--epochs", "1", "--max-draws", "16", "--batch-size", "8",
               "--workers", "0", "--lr", "1e-3"]


@pytest.mark.parametrize("flags, message", [
    (["--student", "deit-tiny", "--input-size", "0"], "--input-size must be a positive number of pixels"),
    (["--input-size", "64"], "--input-size applies to --student deit-tiny; --student mobilenetv3-small does not"),
    (["--modality-dropout", "0.3"], "--modality-dropout applies to --student mobilenetv3-small-mm"),
    (["--student-arch", "vit_small_patch16_224"], "--student-arch applies to --student deit-tiny"),
])
def test_student_flags_the_student_ignores_are_refused(tmp_path, synth_config, flags, message):
    assert_user_error(fasd("train", "--config", synth_config, *STUDENT_RUN, *flags, "--out", tmp_path / "run"),
                      message)


def test_a_loss_term_reading_an_output_the_student_lacks_is_one_line():
    from fasd.student_train.loss_terms import TERMS
    from fasd.student_train.students import StudentConfig, check_student_fits, student_kind

    with pytest.raises(FasdError, match="--lambda-head-aware reads the student's layer_cls, which --student "
                                        "mobilenetv3-small does not return: pass --lambda-head-aware 0 or "
                                        "--student deit-tiny"):
        check_student_fits(student_kind("mobilenetv3-small"), StudentConfig(), [TERMS["ce"], TERMS["head-aware"]])
    with pytest.raises(FasdError, match="--lambda-feat reads the student's projection"):
        check_student_fits(student_kind("deit-tiny"), StudentConfig(), [TERMS["feat"]])


@pytest.mark.parametrize("change, message", [
    (lambda p: p | {"student_config": {**p["student_config"], "width": 3}}, "'student_config' has the key 'width'"),
    (lambda p: p | {"student_config": [1, 2]}, "'student_config' is a list, not a table"),
    (lambda p: p | {"model": {k: v for k, v in p["model"].items() if k != "logit_head.3.weight"}},
     "missing key 'logit_head.3.weight'"),
    (lambda p: p | {"model": {**p["model"], "extra.weight": torch.zeros(2)}}, "unexpected key 'extra.weight' (2,)"),
])
def test_a_checkpoint_that_does_not_fit_names_the_key(tmp_path, student_checkpoint, change, message):
    payload = torch.load(student_checkpoint, weights_only=True)
    broken = tmp_path / "broken.pt"
    torch.save(change(payload), broken)
    line = assert_user_error(fasd("export", broken, "--out", tmp_path / "s.onnx"), str(broken), message)
    assert "Error(s) in loading" not in line and "{" not in line.split(message)[0]
    assert not (tmp_path / "s.onnx").exists()


# --- silent wrong results ---------------------------------------------------------------------------------------

def test_raw_vit_cls_features_are_compared_by_direction_with_a_line(store_copy, capsys):
    import zarr

    from fasd.student_train.losses import feature_loss
    from fasd.student_train.targets import warn_raw_features

    torch.manual_seed(0)
    projection, raw = torch.randn(4, 192), 194 * torch.nn.functional.normalize(torch.randn(4, 192), dim=1)
    assert feature_loss(projection, raw).item() == pytest.approx(
        feature_loss(projection, torch.nn.functional.normalize(raw, dim=1)).item(), rel=1e-6)
    assert feature_loss(projection, raw).item() <= 4.0  # ≤ 4 for unit vectors; the raw token gave ~ 194²
    warn_raw_features(str(store_copy), {"feat": 1.0})
    assert capsys.readouterr().err == ""  # a CLIP teacher's unit features: nothing to say
    feature = zarr.open_array(str(store_copy / "alpha" / "feature"), mode="r+")
    feature[:] = feature[:] * 194
    warn_raw_features(str(store_copy), {"feat": 1.0})
    assert "feature targets are not unit vectors (median norm 194" in capsys.readouterr().err


@pytest.fixture(scope="module")
def multimodal_checkpoint(tmp_path_factory) -> Path:
    from fasd.student_train.checkpoint import save_checkpoint
    from fasd.student_train.students import StudentConfig, student_kind

    torch.manual_seed(0)
    student = student_kind("mobilenetv3-small-mm").build(StudentConfig()).eval()
    path = tmp_path_factory.mktemp("mm") / "best.pt"
    save_checkpoint(path, student, epoch=0, config={"seed": 0, "student": "mobilenetv3-small-mm"})
    return path


def _faces(folder: Path, names: list[str]) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((32, 32, 3), 40 * index, dtype=np.uint8)).save(folder / name)


def test_multimodal_predict_scores_rgb_faces_only_and_matches_other_modalities(tmp_path, multimodal_checkpoint):
    for modality in ("rgb", "depth", "ir"):
        _faces(tmp_path / "frames" / modality, ["a.png", "b.png"])
    _faces(tmp_path / "jpg_depth", ["a.jpg", "b.jpg"])
    result = fasd("predict", multimodal_checkpoint, tmp_path / "frames", "--no-detect", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("["):])
    assert [Path(row["path"]).parent.name for row in rows] == ["rgb", "rgb"]
    assert "left out 4 file(s) under folders named depth/ir" in result.output
    assert_user_error(fasd("predict", multimodal_checkpoint, tmp_path / "frames" / "rgb", "--no-detect", "--depth",
                           tmp_path / "jpg_depth"), "holds no file named like the RGB images (e.g. a.png)")


def test_a_16_bit_depth_png_keeps_its_depth_instead_of_clipping_to_white(tmp_path):
    from PIL import Image

    from fasd.data.ingest.readers import read_image

    depth = np.array([[0, 500], [1000, 2000]], dtype=np.uint16)  # millimetres
    Image.fromarray(depth).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    read = read_image(tmp_path / "d.png")
    assert read.dtype == np.uint8 and read.shape == (2, 2, 3)
    np.testing.assert_array_equal(read[..., 0], np.round(depth / 2000 * 255).astype(np.uint8))  # not all 255


def test_an_mcio_folder_without_val_is_a_training_source(tmp_path, capsys):
    from PIL import Image

    from fasd.data.mcio import MCIOFrameSource
    from fasd.data.source import in_val_share

    videos = [f"v{i:02d}" for i in range(40)]
    for cls in ("real", "fake"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "test" / cls).mkdir(parents=True)
        for video in videos:
            Image.new("RGB", (8, 8)).save(tmp_path / "train" / cls / f"{cls}{video}_frame0.png")
        Image.new("RGB", (8, 8)).save(tmp_path / "test" / cls / "t_frame0.png")
    table = MCIOFrameSource(tmp_path, "mine").table
    val = {str(v) for v, s in zip(table.video_id, table.split) if s == "val"}
    assert val == {f"train/{c}/{c}{v}" for c in ("real", "fake") for v in videos if in_val_share(f"train/{c}/{c}{v}")}
    assert val and set(table.split) == {"train", "val", "test"}  # a video is never in both train and val
    assert not val & {str(v) for v, s in zip(table.video_id, table.split) if s == "train"}
    said = " ".join(capsys.readouterr().err.split())
    assert f"mine: {tmp_path} has no val/ folder; its validation split is {len(val) * 1} frame(s)" in said


# --- flags that would do nothing are refused ---------------------------------------------------------------------

@pytest.mark.parametrize("flag", [["--no-md2a"], ["--udsa-depth", "2"], ["--captions", "c.json"]])
def test_mmda_switches_are_refused_by_other_methods(tmp_path, synth_config, flag):
    assert_user_error(fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--method", "clip",
                           "--out", tmp_path / "t.pt", *flag), "--method clip does not read them")


def test_an_empty_missing_is_refused(student_checkpoint, synth_config):
    assert_user_error(fasd("evaluate", student_checkpoint, "--dataset", "alpha", "--config", synth_config,
                           "--missing", ""), "--missing '' names no modality")


def test_litert_is_marked_in_export_help_and_its_refusal_states_no_false_version_rule(student_checkpoint, tmp_path):
    assert "NOT written in this environment" in " ".join(fasd("export", "--help").output.split())
    line = assert_user_error(fasd("export", student_checkpoint, "--format", "litert", "--out", tmp_path / "s.tflite"),
                             "no LiteRT converter installs beside fasd's packages")
    assert "< 2.15" not in line and not (tmp_path / "s.tflite").exists()


# --- no code in a malicious pickle runs at any checkpoint-taking flag ----------------------------------------------

class _Payload:
    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran.txt"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": payload, "model": payload, "fasd_student": 1}, path)
    torch.load(path, weights_only=False)  # the payload really runs when unpickled unsafely ...
    assert marker.read_text() == "pwned"
    marker.unlink()  # ... which no fasd command may do
    return path, marker


@pytest.mark.parametrize("command", [
    lambda evil, cfg, out: ["teacher-finetune", "--sources", "alpha", "--config", cfg, "--init", evil, "--out", out],
    lambda evil, cfg, out: ["teacher-finetune", "--sources", "alpha", "--config", cfg, "--method", "vit", "--init",
                            evil, "--out", out],
    lambda evil, cfg, out: ["cache-teacher", "--dataset", "alpha", "--config", cfg, "--checkpoint", evil, "--store",
                            out],
    lambda evil, cfg, out: ["train", "--config", cfg, *STUDENT_RUN, "--student-weights", evil, "--out", out],
    lambda evil, cfg, out: ["export", evil, "--out", f"{out}.onnx"],
    lambda evil, cfg, out: ["evaluate", evil, "--dataset", "alpha", "--config", cfg],
])
def test_no_code_in_a_malicious_pickle_runs(tmp_path, synth_config, malicious, command):
    evil, marker = malicious
    result = fasd(*command(evil, synth_config, tmp_path / "out"))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not marker.exists()


def test_export_filters_known_harmless_third_party_lines_and_keeps_the_rest():
    script = (
        "import os, sys\n"
        "from fasd.export.noise import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\\n')\n"
        "    sys.stderr.write(\"Failed to load _MLModelProxy: No module named 'coremltools.libcoremlpython'\\n\")\n"
        "    sys.stderr.write(\"WARNING:root:Axis 1 is out-of-range for weight 'head.1.weight' with rank 1\\n\")\n"
        "    os.write(2, b'a real problem\\n')\n"
        "    sys.stderr.write('Axis 1 is out-of-range for weight w with rank 2\\n')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stderr == "a real problem\nAxis 1 is out-of-range for weight w with rank 2\n"


def test_layers_for_a_teacher_that_cannot_tap_them_is_refused(tmp_path, synth_config, tiny_flip_checkpoint):
    assert_user_error(fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--checkpoint",
                           tiny_flip_checkpoint, "--layers", "1", "--store", tmp_path / "s.zarr", "--workers", "0"),
                      "--teacher flip-mcl cannot tap intermediate layers")
    assert not (tmp_path / "s.zarr").exists()


def test_an_mmda_teacher_on_rgb_only_packs_says_so(tmp_path, synth_config):
    result = fasd("teacher-finetune", "--sources", "alpha", "--config", synth_config, "--method", "mmda", "--out",
                  tmp_path / "mm.pt", "--epochs", "1", "--max-frames-per-epoch", "8", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    said = "'alpha' holds no depth, ir: the rgb/depth/ir MMDA teacher sees them as missing (zero images)"
    assert said in result.output
    cached = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--teacher", "mmda", "--checkpoint",
                  tmp_path / "mm.pt", "--store", tmp_path / "s.zarr", "--workers", "0")
    assert cached.exit_code == 0 and "'alpha' holds no depth, ir: the rgb/depth/ir mmda teacher" in cached.output


def test_a_pack_whose_mask_has_no_rgb_anywhere_says_so(tmp_path, capsys):
    from fasd.config import write_config
    from fasd.data.hdf5_pack import PackWriter

    images = np.zeros((4, 16, 16, 3), np.uint8)
    with PackWriter(tmp_path / "norgb.h5", dataset="norgb", size=16, source="test", crop_policy="synthetic-centred",
                    modalities=("rgb", "depth", "ir")) as writer:
        writer.append(images, [f"f{i}" for i in range(4)], [0, 1, 0, 1], ["test"] * 4, ["v"] * 4, [""] * 4,
                      depth=images, ir=images, present=np.tile([False, True, True], (4, 1)))
    write_config(tmp_path / "fasd.toml", {"norgb": {"format": "hdf5", "path": "norgb.h5"}}, None)
    from fasd.config import load_registry
    from fasd.data.open_source import open_source

    open_source(load_registry(tmp_path / "fasd.toml").dataset("norgb"))
    assert "norgb.h5: modalities marks rgb absent on every frame" in capsys.readouterr().err
