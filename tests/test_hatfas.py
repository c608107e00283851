"""The hatfas recipe end to end on tiny timm ViTs: cache a DeiT teacher's layer tokens, check them against
timm's own forward with hooks, train a DeiT student through the CLI, and check that a step on cached targets
equals the same step with the teacher run online."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from torch.utils.data import default_collate

from fasd.config import load_registry
from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.data.open_source import open_source
from fasd.store_schema.store import open_store, read_strings
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import TeacherOptions, load_teacher
from helpers import fasd

ARCH = "deit_tiny_patch16_224"
SIZE = 32  # a 2 x 2 patch grid: the real architecture, cheap on CPU
LAYERS = "4,6,8"
TINY_HATFAS = ["--recipe", "hatfas", "--student-arch", ARCH, "--input-size", str(SIZE), "--epochs", "1",
               "--batch-size", "16", "--max-draws", "32", "--workers", "0", "--warmup-epochs", "0"]


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = timm.create_model(ARCH, pretrained=False, num_classes=2, img_size=SIZE)
    path = tmp_path_factory.mktemp("vit") / "deit_fas.pth"
    torch.save({"model": model.state_dict()}, path)  # DeiT / HaTFAS' format
    return path


@pytest.fixture(scope="module")
def vit_stores(tmp_path_factory, synth_config, vit_checkpoint):
    """tap -> a store of alpha and beta cached by the tiny DeiT teacher with that layer tap (made on first use)."""
    made = {}

    def store_for(tap: str):
        if tap not in made:
            made[tap] = tmp_path_factory.mktemp(f"vit-{tap}") / "teacher.zarr"
            for name in ("alpha", "beta"):
                result = fasd("cache-teacher", "--dataset", name, "--config", synth_config, "--teacher", "vit",
                              "--arch", ARCH, "--checkpoint", vit_checkpoint, "--layers", LAYERS, "--layer-tap", tap,
                              "--store", made[tap], "--chunk-rows", "64", "--batch-size", "16")
                assert result.exit_code == 0, result.output
        return made[tap]
    return store_for


def _json(result, opening: str = "{"):
    """The JSON a command printed on stdout (progress bars go before it)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index(opening):])


def source_pack(config, name: str):
    return load_registry(config).dataset(name).path


def _hooked_cls(model, images, tap: str) -> torch.Tensor:
    """The CLS token at blocks 4, 6, 8 from timm's own forward, read with forward hooks."""
    seen = {}
    hooks = [model.norm_pre.register_forward_hook(lambda m, i, o: seen.__setitem__("x0", o))]
    for k in (4, 6, 8):
        hooks.append(model.blocks[k].register_forward_hook(
            lambda m, i, o, k=k: seen.__setitem__(k, o[:, 0] if tap == "block" else
                                                  m.attn(m.norm1(seen["x0"]))[:, 0])))
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return torch.stack([seen[k] for k in (4, 6, 8)], dim=1)


@pytest.mark.parametrize("tap", ["block", "official"])
def test_cached_layer_tokens_equal_timm_forward_with_hooks(tap, vit_stores, vit_checkpoint, synth_config):
    store = vit_stores(tap)
    group = open_store(str(store)).dataset("alpha")
    assert group["layer_cls"].shape == (group.attrs["rows"], 3, 192) and group["layer_cls"].dtype == np.float16
    model = timm.create_model(ARCH, pretrained=False, num_classes=2, img_size=SIZE).eval()
    model.load_state_dict(torch.load(vit_checkpoint, weights_only=True)["model"])
    source = open_source(load_registry(synth_config).dataset("alpha"))
    row_of = {f: i for i, f in enumerate(source.table.frame_id)}
    ids = read_strings(group["frame_id"])[:24]
    pixels = np.stack([resize_uint8(source.read_image(row_of[i]), SIZE) for i in ids])
    images = normalize_batch(torch.from_numpy(pixels), IMAGENET_MEAN, IMAGENET_STD)
    expected = _hooked_cls(model, images, tap)
    cached = torch.from_numpy(group["layer_cls"][:24].astype(np.float32))
    cosine = torch.nn.functional.cosine_similarity(cached.reshape(-1, 192), expected.reshape(-1, 192), dim=1)
    assert cosine.min() >= 0.999
    with torch.no_grad():
        np.testing.assert_allclose(group["logits"][:24], model(images).numpy(), atol=1e-4)
    inspected = json.loads(fasd("inspect", store, "--json").output)
    assert inspected["targets"]["layer_cls"] == {"shape": [3, 192], "dtype": "f2", "bytes_per_frame": 1152}
    assert inspected["teacher"]["layers"] == [4, 6, 8] and inspected["teacher"]["layer_tap"] == tap


def test_hatfas_trains_through_the_cli(vit_stores, synth_config, tmp_path):
    tap, store = "block", vit_stores("block")
    result = fasd("train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--store", store,
                  *TINY_HATFAS, "--layer-tap", tap, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert log["train"]["head-aware"] > 0 and log["train"]["kl"] > 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["recipe"] == "hatfas" and metrics["student"] == "deit-tiny"
    assert metrics["loss_weights"]["lambda_ce"] == pytest.approx(0.3)
    assert metrics["loss_weights"]["lambda_head_aware"] == 1.0 and metrics["loss_weights"]["tau"] == 3.0
    # the whole DeiT ships: ONNX with parity on real frames, then evaluate / bench / predict on the file
    exported = fasd("export", tmp_path / "run" / "best.pt", "--format", "onnx", "--out", tmp_path / "deit.onnx",
                    "--parity-data", "beta:test", "--config", synth_config)
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "deit.onnx").stat().st_size > 20e6  # 5.5 M parameters in fp32
    on_file = _json(fasd("evaluate", tmp_path / "deit.onnx", "--dataset", "beta", "--config", synth_config,
                         "--json"))
    on_checkpoint = _json(fasd("evaluate", tmp_path / "run" / "best.pt", "--dataset", "beta", "--config",
                               synth_config, "--json"))
    assert on_file["auc"] == pytest.approx(on_checkpoint["auc"], abs=1e-3) and on_file["n"] == metrics["n"]
    bench = _json(fasd("bench", tmp_path / "deit.onnx", "--runs", "3", "--warmup", "1", "--json"))
    assert bench["input"] == f"1 x 3 x {SIZE} x {SIZE} float32"
    frames = tmp_path / "frames"
    assert fasd("frames", source_pack(synth_config, "beta"), "--out", frames, "--count", "2").exit_code == 0
    predicted = fasd("predict", tmp_path / "deit.onnx", frames, "--json")
    assert predicted.exit_code == 0 and len(_json(predicted, "[")) == 2, predicted.output
    other_tap = "official" if tap == "block" else "block"
    refused = fasd("train", "--sources", "alpha", "--target", "beta", "--config", synth_config, "--store", store,
                   *TINY_HATFAS, "--layer-tap", other_tap, "--out", tmp_path / "run2")
    assert refused.exit_code == 2 and "same tap" in refused.output


def test_cached_step_equals_the_step_with_the_teacher_online(vit_stores, vit_checkpoint, synth_config, tmp_path):
    tap, store = "block", vit_stores("block")
    registry = load_registry(synth_config)
    options = TrainOptions.for_recipe("hatfas", protocol="alpha-to-beta", sources=["alpha"], target="beta",
                                      config=str(synth_config), store=str(store), student_arch=ARCH,
                                      input_size=SIZE, layer_tap=tap, workers=0, batch_size=16)
    trainer = Trainer(registry, options, tmp_path / "run", progress=False)
    trainer._build(lambda _msg: None)
    trainer.student.eval()
    items = np.arange(min(16, len(trainer.val_set)))  # the source's un-augmented validation frames
    batch = default_collate([trainer.val_set[int(i)] for i in items])  # (images, labels, domains, items, readable)
    with torch.no_grad():
        cached_loss, cached_terms = trainer._loss(trainer._readable(batch, trainer.val_set, trainer.val_targets,
                                                                    "validation", least=1))
        teacher = load_teacher("vit", TeacherOptions(vit_checkpoint, arch=ARCH, layers=(4, 6, 8), layer_tap=tap))
        part = trainer.val_parts[0]
        pixels = np.stack([resize_uint8(part.source.read_image(int(part.rows[i])), teacher.input_size)
                           for i in items])
        online = teacher.module(normalize_batch(torch.from_numpy(pixels), teacher.mean, teacher.std))
        online_loss, online_terms = trainer._loss((*batch[:3], {n: online[n] for n in ("logits", "layer_cls")}))
    assert cached_terms["head-aware"] > 0
    assert abs(cached_loss.item() - online_loss.item()) <= 1e-4
    for name in ("ce", "kl", "head-aware"):
        assert cached_terms[name] == pytest.approx(online_terms[name], abs=1e-4)


def test_teacher_finetune_vit_writes_a_checkpoint_the_vit_teacher_reads(tmp_path, synth_config):
    out = tmp_path / "deit_fas.pth"
    imagenet = timm.create_model(ARCH, pretrained=False, num_classes=1000, img_size=SIZE)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")  # a 1000-way head: replaced by a 2-way one
    result = fasd("teacher-finetune", "--method", "vit", "--arch", ARCH, "--init", tmp_path / "imagenet.pth",
                  "--sources", "alpha,beta", "--config", synth_config, "--out", out, "--epochs", "2",
                  "--batch-size", "16", "--max-frames-per-epoch", "32")
    assert result.exit_code == 0, result.output
    assert "cache it with --teacher vit" in result.output and "{" not in result.output
    saved = torch.load(out, weights_only=True)
    assert saved["epoch"] == 2 and saved["arch"] == ARCH and saved["model"]["head.weight"].shape == (2, 192)
    # the encoder moved away from its initialisation, and the teacher kind reads the file back
    qkv = "blocks.0.attn.qkv.weight"
    assert not torch.equal(saved["model"][qkv], imagenet.state_dict()[qkv])
    teacher = load_teacher("vit", TeacherOptions(out, arch=ARCH))
    assert teacher.input_size == SIZE and teacher.normalize == "imagenet"
    summary = json.loads((tmp_path / "deit_fas.pth.json").read_text())
    assert summary["method"] == "vit" and summary["lr"] == pytest.approx(5e-4 * 16 / 512)
