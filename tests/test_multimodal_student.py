"""The multimodal student: missing modality = the all-zero frame, modality dropout, heads, one ONNX graph."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torchvision.models import mobilenet_v3_small
from torchvision.transforms.v2 import functional as TF

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, MODALITIES
from fasd.errors import FasdError
from fasd.student_train.model import FEATURE_DIM
from fasd.student_train.multimodal import MultiModalStudent, load_imagenet_weights_per_modality

SIZE = 112


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """uint8-range pixels (N, 3, S, S) -> ImageNet-normalised, independently of the student's code."""
    return TF.normalize(pixels.float() / 255.0, list(IMAGENET_MEAN), list(IMAGENET_STD))


def frames(n: int, seed: int) -> torch.Tensor:
    return normalised(torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed)))


@pytest.fixture(scope="module")
def student() -> MultiModalStudent:
    """A student whose batch-norm statistics are those of real batches (cumulative averages over two training
    forwards of 16 frames, some modalities dropped): its eval-mode outputs depend on the input, at the scale of
    a trained student's logits."""
    torch.manual_seed(0)
    model = MultiModalStudent(projection_dim=32, modality_dropout=0.3)  # missing modalities are in the statistics
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
            module.reset_running_stats()
    with torch.no_grad():
        for seed in range(2):
            model(frames(16, seed), frames(16, seed + 10), frames(16, seed + 20))
    return model.eval()


def test_a_missing_modality_is_the_all_zero_frame(student):
    rgb, depth = frames(3, 1), frames(3, 2)
    zero = normalised(torch.zeros(3, 3, SIZE, SIZE))
    with torch.no_grad():
        missing = student(rgb, depth, None)
        explicit = student(rgb, depth, zero)
        deployed_logits, p_live = student.deployable()(rgb, depth, zero)
        only_rgb = student(rgb)
    for key in ("logits", "embedding", "projection"):
        torch.testing.assert_close(missing[key], explicit[key])
    torch.testing.assert_close(deployed_logits, missing["logits"])
    torch.testing.assert_close(p_live, torch.softmax(missing["logits"], dim=1)[:, 1])
    torch.testing.assert_close(only_rgb["logits"], student(rgb, zero, zero)["logits"])
    assert not torch.allclose(only_rgb["logits"], missing["logits"])  # depth does reach the logits
    with pytest.raises(FasdError, match="at least one"):
        student(None, None, None)


def test_outputs_and_heads(student):
    rgb, ir = frames(2, 3), frames(2, 4)
    with torch.no_grad():
        out = student.outputs({"rgb": rgb, "ir": ir})
        direct = student(rgb, None, ir)
    assert out["logits"].shape == (2, 2) and out["embedding"].shape == (2, FEATURE_DIM)
    assert out["projection"].shape == (2, 32)
    torch.testing.assert_close(out["logits"], direct["logits"])
    assert "projection" not in MultiModalStudent(projection_dim=None).eval()(rgb)
    assert set(student.deployable().state_dict()) & {k for k in student.state_dict() if "projection" in k} == set()


def _encoder_inputs(model: MultiModalStudent, *images) -> dict[str, torch.Tensor]:
    seen = {}
    hooks = [model.core.encoders[m].register_forward_pre_hook(lambda _m, args, m=m: seen.__setitem__(m, args[0]))
             for m in MODALITIES]
    with torch.no_grad():
        model(*images)
    for hook in hooks:
        hook.remove()
    return seen


def test_modality_dropout_drops_whole_modalities_never_all_and_only_in_training():
    torch.manual_seed(1)
    model = MultiModalStudent(projection_dim=None, modality_dropout=0.9).train()
    images = [frames(64, s) for s in (5, 6, 7)]
    seen = _encoder_inputs(model, *images)
    blank = normalised(torch.zeros(1, 3, SIZE, SIZE))
    dropped = torch.stack([(seen[m] == blank).flatten(1).all(dim=1) for m in MODALITIES], dim=1)
    kept = torch.stack([(seen[m] == x).flatten(1).all(dim=1) for m, x in zip(MODALITIES, images)], dim=1)
    assert bool((dropped ^ kept).all())  # each modality of each sample: untouched or wholly blank
    assert bool(kept.any(dim=1).all())  # never all of a sample's modalities
    assert int(dropped.sum()) > 64  # p = 0.9 drops most of them
    seen = _encoder_inputs(model.eval(), *images)
    assert all(torch.equal(seen[m], x) for m, x in zip(MODALITIES, images))
    with pytest.raises(FasdError, match="modality-dropout"):
        MultiModalStudent(modality_dropout=1.0)


def test_deployable_exports_to_one_onnx_graph_with_three_inputs(student):
    deployed = student.deployable()
    buffer = io.BytesIO()
    torch.onnx.export(deployed, tuple(frames(1, 0) for _ in MODALITIES), buffer, dynamo=False, opset_version=17,
                      input_names=list(MODALITIES), output_names=["logits", "p_live"],
                      dynamic_axes={name: {0: "batch"} for name in (*MODALITIES, "logits", "p_live")})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(MODALITIES)
    for batch in (1, 3):
        images = [frames(batch, 30 + s) for s in range(3)]
        images[1] = normalised(torch.zeros(batch, 3, SIZE, SIZE))  # depth missing
        with torch.no_grad():
            logits, p_live = deployed(*images)
        got = session.run(None, {m: x.numpy() for m, x in zip(MODALITIES, images)})
        assert np.abs(got[0] - logits.numpy()).max() <= 1e-4
        assert np.abs(got[1] - p_live.numpy()).max() <= 1e-4


def test_imagenet_weights_go_into_every_modality_encoder(tmp_path):
    torch.manual_seed(8)
    reference = mobilenet_v3_small(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mnv3.pth")
    model = MultiModalStudent(projection_dim=None)
    assert load_imagenet_weights_per_modality(model, tmp_path / "mnv3.pth") is None
    for encoder in model.core.encoders.values():
        for key, value in reference.features.state_dict().items():
            assert torch.equal(encoder.state_dict()[key], value), key
