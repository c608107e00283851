"""Fidelity to the papers' released training (docs/fidelity.md): `--recipe hatfas` defaults are HaTFAS' main.py
values (issue 24's list), shown by `fasd train --recipe hatfas --help`; the policies are timm's own objects; the
soft-target CE, the KL direction switch, repeated draws and the min-lr floor against hand computations; a run
with the deit policy trains, mixes and keeps its EMA."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torchvision.transforms import v2

from fasd.student_train.losses import ce_loss, kl_loss
from fasd.student_train.run_config import TrainOptions
from fasd.training.augment import POLICIES, deit_eval_transform, deit_train_transform, mixer, model_ema
from fasd.training.sampler import RepeatedDraws
from fasd.training.schedule import warmup_cosine

from helpers import fasd

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Issue 24: HaTFAS' main.py as released.
HATFAS = {"--mixup": "0.8", "--cutmix": "1", "--smoothing": "0.1", "--model-ema": "0.99996", "--repeated-aug": "3",
          "--clip-grad": "0", "--min-lr": "1e-05", "--lr": "0.0005*batch/512", "--weight-decay": "0.05",
          "--warmup-epochs": "5", "--epochs": "300", "--augment": "deit"}


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)  # the help wraps lines, also inside flag names


def test_train_recipe_hatfas_help_shows_hatfas_released_defaults():
    result = fasd("train", "--recipe", "hatfas", "--help")
    assert result.exit_code == 0, result.output
    text = _compact(result.output)
    for flag, value in HATFAS.items():
        assert f"{flag}{value}--" in text or f"{flag}{value}." in text, flag
    for words in ("RandAugment rand-m9-mstd0.5-inc1", "RandomResizedCrop 0.08-1.0 bicubic", "random erasing 0.25",
                  "resize 256/224"):
        assert _compact(words) in text, words
    # Each flag's own help lists every recipe's default; another recipe's --help shows its own.
    assert _compact("(default: vlmkd 0, hatfas 0.8, mmda 0)") in _compact(fasd("train", "--help").output)
    assert "--augmentfasd" in _compact(fasd("train", "--recipe", "vlmkd", "--help").output)


def test_hatfas_options_are_the_released_values_and_vlmkd_mmda_keep_theirs():
    common = {"protocol": "p", "sources": ["a"], "target": "b", "config": "fasd.toml"}
    hatfas = TrainOptions.for_recipe("hatfas", **common)
    assert (hatfas.augment, hatfas.mixup, hatfas.cutmix, hatfas.smoothing, hatfas.model_ema, hatfas.repeated_aug,
            hatfas.clip_grad, hatfas.min_lr) == ("deit", 0.8, 1.0, 0.1, 0.99996, 3, 0.0, 1e-5)
    assert hatfas.lr == pytest.approx(5e-4 * 128 / 512)
    assert TrainOptions.for_recipe("hatfas", batch_size=256, **common).lr == pytest.approx(5e-4 * 256 / 512)
    for name in ("vlmkd", "mmda"):
        options = TrainOptions.for_recipe(name, **common)
        assert (options.augment, options.mixup, options.cutmix, options.smoothing, options.model_ema,
                options.clip_grad, options.min_lr) == ("fasd", 0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    # --augment brings its policy's defaults; a flag still overrides
    swapped = TrainOptions.for_recipe("vlmkd", augment="deit", mixup=0.0, **common)
    assert (swapped.augment, swapped.mixup, swapped.cutmix) == ("deit", 0.0, 1.0)


def test_deit_policy_is_timms_objects_with_hatfas_values():
    transform = deit_train_transform(224).timm_transform
    kinds = {type(t): t for t in transform.transforms}
    crop = kinds[RandomResizedCropAndInterpolation]
    assert crop.scale == (0.08, 1.0) and crop.size == (224, 224) and "bicubic" in str(crop.interpolation).lower()
    randaug = kinds[RandAugment]
    assert randaug.num_layers == 2 and {op.magnitude for op in randaug.ops} == {9}
    assert {op.magnitude_std for op in randaug.ops} == {0.5}
    erasing = kinds[RandomErasing]
    assert erasing.probability == 0.25 and erasing.mode == "pixel"
    for side, resize in ((224, 256), (112, 128)):  # HaTFAS' datasets.py: int(256 / 224 * side), centre crop side
        steps = {type(t): t for t in deit_eval_transform(side).transforms}
        assert steps[v2.Resize].size == [resize] and steps[v2.CenterCrop].size == (side, side)
        assert steps[v2.Resize].interpolation == v2.InterpolationMode.BICUBIC
    mix = mixer(0.8, 1.0, 0.1)
    assert isinstance(mix, Mixup) and (mix.mixup_alpha, mix.cutmix_alpha, mix.label_smoothing, mix.mode,
                                       mix.switch_prob, mix.mix_prob) == (0.8, 1.0, 0.1, "batch", 0.5, 1.0)
    assert mixer(0.0, 0.0, 0.1) is None
    ema = model_ema(torch.nn.Linear(2, 2), 0.99996)
    assert isinstance(ema, ModelEmaV3) and ema.decay == 0.99996 and model_ema(torch.nn.Linear(2, 2), 0) is None
    assert set(POLICIES.all()) == {"fasd", "deit"} and POLICIES.get("fasd").train is None


def test_soft_target_ce_is_timms_and_the_hand_formula():
    logits, soft = torch.randn(6, 2), torch.softmax(torch.randn(6, 2), 1)
    hand = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(ce_loss(logits, soft.argmax(1), soft), hand)
    torch.testing.assert_close(ce_loss(logits, soft.argmax(1), soft), SoftTargetCrossEntropy()(logits, soft))


def test_kl_direction_student_teacher_is_paper_a_as_printed():
    student, teacher, tau = torch.randn(5, 2), torch.randn(5, 2), 4.0
    p_s, p_t = F.softmax(student / tau, 1), F.softmax(teacher / tau, 1)
    forward = tau**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    reverse = tau**2 * (p_s * (p_s.log() - p_t.log())).sum(1).mean()
    torch.testing.assert_close(kl_loss(student, teacher, tau), forward)
    torch.testing.assert_close(kl_loss(student, teacher, tau, "student-teacher"), reverse)
    assert not torch.isclose(forward, reverse)


def test_repeated_draws_take_each_draw_n_times_in_a_row_and_keep_the_epoch_length():
    assert list(RepeatedDraws(list(range(10, 20)), 3)) == [10, 10, 10, 11, 11, 11, 12, 12, 12, 13]
    assert len(RepeatedDraws(list(range(10)), 3)) == 10


def test_cosine_floor_ends_at_min_lr():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = warmup_cosine(optimizer, steps_per_epoch=4, epochs=3, warmup_epochs=1, floor=1e-5 / 1e-3)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[3] == pytest.approx(1e-3) and optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert min(rates[4:]) > 1e-5


@pytest.mark.slow
def test_no_teacher_run_with_the_deit_policy_mixes_and_keeps_an_ema(tmp_path, synth_config):
    result = fasd("train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--no-teacher",
                  "--augment", "deit", "--epochs", "1", "--max-draws", "16", "--batch-size", "8", "--workers", "0",
                  "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["augment"], config["mixup"], config["model_ema"], config["clip_grad"]) == ("deit", 0.8, 0.99996, 0)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert set(last["model_ema"]) == set(last["model"])


# ---------------------------------------------------------------- mmda: paper B's epochs, U-DSA exit, captions

SMALL_CLIP = {"embed_dim": 32, "quick_gelu": True,
              "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def _mmda_teacher(**settings):
    import open_clip

    from fasd.teacher_cache.mmda.captions import default_captions
    from fasd.teacher_cache.mmda.model import MMDASettings, build_mmda_teacher

    torch.manual_seed(0)
    teacher = build_mmda_teacher(open_clip.model.CLIP(**SMALL_CLIP).eval(), default_captions(),
                                 MMDASettings(udsa_depth=2, **settings)).eval()
    with torch.no_grad():  # away from the identity start, so the captions through U-DSA are other vectors
        for parameter in teacher.udsa.parameters():
            parameter.normal_(0, 0.2)
    return teacher


def _images(n: int = 3):
    from fasd.constants import MODALITIES

    generator = torch.Generator().manual_seed(1)
    return {m: torch.randn(n, 3, 64, 64, generator=generator) for m in MODALITIES}


def test_mmda_teacher_trains_80_epochs_by_default_as_paper_b():
    from fasd.teacher_cache.mmda.finetune import DEFAULT_EPOCHS

    assert DEFAULT_EPOCHS == 80
    assert "mmda80" in _compact(fasd("teacher-finetune", "--help").output)


def test_captions_go_through_udsa_and_each_depth_aligns_to_its_own():
    import torch.nn.functional as F

    from fasd.rs2_math import rs2_align_loss
    from fasd.teacher_cache.mmda.model import CAPTION_COS, DEPTH_EMBEDDINGS

    teacher = _mmda_teacher()
    through = [F.normalize(c, dim=-1) for c in teacher.udsa(teacher.captions)]
    assert len(through) == 3  # exit v'0, depths 1 and 2
    with torch.no_grad():
        out = teacher(_images())
        for got, want in zip(teacher.caption_depths(), through):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(out[CAPTION_COS], out["feature"] @ through[0].t())
        labels = torch.tensor([0, 1, 1])
        loss = teacher.loss(out, labels)
        hand = torch.stack([rs2_align_loss(v, labels, c, teacher.caption_labels, "over-all")
                            for v, c in zip(out[DEPTH_EMBEDDINGS], through)]).mean()
        torch.testing.assert_close(loss["align"], hand)
    raw = _mmda_teacher(caption_udsa=False)
    with torch.no_grad():
        out = raw(_images())
        torch.testing.assert_close(out[CAPTION_COS], out["feature"] @ raw.captions.t())
    assert not torch.allclose(through[0], raw.captions, atol=1e-3)  # the two readings differ


def test_udsa_exit_parameters_are_printed_beside_table_9_and_old_checkpoints_load(tmp_path):
    from fasd.teacher_cache.mmda.finetune import parameter_line
    from fasd.teacher_cache.mmda.kind import load_mmda
    from fasd.teacher_cache.registry import TeacherOptions

    v0, v1 = _mmda_teacher(), _mmda_teacher(udsa_exit="v1")
    mlp = 2 * (32 * 32 + 32)  # Linear(E, E) -> GELU -> Linear(E, E), E = 32
    assert sum(p.numel() for p in v0.udsa.parameters()) == (2 + 2) * mlp  # Adapt_1,2 + Remap_0,1
    assert sum(p.numel() for p in v1.udsa.parameters()) == (2 + 1) * mlp
    line = parameter_line(v0)
    assert "exit v0" in line and "Table 9: 169.95 M at depth 0 -> 302.46 M at depth 7 (18.93 M per layer" in line
    # A fasd 0.2 checkpoint (no exit / caption switches) loads as what it was trained with.
    old = v1.checkpoint()
    old["settings"] = {k: v for k, v in old["settings"].items() if k not in ("udsa_exit", "caption_udsa")}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_mmda(TeacherOptions(tmp_path / "old.pt"), "clip")
    assert loaded.details["settings"]["udsa_exit"] == "v1" and loaded.details["settings"]["caption_udsa"] is False
    torch.save(v0.checkpoint(), tmp_path / "new.pt")  # the store fingerprint records both switches
    settings = load_mmda(TeacherOptions(tmp_path / "new.pt"), "clip").details["settings"]
    assert (settings["udsa_exit"], settings["caption_udsa"]) == ("v0", True)


# ---------------------------------------------------------------- vlmkd: paper A's prompt reading

def test_centroid_mode_clip_normalises_each_prompt_then_averages_as_paper_a():
    from fasd.teacher_cache.prompts import centroids_from_embeddings, load_prompts

    generator = torch.Generator().manual_seed(0)
    spoof, live = torch.randn(3, 8, generator=generator) * 5, torch.randn(3, 8, generator=generator)
    spoof[0] *= 20  # one long embedding dominates the raw mean (FLIP) but not the mean of unit ones (paper A)
    paper_a = centroids_from_embeddings([spoof, live], "clip")
    flip = centroids_from_embeddings([spoof, live], "flip")
    for row, embeddings in enumerate((spoof, live)):
        torch.testing.assert_close(paper_a[row], F.normalize(F.normalize(embeddings, dim=1).mean(0), dim=0))
        torch.testing.assert_close(flip[row], F.normalize(embeddings.mean(0), dim=0))
    assert (paper_a[0] - flip[0]).abs().max() > 1e-2
    help_text = _compact(fasd("cache-teacher", "--help").output)
    assert _compact("paper A describes 3 + 3 prompts") in help_text and _compact("paper A's description") in help_text
    assert load_prompts(None)["spoof"][0] == "This is an example of a spoof face"  # FLIP's 6 + 6 stay the default


def test_every_row_of_docs_fidelity_names_a_flag_or_says_no_flag():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "fidelity.md").read_text()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in page.splitlines()
            if line.startswith("| ") and not line.startswith(("| what", "| policy", "|---"))]
    departures = [cells for cells in rows if len(cells) == 6]
    assert len(departures) >= 30
    for cells in departures:
        assert "--" in cells[4] or "no flag" in cells[4], cells[0]
    helps = "".join(_compact(fasd(command, "--help").output) for command in ("train", "cache-teacher", "experiment",
                                                                            "teacher-finetune"))
    for flag in set(re.findall(r"`(?:fasd \w+ |cache-teacher |train )?(--[a-z][a-z0-9-]+)", page)):
        assert flag in helps, flag  # every flag the page names exists


@pytest.mark.parametrize("name", sorted(POLICIES.all()))
def test_every_policy_builds_student_inputs_and_sets_only_train_options(name):
    import dataclasses

    import numpy as np

    member = POLICIES.get(name)
    assert set(member.defaults()) <= {f.name for f in dataclasses.fields(TrainOptions)} and member.help
    frame = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for build in (member.train, member.eval):
        for side in (32, 112):
            if build is not None:
                image = build(side)(frame)
                assert image.shape == (3, side, side) and image.dtype == torch.float32


def test_deit_randaugment_posterize_at_full_magnitude_is_black_not_an_error():
    """rand-m9-mstd0.5-inc1 reaches magnitude 10, where timm asks Pillow to keep 0 bits (refused by Pillow >= 11)."""
    import numpy as np
    from PIL import Image
    from timm.data import auto_augment

    from fasd.training.augment import deit_train_transform

    deit_train_transform(32)
    image = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    op = auto_augment.AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10, hparams={"magnitude_std": 0})
    assert np.asarray(op(image)).max() == 0
    op = auto_augment.AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=5, hparams={"magnitude_std": 0})
    assert np.asarray(op(image)).max() > 0
