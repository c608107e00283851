"""Mixed views (cache-teacher --views K --mix ...): timm's draws, the mixing by hand, the stored mixed view replayed
by the student equal to the teacher run on those pixels, the mixed soft labels, partners inside the chunk and split,
identical stores in one process, in shards and after kill -9 + resume, and the train-side flags and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from timm.data import Mixup
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.mixing import MixSettings, apply_mix, draw_mix, numpy_global_seed, partner_candidates
from fasd.store_schema.store import open_store, read_strings
from fasd.student_train.data import StudentFrames
from fasd.student_train.targets import attach_targets
from fasd.teacher_cache.arch import TINY_ARCH, random_clip
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher
from fasd.training.frames import DomainRows
from fasd.training.transforms import eval_transform, view_transform
from fasd.views import ViewSettings, draw_views

from helpers import assert_one_line, dying_cache_command, fasd

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K, CHUNK_ROWS, BATCH, SEED = 2, 16, 8, 5
HATFAS_MIX = MixSettings(mixup=0.8, cutmix=1.0)
MIXED = ViewSettings(K, SEED, True, HATFAS_MIX)
ARRAYS = ("views/params", "views/mix", "views/feature", "views/logits", "feature", "logits", "done")


def _cache(config, checkpoint, store, name="alpha", **overrides) -> None:
    options = CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, progress=False, views=MIXED, **overrides)
    run_cache(open_source(load_registry(config).dataset(name)), load_teacher("flip-mcl", TeacherOptions(checkpoint)),
              str(store), options)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory, synth_config, tiny_flip_checkpoint) -> str:
    store = str(tmp_path_factory.mktemp("mixed") / "teacher.zarr")
    for name in ("alpha", "beta"):
        _cache(synth_config, tiny_flip_checkpoint, store, name)
    return store


# ---------------------------------------------------------------- the draws and the mixing

def test_lambda_and_box_are_timms_draws_under_the_seeded_state():
    seen_cutmix = seen_mixup = 0
    for seed in range(200):
        mix = draw_mix(np.random.default_rng(seed), HATFAS_MIX, 224)
        with numpy_global_seed(np.random.default_rng(seed)):  # the same state, by timm's own calls
            lam, cut = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")._params_per_elem(1)
            if cut[0]:
                (yl, yh, xl, xh), lam_box = cutmix_bbox_and_lam((224, 224), float(lam[0]))
        if cut[0]:
            seen_cutmix += 1
            assert mix == pytest.approx((lam_box, yl / 224, xl / 224, (yh - yl) / 224, (xh - xl) / 224))
            assert mix[0] == pytest.approx(1 - mix[3] * mix[4])  # λ corrected to the box's area
        else:
            seen_mixup += 1
            assert mix == pytest.approx((float(lam[0]), 0, 0, 0, 0))
    assert seen_cutmix > 60 and seen_mixup > 60  # switch_prob 0.5
    state = np.random.get_state()[1].copy()
    draw_mix(np.random.default_rng(0), HATFAS_MIX, 224)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global state is left as it was
    assert isinstance(HATFAS_MIX.mixer(), Mixup)


def test_apply_mix_blends_or_pastes_the_box_by_hand():
    rng = np.random.default_rng(0)
    own, partner = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    blended = apply_mix(own, partner, np.array([0, 0.3, 0, 0, 0, 0]))
    np.testing.assert_array_equal(blended, np.rint(0.3 * own.astype(float) + 0.7 * partner).astype(np.uint8))
    boxed = apply_mix(own, partner, np.array([0, 0.75, 8 / 32, 4 / 32, 16 / 32, 8 / 32]))
    expected = own.copy()
    expected[8:24, 4:12] = partner[8:24, 4:12]
    np.testing.assert_array_equal(boxed, expected)
    np.testing.assert_array_equal(apply_mix(own, partner, np.array([0, 1.0, 0, 0, 0, 0])), own)


def test_partners_stay_in_the_chunk_and_the_split():
    splits = np.array(["train"] * 5 + ["val"] * 3 + ["train"] * 8)
    assert partner_candidates(1, 8, splits).tolist() == [0, 2, 3, 4]
    assert partner_candidates(6, 8, splits).tolist() == [5, 7]
    assert partner_candidates(9, 8, splits).tolist() == [8, 10, 11, 12, 13, 14, 15]
    assert partner_candidates(0, 1, splits).tolist() == [0]  # alone: itself, which leaves it unmixed


def test_mix_flag_parses_and_refuses_bad_values():
    assert MixSettings.parse("mixup=0.8,cutmix=1.0") == HATFAS_MIX
    assert MixSettings.parse(None) == MixSettings() and not MixSettings().active
    for bad in ("mixup", "mixup=x", "alpha=1", "mixup=-1", "mixup=0", "mixup=1,prob=2"):
        with pytest.raises(FasdError, match="--mix"):
            MixSettings.parse(bad)


# ---------------------------------------------------------------- the store and the student's replay

def test_stored_mixed_view_replayed_by_the_student_is_what_the_teacher_saw(mixed_store, synth_config,
                                                                          tiny_clip_state):
    model = random_clip(TINY_ARCH, seed=0).float().eval()
    model.load_state_dict({k: v.half().float() for k, v in tiny_clip_state.items()})  # FLIP's fp16 file
    source = open_source(load_registry(synth_config).dataset("alpha"))
    rows = source.table.rows_in_splits(["train"])
    frames = StudentFrames([DomainRows(source, rows)], eval_transform(224), replay=view_transform(224))
    store, (targets,) = attach_targets(mixed_store, [frames], ("feature", "logits"))
    group = store.dataset("alpha")
    store_row = {f: i for i, f in enumerate(read_strings(group["frame_id"]))}
    split = read_strings(group["split"])
    items = np.array([(i, k) for i in range(8) for k in range(K)])
    images = torch.stack([frames[tuple(item)][0] for item in items])
    with torch.no_grad():
        replayed = torch.nn.functional.normalize(model.encode_image(images), dim=-1).numpy()
    stored = targets(items)["feature"].numpy()
    cosine = (stored * replayed).sum(1) / np.linalg.norm(stored, axis=1)
    assert cosine.min() >= 0.999
    mix = np.stack([group["views/mix"][store_row[source.table.frame_id[rows[i]]], k] for i, k in items])
    mixed = mix[:, 1] < 1.0
    assert mixed.sum() >= 8 and (mix[mixed, 4] > 0).any() and (mix[mixed, 4] == 0).any()  # cutmix and mixup
    # The partner is another frame of the same chunk and split.
    own = np.array([store_row[source.table.frame_id[rows[i]]] for i, _ in items])
    partner = mix[:, 0].astype(int)
    assert (partner // CHUNK_ROWS == own // CHUNK_ROWS).all() and (split[partner] == split[own]).all()
    assert (partner != own).all()
    # The views without their partner are other pixels: the comparison can fail.
    unmixed = torch.stack([view_transform(224)(source.read_image(int(rows[i])),
                                               draw_views(source.table.frame_id[rows[i]], MIXED)[k])
                           for i, k in items[mixed]])
    with torch.no_grad():
        plain = torch.nn.functional.normalize(model.encode_image(unmixed), dim=-1).numpy()
    assert ((stored[mixed] * plain).sum(1) / np.linalg.norm(stored[mixed], axis=1)).min() < cosine.min()
    # Mixed labels: λ of the frame's own label and 1 - λ of its partner's, label-smoothed like timm.
    labels = source.table.label[rows[items[:, 0]]]
    soft = frames.soft_labels(items, labels, 0.1)
    partner_labels = np.asarray(group["label"][:])[partner]
    expected = mix[:, 1:2] * mixup_target(torch.as_tensor(labels), 2, 1.0, 0.1).numpy() + \
        (1 - mix[:, 1:2]) * mixup_target(torch.as_tensor(partner_labels), 2, 1.0, 0.1).numpy()
    np.testing.assert_allclose(soft, expected, atol=1e-6)


def test_a_mixed_store_records_the_mixing_and_is_refused_as_another_teacher(tmp_path, mixed_store, synth_config,
                                                                            tiny_flip_checkpoint):
    assert open_store(mixed_store).views == MIXED
    assert open_store(mixed_store).teacher["views"]["mix"] == HATFAS_MIX.to_json()
    unmixed = ViewSettings(K, SEED)
    assert "mix" not in unmixed.to_json()  # stores without --mix keep fasd 0.2's fingerprint
    with pytest.raises(FasdError, match="teacher"):
        run_cache(open_source(load_registry(synth_config).dataset("alpha")),
                  load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint)), mixed_store,
                  CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, progress=False, views=unmixed))


DYING = dying_cache_command("views/mix")


@pytest.mark.slow
def test_mixed_views_are_identical_in_one_process_in_shards_and_after_kill9_and_resume(
        tmp_path, mixed_store, synth_config, tiny_flip_checkpoint):
    reference = open_store(mixed_store).dataset("alpha")
    for shard in (1, 0):
        _cache(synth_config, tiny_flip_checkpoint, tmp_path / "shards.zarr", shard=shard, num_shards=2)
    args = ["cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store", tmp_path / "killed.zarr",
            "--checkpoint", tiny_flip_checkpoint, "--chunk-rows", CHUNK_ROWS, "--batch-size", BATCH, "--workers", 0,
            "--views", K, "--view-seed", SEED, "--mix", "mixup=0.8,cutmix=1.0"]
    died = subprocess.run([sys.executable, "-c", DYING, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert died.returncode == 137, died.stdout + died.stderr
    assert open_store(str(tmp_path / "killed.zarr")).dataset("alpha")["done"][:].tolist()[:2] == [True, False]
    assert fasd(*args).exit_code == 0
    for store in ("shards.zarr", "killed.zarr"):
        group = open_store(str(tmp_path / store)).dataset("alpha")
        for array in ARRAYS:
            np.testing.assert_array_equal(group[array][:], reference[array][:], err_msg=f"{store} {array}")


def test_mix_without_views_is_one_line(tmp_path, synth_config, tiny_flip_checkpoint):
    assert_one_line(fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--store",
                           tmp_path / "s.zarr", "--checkpoint", tiny_flip_checkpoint, "--mix", "mixup=0.8"),
                      "--mix", "--views K")


@pytest.mark.slow
def test_train_replays_mixed_views_and_warns_without_views(tmp_path, mixed_store, synth_config):
    common = ["train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--epochs", "1",
              "--max-draws", "16", "--batch-size", "8", "--workers", "0", "--store", mixed_store]
    result = fasd(*common, "--views", "--smoothing", "0.1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result = fasd(*common, "--out", tmp_path / "plain")
    assert result.exit_code == 0 and "holds mixed views" in result.output and "pass --views" in result.output


def test_inspect_verify_recomputes_mixed_views(mixed_store, synth_config, tiny_flip_checkpoint):
    result = fasd("inspect", mixed_store, "--verify", "6", "--checkpoint", tiny_flip_checkpoint, "--config",
                  synth_config, "--json")
    assert result.exit_code == 0, result.output
    verify = json.loads(result.stdout[result.stdout.index("{"):])["verify"]["alpha"]
    assert verify["view_mix_match"] and verify["view_params_match"] and verify["worst_cosine"] > 0.999
