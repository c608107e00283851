"""fasd teacher-finetune: FLIP-style training of the image tower against frozen text centroids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fasd.config import write_config
from fasd.data.hdf5_pack import PackWriter
from fasd.data.synth import synthesize
from fasd.errors import FasdError
from fasd.teacher_cache.arch import TINY_ARCH, random_clip
from fasd.teacher_cache.checkpoint import read_checkpoint
from fasd.teacher_cache.finetune import finetune_teacher, summary_path, train_step
from fasd.teacher_cache.clip import Teacher, encode_prompts
from fasd.teacher_cache.mmda.model import MMDASettings
from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, MODALITIES
from fasd.teacher_cache.preprocess import normalize_batch
from fasd.teacher_cache.prompts import centroids_from_embeddings, default_prompts
from fasd.teacher_cache.registry import TeacherOptions, load_teacher

# Two optimiser steps of 8 frames: enough to move every image weight, cheap on a laptop CPU.
SHORT = {"epochs": 1, "batch_size": 8, "max_frames_per_epoch": 16, "progress": False}
TEXT_PREFIXES = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection",
                 "logit_scale")


def _saved_state(path) -> dict[str, torch.Tensor]:
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "state_dict"}
    assert all(key.startswith("model.") for key in raw["state_dict"])
    return {key[len("model."):]: value for key, value in raw["state_dict"].items()}


def _assert_text_identical_image_changed(saved: dict, init: dict) -> None:
    assert set(saved) == set(init)
    text = [k for k in init if k.startswith(TEXT_PREFIXES)]
    image = [k for k in init if k.startswith("visual.")]
    assert text and image
    for key in text:
        assert torch.equal(saved[key], init[key].float()), key
    changed = [k for k in image if not torch.equal(saved[k], init[k].float())]
    assert "visual.conv1.weight" in changed and "visual.proj" in changed
    assert len(changed) > 0.9 * len(image)


@pytest.fixture(scope="module")
def finetuned(synth_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "sub" / "teacher.pt"
    summary = finetune_teacher(synth_config, ["alpha", "beta"], out, arch=TINY_ARCH, seed=0, **SHORT)
    return out, summary


def test_finetune_writes_a_flip_checkpoint_that_load_teacher_reads(finetuned, tiny_clip_state):
    out, summary = finetuned
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["epoch"] == 1
    assert not out.with_name(out.name + ".tmp").exists()
    _assert_text_identical_image_changed(_saved_state(out), tiny_clip_state)

    loaded = load_teacher("flip-mcl", TeacherOptions(out, prompts=default_prompts(), centroid_mode="flip"))
    assert loaded.fingerprint["logit_scale"] == pytest.approx(summary["logit_scale"])
    assert loaded.input_size == summary["input_size"] == 224
    outputs = loaded.module(torch.zeros(2, 3, 224, 224))
    feature, logits = outputs["feature"], outputs["logits"]
    assert feature.shape == (2, 128) and logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_summary_is_returned_and_written_beside_the_checkpoint(finetuned):
    out, summary = finetuned
    assert json.loads(summary_path(out).read_text()) == json.loads(json.dumps(summary))
    assert summary["epochs"] == 1 and summary["sources"] == ["alpha", "beta"]
    assert summary["train_frames"] == {"alpha": 36, "beta": 36}
    assert summary["draws_per_epoch"] == 16 and len(summary["history"]) == 1
    assert 0.0 <= summary["train_accuracy"] <= 1.0 and summary["train_loss"] > 0
    assert summary["val"]["frames"] == 24 and 0.0 <= summary["val"]["eer"] <= 1.0
    assert summary["init"].startswith(f"random {TINY_ARCH}")


def test_training_step_learns_a_fixed_batch():
    torch.manual_seed(0)
    clip = random_clip(TINY_ARCH, seed=1)
    centroids = centroids_from_embeddings(encode_prompts(clip, default_prompts()), "flip")
    classifier = Teacher(clip, centroids, float(clip.logit_scale.detach().exp())).train()
    pixels = torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 2)
    optimizer = torch.optim.AdamW(classifier.visual.parameters(), lr=1e-3)
    text_before = clip.token_embedding.weight.clone()
    images = normalize_batch(pixels, IMAGENET_MEAN, IMAGENET_STD)
    losses = [train_step(classifier, optimizer, images, labels)[0] for _ in range(10)]
    assert losses[-1] < 0.5 * losses[0]
    assert torch.equal(clip.token_embedding.weight, text_before)


def test_unreadable_frames_do_not_count(tmp_path):
    clip = random_clip(TINY_ARCH, seed=1)
    centroids = centroids_from_embeddings(encode_prompts(clip, default_prompts()), "flip")
    classifier = Teacher(clip, centroids, 10.0)
    optimizer = torch.optim.AdamW(classifier.visual.parameters(), lr=1e-3)
    images = torch.zeros(3, 3, 224, 224)
    _, _, counted = train_step(classifier, optimizer, images, torch.tensor([0, 1, 1]),
                               torch.tensor([True, False, True]))
    assert counted == 2
    before = classifier.visual.proj.clone()
    assert train_step(classifier, optimizer, images, torch.tensor([0, 1, 1]), torch.zeros(3, dtype=torch.bool)) \
        == (0.0, 0, 0)
    assert torch.equal(classifier.visual.proj, before)


@pytest.mark.parametrize("fmt, lr, expected_lr", [("openai", None, 1e-6), ("flip", 1e-4, 1e-4)])
def test_init_from_a_checkpoint(fmt, lr, expected_lr, synth_config, tmp_path, tiny_clip_state, tiny_flip_checkpoint):
    if fmt == "openai":
        init = tmp_path / "openai_clip.pt"
        torch.save(tiny_clip_state, init)
        reference = tiny_clip_state
    else:
        init = tiny_flip_checkpoint  # fp16 CLIP tensors and an unused image_mlp head
        reference = {k: v.half().float() for k, v in tiny_clip_state.items()}
    out = tmp_path / "teacher.pt"
    summary = finetune_teacher(synth_config, ["gamma"], out, init=init, lr=lr, **SHORT)
    # Without --lr a pretrained CLIP is fine-tuned at FLIP's own learning rate.
    assert summary["init"] == f"checkpoint {init}" and summary["lr"] == expected_lr
    _assert_text_identical_image_changed(_saved_state(out), reference)
    assert "image_mlp.0.weight" not in read_checkpoint(out)["state_dict"]


def _test_only_pack(tmp_path):
    pack = tmp_path / "testonly.h5"
    with PackWriter(pack, "testonly", 32, "test", "none") as writer:
        writer.append(np.zeros((4, 32, 32, 3), np.uint8), [f"f{i}" for i in range(4)], [0, 1, 0, 1],
                      ["test"] * 4, ["v"] * 4, ["print", "", "print", ""])
    config = tmp_path / "fasd.toml"
    write_config(config, {"testonly": {"format": "hdf5", "path": str(pack)}}, None)
    return config


@pytest.mark.parametrize("case, match", [
    ({"sources": ["nope"]}, "unknown dataset 'nope'"),
    ({"sources": []}, "--sources needs at least one"),
    ({"sources": ["alpha", "alpha"]}, "more than once"),
    ({"init": "missing.pt"}, "checkpoint not found"),
    ({"arch": "no-such-arch"}, "unknown --arch"),
    ({"arch": TINY_ARCH, "init": "x.pt"}, "not both"),
    ({"epochs": 0}, "--epochs must be >= 1"),
    ({"lr": -1.0}, "--lr must be > 0"),
    ({"centroid_mode": "mean"}, "unknown centroid mode"),
    ({"out": "."}, "is a folder"),
])
def test_bad_inputs_are_one_line_errors(case, match, synth_config, tmp_path):
    kwargs = {"sources": ["alpha"], "out": tmp_path / "t.pt", **SHORT, **case}
    with pytest.raises(FasdError, match=match) as error:
        finetune_teacher(synth_config, **kwargs)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "t.pt").exists()


def test_no_train_frames_is_an_error(tmp_path):
    with pytest.raises(FasdError, match="no frames in split 'train' \\(splits present: test\\)"):
        finetune_teacher(_test_only_pack(tmp_path), ["testonly"], tmp_path / "t.pt", **SHORT)



def test_mmda_runs_with_one_seed_and_thread_count_are_bit_identical(tmp_path):
    """Issue 26: two runs differed by up to 2e-6. The cause was the intra-op thread count (the order of the
    parallel reductions: 1 vs 2 threads moves ~100 tensors by ~2e-6), not the seeding; at one count (two, so
    reductions do split) two runs give the same bits, and the summary records the count to reproduce."""
    config = synthesize(tmp_path / "mm", domains=2, frames=36, size=32, seed=0, progress=False,
                        modalities=MODALITIES)
    before = torch.get_num_threads()
    states, used = [], []
    try:
        torch.set_num_threads(2)
        for run in range(2):
            out = tmp_path / f"mmda{run}.pt"
            finetune_teacher(config, ["alpha", "beta"], out, method="mmda", epochs=1, batch_size=4,
                             max_frames_per_epoch=8, device="cpu", progress=False,
                             method_options={"settings": MMDASettings(udsa_depth=1)})
            states.append(torch.load(out, map_location="cpu", weights_only=True)["state_dict"])
            used.append(json.loads(summary_path(out).read_text())["threads"])
    finally:
        torch.set_num_threads(before)
    assert states[0].keys() == states[1].keys()
    assert [k for k in states[0] if not torch.equal(states[0][k], states[1][k])] == []
    assert used == [2, 2]
