"""Student model, deployable subset, ImageNet weight loading and the student image stream."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v3_small

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.errors import FasdError
from fasd.student_train.model import (DeployedStudent, Student, build_student,
                                      load_imagenet_weights, parameter_counts)
from fasd.training.transforms import eval_transform, train_transform


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(0)
    return Student()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_output_shapes(student):
    student.train()
    logits, features = student(torch.randn(3, 3, 112, 112))
    assert logits.shape == (3, 2)
    assert features.shape == (3, 576)
    assert student.project(features).shape == (3, 512)


def test_parameter_counts(student):
    counts = parameter_counts(student)
    assert 1.4e6 <= counts["total"] <= 1.8e6
    assert 0.9e6 <= counts["deployed"] <= 1.1e6
    assert counts["projection"] == 576 * 512 + 512 + 512 * 512 + 512
    assert counts["total"] == counts["deployed"] + counts["projection"]


def test_deployed_p_live_is_softmax_of_full_model_logits(student):
    student.eval()
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        logits, _ = student(x)
        deployed_logits, p_live = DeployedStudent(student).eval()(x)
    torch.testing.assert_close(deployed_logits, logits)
    torch.testing.assert_close(p_live, torch.softmax(logits, dim=1)[:, 1])
    assert p_live.shape == (4,)


def test_weights_file_is_loaded_into_encoder(tmp_path, empty_hub):
    torch.manual_seed(1)
    reference = mobilenet_v3_small(weights=None)
    path = tmp_path / "mnv3s.pth"
    torch.save(reference.state_dict(), path)
    student, warning = build_student(path)
    assert warning is None
    for key, value in reference.features.state_dict().items():
        torch.testing.assert_close(student.features.state_dict()[key], value)


def test_hub_cache_is_used_and_missing_cache_warns(student, empty_hub):
    warning = load_imagenet_weights(student)
    assert warning is not None and "random initialisation" in warning
    torch.manual_seed(2)
    reference = mobilenet_v3_small(weights=None)
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), empty_hub / "checkpoints" / "mobilenet_v3_small-abcd.pth")
    assert load_imagenet_weights(student) is None
    first_conv = "0.0.weight"
    torch.testing.assert_close(student.features.state_dict()[first_conv],
                               reference.features.state_dict()[first_conv])


def _garbage(path):
    path.write_bytes(b"not a checkpoint")


def _no_features(path):
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, path)


def _wrong_shapes(path):
    state = mobilenet_v3_small(weights=None).state_dict()
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, path)


@pytest.mark.parametrize("write", [_garbage, _no_features, _wrong_shapes])
def test_malformed_weights_file_is_a_user_error(tmp_path, write, student):
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(FasdError, match="bad.pth"):
        load_imagenet_weights(student, path)


def test_missing_weights_file_is_a_user_error(tmp_path, student):
    with pytest.raises(FasdError, match="does not exist"):
        load_imagenet_weights(student, tmp_path / "missing.pth")


def test_eval_transform_resizes_and_normalises():
    image = np.full((90, 70, 3), (255, 0, 51), dtype=np.uint8)
    out = eval_transform()(image)
    assert type(out) is torch.Tensor and out.dtype == torch.float32
    assert out.shape == (3, 112, 112)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 51), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5, rtol=0)
    assert torch.equal(eval_transform()(image), out)


def test_train_transform_is_random_with_the_right_shape():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(128, 96, 3), dtype=np.uint8)
    transform = train_transform()
    torch.manual_seed(0)
    first = transform(image)
    second = transform(image)
    assert first.shape == (3, 112, 112) and first.dtype == torch.float32
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(transform(image), first)


def test_student_side_never_imports_the_teacher_side():
    code = ("import sys, fasd.student_train.model, fasd.student_train.losses, "
            "fasd.training.sampler, fasd.training.transforms; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'open_clip' "
            "or m.startswith('fasd.teacher_cache')]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
