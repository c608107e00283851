"""Views (consistent teaching): seeded per-frame view draws, apply_view against torchvision and hand crops, the
cache job's per-view targets against the libraries' own teachers on views replayed by hand (vlmkd: open_clip,
hatfas: timm), identical views in one process, in shards and after kill -9 + resume, the student's replay and
the view's targets, inspect/--verify/--check and the fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from fasd.config import load_registry
from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.data.open_source import open_source
from fasd.store_schema.store import open_store, read_strings
from fasd.student_train.data import StudentFrames, ViewSampler
from fasd.student_train.targets import attach_targets
from fasd.teacher_cache.arch import TINY_ARCH, random_clip
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher
from fasd.training.frames import DomainRows
from fasd.training.sampler import domain_balanced_sampler
from fasd.training.transforms import eval_transform, view_transform
from fasd.views import (CROP_RATIO, CROP_SCALE, JITTER, PARAM_COLUMNS, ViewSettings, apply_view, draw_views)

from helpers import dying_cache_command
from helpers import assert_one_line, fasd

K, CHUNK_ROWS, BATCH = 3, 8, 4
VIEW_ARRAYS = ("views/params", "views/feature", "views/logits", "feature", "logits", "done")
VIT_ARCH, VIT_SIZE = "deit_tiny_patch16_224", 32


# ---------------------------------------------------------------- the draws and apply_view

@settings(max_examples=40, deadline=None)
@given(frame_id=st.text(min_size=1, max_size=30), seed=st.integers(0, 2**32 - 1), count=st.integers(1, 6))
def test_draws_are_a_function_of_seed_and_frame_id_within_the_student_ranges(frame_id, seed, count):
    views = draw_views(frame_id, ViewSettings(count, seed, True))
    assert views.shape == (count, len(PARAM_COLUMNS)) and views.dtype == np.float32
    np.testing.assert_array_equal(views, draw_views(frame_id, ViewSettings(count, seed, True)))
    y0, x0, h, w, flip, *factors = views.T
    area, ratio = h * w, w / h
    full = (h == 1) & (w == 1)  # RandomResizedCrop's fallback
    assert (full | ((area >= CROP_SCALE[0] - 1e-5) & (area <= CROP_SCALE[1] + 1e-5))).all()
    assert (full | ((ratio >= CROP_RATIO[0] - 1e-5) & (ratio <= CROP_RATIO[1] + 1e-5))).all()
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 1 + 1e-6).all() and (x0 + w <= 1 + 1e-6).all()
    assert set(np.unique(flip)) <= {0.0, 1.0}
    assert (np.abs(np.array(factors) - 1) <= JITTER + 1e-6).all()
    # Without jitter: the same crops and flips, factors 1.0.
    plain = draw_views(frame_id, ViewSettings(count, seed, False))
    np.testing.assert_array_equal(plain[:, :5], views[:, :5])
    assert (plain[:, 5:] == 1.0).all()


def test_draws_are_the_same_in_another_process_and_differ_between_frames_and_seeds():
    code = "import sys; from fasd.views import *; print(draw_views(sys.argv[1], ViewSettings(4, 7)).tolist())"
    other = subprocess.run([sys.executable, "-c", code, "alpha/v001/f003"], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    np.testing.assert_array_equal(np.array(json.loads(other.stdout), dtype=np.float32),
                                  draw_views("alpha/v001/f003", ViewSettings(4, 7)))
    a = draw_views("alpha/v001/f003", ViewSettings(4, 7))
    assert not np.array_equal(a, draw_views("alpha/v001/f004", ViewSettings(4, 7)))
    assert not np.array_equal(a, draw_views("alpha/v001/f003", ViewSettings(4, 8)))
    # Over many frames the flips are fair coins and the crop areas span the student's range.
    many = np.concatenate([draw_views(f"f{i}", ViewSettings(4, 0)) for i in range(500)])
    assert 0.45 < many[:, 4].mean() < 0.55
    area = many[:, 2] * many[:, 3]
    assert area.min() < 0.62 and area.max() > 0.98


def _image(seed: int = 0, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_apply_view_crops_flips_and_jitters_like_hand_and_torchvision():
    image = _image()
    # An integer-aligned crop at its own size is exactly the pixels of that box; flip mirrors the columns.
    params = np.array([8 / 48, 4 / 48, 32 / 48, 32 / 48, 1, 1, 1, 1], dtype=np.float32)
    np.testing.assert_array_equal(apply_view(image, params, 32), image[8:40, 4:36][:, ::-1])
    params[4] = 0
    np.testing.assert_array_equal(apply_view(image, params, 32), image[8:40, 4:36])
    # The whole frame is PIL's bicubic resize.
    whole = np.array([0, 0, 1, 1, 0, 1, 1, 1], dtype=np.float32)
    np.testing.assert_array_equal(apply_view(image, whole, 20),
                                  np.asarray(Image.fromarray(image).resize((20, 20), Image.BICUBIC)))
    # Jitter: torchvision's adjust_brightness, _contrast, _saturation in that order (on floats).
    factors = (1.15, 0.85, 1.2)
    jittered = apply_view(image, np.array([0, 0, 1, 1, 0, *factors], dtype=np.float32), 48)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    tensor = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(tensor, factors[0]), factors[1]),
                                  factors[2])
    expected = (tensor.permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(jittered.astype(float) - expected).max() <= 1.0
    assert np.abs(jittered.astype(float) - image).mean() > 5  # the factors did something


def test_a_view_shows_the_same_pixels_at_the_teacher_and_the_student_resolution():
    """Rendered at 96 px (a teacher) and brought down to 48, a view equals its 48 px render (a student) up to
    resampling; another view of the same frame is much further away."""
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    image = (np.stack([np.sin(6 * xx) * np.cos(3 * yy), xx * yy, np.sin(9 * yy + 2 * xx)], -1) * 120 + 128)
    image = image.clip(0, 255).astype(np.uint8)
    views = draw_views("frame", ViewSettings(6, 1, True))
    for k, params in enumerate(views):
        teacher = np.asarray(Image.fromarray(apply_view(image, params, 96)).resize((48, 48), Image.BICUBIC))
        student = apply_view(image, params, 48).astype(float)
        same = np.abs(teacher - student).mean()
        other = np.abs(apply_view(image, views[(k + 1) % 6], 48) - student).mean()
        assert same < 2.0 and other > 4 * same, (k, same, other)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), size=st.integers(4, 64), jitter=st.booleans())
def test_apply_view_of_any_drawn_view_is_a_uint8_square_of_the_asked_size(seed, size, jitter):
    image = _image(seed % 7, 40)
    for params in draw_views(str(seed), ViewSettings(2, seed, jitter)):
        out = apply_view(image, params, size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


# ---------------------------------------------------------------- the cache job on views (vlmkd: tiny CLIP)

def _source(config, name="alpha"):
    return open_source(load_registry(config).dataset(name))


def _cache_views(config, checkpoint, store, name="alpha", **overrides) -> None:
    options = CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, progress=False, views=ViewSettings(K, 5),
                           **overrides)
    run_cache(_source(config, name), load_teacher("flip-mcl", TeacherOptions(checkpoint)), str(store), options)


@pytest.fixture(scope="module")
def views_store(tmp_path_factory, synth_config, tiny_flip_checkpoint) -> str:
    """alpha and beta with K views, cached in one process on one thread (as the shard processes run)."""
    store = str(tmp_path_factory.mktemp("views") / "teacher.zarr")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in ("alpha", "beta"):
            _cache_views(synth_config, tiny_flip_checkpoint, store, name)
    finally:
        torch.set_num_threads(threads)
    return store


def _hand_view(image: np.ndarray, params: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """A stored view replayed by hand: the crop box in pixels, PIL bicubic to the teacher size, mirror,
    torchvision's jitter on floats, normalise -> (3, size, size)."""
    y0, x0, h, w, flip, b, c, s = params.tolist()
    height, width = image.shape[:2]
    crop = Image.fromarray(image).resize((size, size), Image.BICUBIC,
                                         box=(x0 * width, y0 * height, (x0 + w) * width, (y0 + h) * height))
    tensor = torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float() / 255
    if flip:
        tensor = tensor.flip(-1)
    tensor = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(tensor, b), c), s)
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _frames_and_params(store: str, source, rows: int):
    group = open_store(store).dataset(source.name)
    ids = read_strings(group["frame_id"])[:rows]
    images = [source.read_image(int(np.flatnonzero(source.table.frame_id == f)[0])) for f in ids]
    return group, ids, images


def test_vlmkd_stored_views_match_open_clip_on_views_replayed_by_hand(views_store, synth_config, tiny_clip_state):
    model = random_clip(TINY_ARCH, seed=0).float().eval()
    model.load_state_dict({k: v.half().float() for k, v in tiny_clip_state.items()})  # FLIP's fp16 file
    source = _source(synth_config)
    group, ids, images = _frames_and_params(views_store, source, 6)
    params = group["views/params"][:6]
    np.testing.assert_array_equal(params, np.stack([draw_views(i, ViewSettings(K, 5)) for i in ids]))
    batch = torch.stack([_hand_view(img, p, 224, IMAGENET_MEAN, IMAGENET_STD) for img, ps in zip(images, params)
                         for p in ps])
    with torch.no_grad():
        reference = torch.nn.functional.normalize(model.encode_image(batch), dim=-1).numpy()
    stored = group["views/feature"][:6].astype(np.float32).reshape(6 * K, -1)
    assert _cosine(stored, reference).min() >= 0.999
    # The unaugmented target is measurably another vector: the test could fail.
    plain = np.repeat(group["feature"][:6].astype(np.float32), K, axis=0)
    assert _cosine(plain, reference).min() < _cosine(stored, reference).min()


# the views' features of chunk 2 written, its done flag not: like kill -9
DYING = dying_cache_command("views/feature")


@pytest.mark.slow
def test_views_are_identical_in_one_process_in_shards_and_after_kill9_and_resume(
        tmp_path, views_store, synth_config, tiny_flip_checkpoint):
    reference = open_store(views_store).dataset("alpha")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for shard in (1, 0):
            _cache_views(synth_config, tiny_flip_checkpoint, tmp_path / "shards.zarr", shard=shard, num_shards=2)
        args = ["cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store", tmp_path / "killed.zarr",
                "--checkpoint", tiny_flip_checkpoint, "--chunk-rows", CHUNK_ROWS, "--batch-size", BATCH,
                "--workers", 0, "--views", K, "--view-seed", 5]
        died = subprocess.run([sys.executable, "-c", DYING, *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert died.returncode == 137, died.stdout + died.stderr
        killed = open_store(str(tmp_path / "killed.zarr")).dataset("alpha")
        assert killed["done"][:].tolist()[:2] == [True, False]
        assert fasd(*args).exit_code == 0
    finally:
        torch.set_num_threads(threads)
    for store in ("shards.zarr", "killed.zarr"):
        group = open_store(str(tmp_path / store)).dataset("alpha")
        for array in VIEW_ARRAYS:
            np.testing.assert_array_equal(group[array][:], reference[array][:], err_msg=f"{store} {array}")


def test_inspect_shows_k_and_bytes_verify_recomputes_views_check_covers_them(tmp_path, views_store, synth_config,
                                                                             tiny_flip_checkpoint):
    result = fasd("inspect", views_store, "--verify", "4", "--checkpoint", tiny_flip_checkpoint,
                  "--config", synth_config, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    single = summary["views"]["single_view_bytes_per_frame"]
    assert summary["views"]["count"] == K and summary["views"]["view_bytes_per_frame"] == K * single + K * 4 * 8
    verify = summary["verify"]["alpha"]
    assert verify["view_params_match"] and verify["worst_cosine_per_target"]["views/feature"] >= 0.999
    assert "views/feature" in summary["targets"] and verify["max_logit_diff"] < 0.05
    text = fasd("inspect", views_store).output
    assert f"views       K={K} per frame" in text
    # A deleted chunk of a view array is found by --check.
    import shutil
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(views_store, damaged)
    chunk_file = next((damaged / "alpha" / "views" / "feature" / "c").rglob("*"))
    while chunk_file.is_dir():
        chunk_file = next(chunk_file.iterdir())
    chunk_file.unlink()
    checked = fasd("inspect", damaged, "--check")
    assert checked.exit_code == 1 and "'views/feature' has missing values" in checked.output


def test_other_views_are_refused_like_another_teacher_and_plain_stores_are_unchanged(
        tmp_path, views_store, synth_config, tiny_flip_checkpoint):
    assert open_store(views_store).teacher["views"] == {"count": K, "seed": 5, "jitter": True}
    result = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store", views_store,
                  "--checkpoint", tiny_flip_checkpoint, "--chunk-rows", CHUNK_ROWS, "--views", K + 1,
                  "--view-seed", 5)
    assert_one_line(result, "another teacher", "views")
    assert_one_line(fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store",
                           tmp_path / "x.zarr", "--checkpoint", tiny_flip_checkpoint, "--views", -1), "--views")
    # An fsspec store (memory://) with fewer views: the same first views (draws are prefix-stable in K).
    run_cache(_source(synth_config), load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint)),
              "memory://views-test.zarr", CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, progress=False,
                                                       views=ViewSettings(K - 1, 5), splits=("test",)))
    remote, local = (open_store(path).dataset("alpha") for path in ("memory://views-test.zarr", views_store))
    row_of = {f: i for i, f in enumerate(read_strings(local["frame_id"]))}
    rows = [row_of[f] for f in read_strings(remote["frame_id"])]
    np.testing.assert_array_equal(remote["views/params"][:], local["views/params"][:][rows, :K - 1])
    assert _cosine(remote["views/feature"][:].astype(np.float32),
                   local["views/feature"][:][rows, :K - 1].astype(np.float32)).min() >= 0.999


# ---------------------------------------------------------------- the student's replay

def test_student_replays_the_drawn_view_and_gets_that_views_targets(views_store, synth_config):
    source = _source(synth_config)
    rows = source.table.rows_in_splits(["train"])
    frames = StudentFrames([DomainRows(source, rows)], eval_transform(32), replay=view_transform(32))
    store, (targets,) = attach_targets(views_store, [frames], ("feature", "logits"))
    _, (streamed,) = attach_targets(views_store, [StudentFrames([DomainRows(source, rows)], eval_transform(32),
                                                                replay=view_transform(32))],
                                    ("feature", "logits"), stream=True)
    group = store.dataset("alpha")
    store_row = {f: i for i, f in enumerate(read_strings(group["frame_id"]))}
    items = []
    for index, view in ((0, 2), (5, 0), (9, 1)):
        image, label, _, item, readable = frames[(index, view)]
        assert readable
        row = int(rows[index])
        params = group["views/params"][store_row[source.table.frame_id[row]], view]
        expected = view_transform(32)(source.read_image(row), params)
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
        assert label == source.table.label[row] and item.tolist() == [index, view]
        items.append(item)
    got, got_streamed = targets(np.stack(items)), streamed(np.stack(items))
    for (index, view), values in zip(((0, 2), (5, 0), (9, 1)), got["feature"]):
        stored = group["views/feature"][store_row[source.table.frame_id[rows[index]]], view]
        np.testing.assert_array_equal(values.numpy(), stored.astype(np.float32))
    for name in got:
        torch.testing.assert_close(got[name], got_streamed[name], rtol=0, atol=0)
    # Without replay the same store gives the unaugmented targets and plain items.
    plain = StudentFrames([DomainRows(source, rows)], eval_transform(32))
    _, (plain_targets,) = attach_targets(views_store, [plain], ("feature",))
    assert isinstance(plain[0][3], int)
    np.testing.assert_array_equal(plain_targets(np.array([0]))["feature"][0].numpy(),
                                  group["feature"][store_row[source.table.frame_id[rows[0]]]].astype(np.float32))


def test_view_sampler_keeps_the_frames_drawn_and_picks_views_uniformly_and_reproducibly():
    domains = np.repeat([0, 1], 1000)
    base = domain_balanced_sampler(domains, 2000, torch.Generator().manual_seed(3))
    frames = list(domain_balanced_sampler(domains, 2000, torch.Generator().manual_seed(3)))
    pairs = list(ViewSampler(base, 4, 11))
    assert [i for i, _ in pairs] == frames and len(ViewSampler(base, 4, 11)) == 2000
    views = np.array([v for _, v in pairs])
    assert np.bincount(views, minlength=4).min() > 400
    base = domain_balanced_sampler(domains, 2000, torch.Generator().manual_seed(3))
    assert list(ViewSampler(base, 4, 11)) == pairs


@pytest.mark.slow
def test_train_views_end_to_end_and_refused_on_a_store_without_views(tmp_path, views_store, synth_store,
                                                                     synth_config):
    common = ["train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--epochs", "1",
              "--max-draws", "16", "--batch-size", "8", "--workers", "0"]
    result = fasd(*common, "--store", views_store, "--views", "--stream-targets", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["views"] is True
    assert_one_line(fasd(*common, "--store", synth_store, "--views", "--out", tmp_path / "r2"),
                      "without views", "--views K")


# ---------------------------------------------------------------- hatfas: a tiny timm ViT teacher

@pytest.mark.slow
def test_hatfas_vit_views_match_timm_on_views_replayed_by_hand(tmp_path, synth_config):
    torch.manual_seed(3)
    model = timm.create_model(VIT_ARCH, pretrained=False, num_classes=2, img_size=VIT_SIZE).eval()
    checkpoint = tmp_path / "deit.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    store = tmp_path / "vit.zarr"
    result = fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--teacher", "vit", "--arch",
                  VIT_ARCH, "--checkpoint", checkpoint, "--layers", "4,6,8", "--store", store, "--chunk-rows", "64",
                  "--batch-size", "16", "--views", "2", "--view-jitter", "0", "--splits", "train,val")
    assert result.exit_code == 0, result.output
    source = _source(synth_config)
    group, ids, images = _frames_and_params(str(store), source, 5)
    params = group["views/params"][:5]
    assert (params[..., 5:] == 1.0).all() and group["views/layer_cls"].shape[1:] == (2, 3, 192)
    batch = torch.stack([_hand_view(img, p, VIT_SIZE, IMAGENET_MEAN, IMAGENET_STD) for img, ps in zip(images, params)
                         for p in ps])
    with torch.no_grad():
        logits = model(batch).numpy()
        cls = model.forward_head(model.forward_features(batch), pre_logits=True).numpy()
    assert _cosine(group["views/feature"][:5].astype(np.float32).reshape(10, -1), cls).min() >= 0.999
    np.testing.assert_allclose(group["views/logits"][:5].reshape(10, 2), logits, atol=2e-3)


def test_experiment_full_views_cells_replay_views_and_full_cells_do_not(synth_config, views_store):
    from fasd.experiment.plan import build_plan

    cells = build_plan(load_registry(synth_config), ["holdout-gamma"], [0, 1], ["full", "full-views"],
                       {"views": views_store}, {})
    assert [(c.ablation, c.seed, c.options.views) for c in cells] == [
        ("full", 0, False), ("full-views", 0, True), ("full", 1, False), ("full-views", 1, True)]
    assert cells[1].key == "holdout-gamma/views/full-views/seed0"
