"""timm ViT/DeiT layer taps (fasd.vit_layers), the vit teacher's checkpoint loading and the DeiT student.

Tiny real timm architectures with random weights: DeiT-Tiny at 32 px (2×2 patches), 4 blocks where the
arch name is not needed, the full 12 when the teacher / student build it by name.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
import torch.nn.functional as F

from fasd.errors import FasdError
from fasd.student_train.deit import DeitStudent
from fasd.teacher_cache.vit import VIT_MEAN, VIT_STD, load_vit_teacher, read_vit_state
from fasd.vit_layers import LAYER_TAPS, build_timm_vit, cls_at_layers, parse_layers

ARCH = "deit_tiny_patch16_224"
SIZE = 32


def tiny_vit(depth: int = 4, num_classes: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(ARCH, pretrained=False, img_size=SIZE, depth=depth, num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- cls_at_layers against timm's own forward ------------------------------------------------------------

@torch.no_grad()
def test_block_tap_and_head_match_timm_forward_hooks(images):
    model, layers = tiny_vit(), (3, 1)  # order as given, not sorted
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.blocks[k].register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o[:, 0].clone()))
             for k in layers]
    hooks.append(model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm", o.clone())))
    logits = model(images)  # timm's own forward, hooks fire
    for hook in hooks:
        hook.remove()
    out = cls_at_layers(model, images, layers, "block")
    assert out["layer_cls"].shape == (3, 2, 192)
    torch.testing.assert_close(out["layer_cls"], torch.stack([seen[3], seen[1]], dim=1), rtol=0, atol=0)
    torch.testing.assert_close(out["feature"], seen["norm"][:, 0], rtol=0, atol=0)
    torch.testing.assert_close(out["logits"], logits, rtol=0, atol=0)
    torch.testing.assert_close(out["logits"], model.forward_head(model.forward_features(images)), rtol=0, atol=0)


@torch.no_grad()
def test_official_tap_reads_attention_of_the_embedded_input(images):
    model, layers = tiny_vit(), (0, 2, 3)
    captured = {}
    hook = model.norm_pre.register_forward_hook(lambda m, i, o: captured.__setitem__("x0", o.clone()))
    model.forward_features(images)
    hook.remove()
    x0 = captured["x0"]
    expected = torch.stack([model.blocks[k].attn(model.blocks[k].norm1(x0))[:, 0] for k in layers], dim=1)
    out = cls_at_layers(model, images, layers, "official")
    torch.testing.assert_close(out["layer_cls"], expected, rtol=0, atol=0)
    torch.testing.assert_close(out["logits"], model(images), rtol=0, atol=0)
    block = cls_at_layers(model, images, layers, "block")["layer_cls"]
    assert not torch.allclose(block, out["layer_cls"], atol=1e-3)  # the two taps really differ


@torch.no_grad()
@pytest.mark.parametrize("tap", LAYER_TAPS)
def test_layer_tokens_survive_the_fp16_store(images, tap):
    out = cls_at_layers(tiny_vit(), images, (1, 2), tap)
    for name in ("layer_cls", "feature"):
        value = out[name].flatten(0, -2)
        assert F.cosine_similarity(value.half().float(), value, dim=-1).min() >= 0.999


@pytest.mark.parametrize("layers, tap, needle", [
    ((), "block", "empty"), ((4,), "block", "0 to 3"), ((-1,), "block", "0 to 3"),
    ((1, 1), "block", "repeats"), ((1,), "final", "block, official")])
def test_bad_layers_and_taps_are_one_line(images, layers, tap, needle):
    with pytest.raises(FasdError) as exc:
        cls_at_layers(tiny_vit(), images, layers, tap)
    assert needle in one_line(exc)


def test_parse_layers():
    assert parse_layers("4,6,8") == (4, 6, 8)
    assert parse_layers(" 8, 4 ") == (8, 4)
    with pytest.raises(FasdError) as exc:
        parse_layers("4;6")
    assert "4,6,8" in one_line(exc) and "4;6" in str(exc.value)


@pytest.mark.parametrize("arch, img_size, needle", [
    ("deit_tinny_patch16_224", SIZE, "did you mean deit_tiny_patch16_224"),
    ("resnet18", SIZE, "not a timm VisionTransformer"), ("resnet18", None, "not a VisionTransformer"),
    ("vit_wee_patch16_reg1_gap_256", SIZE, "CLS token")])
def test_build_timm_vit_refuses_non_cls_vits(arch, img_size, needle):
    with pytest.raises(FasdError) as exc:
        build_timm_vit(arch, img_size=img_size)
    assert needle in one_line(exc)


def test_build_timm_vit_sizes():
    model = build_timm_vit(ARCH, img_size=SIZE)
    assert model.patch_embed.img_size == (SIZE, SIZE) and model.head.out_features == 2 and len(model.blocks) == 12


# --- the vit teacher -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    """A 32-px DeiT-Tiny with a 2-way head: what a fine-tuned teacher checkpoint holds."""
    return tiny_vit(depth=12, seed=2)


def test_teacher_loads_deit_and_plain_checkpoints_alike(tmp_path, source, images):
    state = source.state_dict()
    deit = tmp_path / "deit.pth"
    torch.save({"model": state, "epoch": 299}, deit)
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    layers = (4, 6, 8)
    teachers = [load_vit_teacher(path, ARCH, layers, "block") for path in (deit, plain)]
    with torch.no_grad():
        outs = [teacher(images) for teacher in teachers]
        expected = cls_at_layers(source, images, layers, "block")
    for name in ("logits", "feature", "layer_cls"):
        torch.testing.assert_close(outs[0][name], outs[1][name], rtol=0, atol=0)
        torch.testing.assert_close(outs[0][name], expected[name], rtol=0, atol=0)
    teacher = teachers[0]
    assert not teacher.training and teacher.input_size == SIZE  # the checkpoint's grid, not 224
    assert (teacher.arch, teacher.layers, teacher.tap) == (ARCH, layers, "block")
    assert (VIT_MEAN, VIT_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_teacher_without_layers_and_fp16_checkpoint(tmp_path, source, images):
    path = tmp_path / "half.pth"
    torch.save({"state_dict": {f"module.{k}": v.half() for k, v in source.state_dict().items()}}, path)
    teacher = load_vit_teacher(path, ARCH, (), "official")
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    with torch.no_grad():
        out = teacher(images)
        expected = source.forward_features(images)[:, 0]
    assert set(out) == {"logits", "feature"}
    assert F.cosine_similarity(out["feature"], expected, dim=1).min() > 0.999


def test_teacher_training_checkpoint_needs_trust(tmp_path, source):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": source.state_dict(), "args": argparse.Namespace(model="deit_tiny_patch16_224")}, path)
    with pytest.raises(FasdError) as exc:
        read_vit_state(path, trust_checkpoint=False)
    assert "--trust-checkpoint" in one_line(exc)
    assert set(read_vit_state(path, trust_checkpoint=True)) == set(source.state_dict())


def _edited(state: dict, edit: str) -> dict:
    state = dict(state)
    if edit == "missing":
        del state["norm.weight"]
    elif edit == "unexpected":
        state["dist_token"] = torch.zeros(1, 1, 192)
    return state


@pytest.mark.parametrize("arch, edit, needles", [
    ("deit_small_patch16_224", None, ("--arch deit_small_patch16_224", "cls_token", "(1, 1, 192)", "(1, 1, 384)")),
    (ARCH, "missing", ("norm.weight", "(192,)", "missing")),
    (ARCH, "unexpected", ("dist_token", "(1, 1, 192)"))])
def test_teacher_checkpoint_of_another_arch_is_one_line(tmp_path, source, arch, edit, needles):
    path = tmp_path / "other.pth"
    torch.save({"model": _edited(source.state_dict(), edit)}, path)
    with pytest.raises(FasdError) as exc:
        load_vit_teacher(path, arch, (4,), "block")
    message = one_line(exc)
    assert all(needle in message for needle in needles), message


def test_teacher_head_must_be_two_way(tmp_path):
    path = tmp_path / "imagenet.pth"
    torch.save(tiny_vit(depth=12, num_classes=1000).state_dict(), path)
    with pytest.raises(FasdError) as exc:
        load_vit_teacher(path, ARCH, (4,), "block")
    assert "1000-way" in one_line(exc) and "(1000, 192)" in str(exc.value)


@pytest.mark.parametrize("layers, tap, needle", [((12,), "block", "0 to 11"), ((4,), "paper", "--layer-tap")])
def test_teacher_bad_layers_and_taps_are_one_line(tmp_path, source, layers, tap, needle):
    path = tmp_path / "plain.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(FasdError) as exc:
        load_vit_teacher(path, ARCH, layers, tap)
    assert needle in one_line(exc)


def test_teacher_checkpoint_without_tensors(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(FasdError) as exc:
        load_vit_teacher(path, ARCH, (4,), "block")
    assert "no ViT state dict" in one_line(exc)


# --- the DeiT student ------------------------------------------------------------------------------------

def test_deit_student_outputs(images):
    torch.manual_seed(3)
    student = DeitStudent(img_size=SIZE, tap="official").eval()
    assert (student.arch, student.layers, student.tap) == (ARCH, (4, 6, 8), "official")
    assert (student.input_size, student.width) == (SIZE, 192)
    assert 5.4e6 < sum(p.numel() for p in student.parameters()) < 5.8e6  # DeiT-Tiny's ~5.5 M (+2-way head)
    with torch.no_grad():
        out = student(images)
        expected = cls_at_layers(student.model, images, (4, 6, 8), "official")
    assert set(out) == {"logits", "embedding", "layer_cls"}
    assert out["layer_cls"].shape == (3, 3, 192)
    torch.testing.assert_close(out["embedding"], expected["feature"], rtol=0, atol=0)
    torch.testing.assert_close(out["layer_cls"], expected["layer_cls"], rtol=0, atol=0)


def test_deit_student_bad_layers_is_one_line():
    with pytest.raises(FasdError) as exc:
        DeitStudent(layers=(4, 12), img_size=SIZE)
    assert "0 to 11" in one_line(exc)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, as fasd.export uses it
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # timm's input-size assert, constant per size
def test_deit_deployable_onnx_dynamic_batch(tmp_path, images):
    torch.manual_seed(4)
    student = DeitStudent(img_size=SIZE).eval()
    deployed = student.deployable().eval()
    path = tmp_path / "deit.onnx"
    torch.onnx.export(deployed, (images[:1],), str(path), dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["logits", "p_live"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "p_live": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 5):
        x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            logits, p_live = deployed(x)
            train_logits = student(x)["logits"]
        onnx_logits, onnx_p = session.run(None, {"image": x.numpy()})
        assert onnx_logits.shape == (batch, 2) and onnx_p.shape == (batch,)
        np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(onnx_p, torch.softmax(train_logits, dim=1)[:, 1].numpy(), atol=1e-4, rtol=0)
