"""Contract tests over every registry member, as timm's tests loop over ``list_models()``: every student trains
and exports with parity through the CLI, every teacher caches and re-verifies from its own store. A member
without an example below fails ``test_every_member_has_an_example``, so a new kind is tested from day one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fasd.data.synth import synthesize
from fasd.student_train.students import STUDENTS
from fasd.teacher_cache.registry import TEACHERS
from helpers import fasd

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mm_config(tmp_path_factory) -> Path:
    """Two tiny RGB + depth + IR domains (what the multimodal student and teacher read)."""
    return synthesize(tmp_path_factory.mktemp("mm"), domains=2, frames=36, size=64, seed=1, progress=False,
                      modalities=("rgb", "depth", "ir"))


# --- students: the training flags of a small, fast example and the data it needs ------------------------------

STUDENT_EXAMPLES = {
    "mobilenetv3-small": ([], "rgb"),
    "deit-tiny": (["--input-size", "32", "--student-arch", "deit_tiny_patch16_224"], "rgb"),
    "mobilenetv3-small-mm": ([], "mm"),
}


class _TinyOnnxTeacher(torch.nn.Module):
    """A 3-class head ([print, live, replay]) on 32-px raw RGB: what another framework's teacher exports."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))

    def forward(self, image):
        return self.body(image)


def _clip_state(tmp: Path, state) -> list:
    path = tmp / "clip_state.pt"
    torch.save(state, path)
    return ["--teacher", "clip", "--checkpoint", path]


def _vit(tmp: Path, _state) -> list:
    import timm
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=12, num_classes=2)
    path = tmp / "deit.pth"
    torch.save({"model": model.state_dict()}, path)
    return ["--teacher", "vit", "--arch", "deit_tiny_patch16_224", "--checkpoint", path, "--layers", "4,6,8"]


def _onnx(tmp: Path, _state) -> list:
    path = tmp / "teacher.onnx"
    torch.onnx.export(_TinyOnnxTeacher().eval(), torch.zeros(1, 3, 32, 32), path, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n"}}, dynamo=False)
    return ["--teacher", "onnx", "--checkpoint", path, "--input-size", "32", "--live-class", "1",
            "--normalize", "none", "--pixel-range", "255"]


def _mmda(tmp: Path, _state) -> list:
    from fasd.teacher_cache.arch import TINY_ARCH, random_clip
    from fasd.teacher_cache.mmda.finetune import save_mmda_checkpoint
    from fasd.teacher_cache.mmda.model import build_mmda_teacher
    from fasd.teacher_cache.mmda.captions import default_captions
    path = tmp / "mmda.pt"
    save_mmda_checkpoint(build_mmda_teacher(random_clip(TINY_ARCH), default_captions()), path, epoch=0)
    return ["--teacher", "mmda", "--checkpoint", path]


TEACHER_EXAMPLES = {  # kind -> (cache-teacher args for a tiny random teacher of that kind, data)
    "flip-mcl": (None, "rgb"),  # the session's tiny FLIP checkpoint (conftest)
    "clip": (_clip_state, "rgb"),
    "vit": (_vit, "rgb"),
    "onnx": (_onnx, "rgb"),
    "mmda": (_mmda, "mm"),
}


def test_every_member_has_an_example():
    assert set(STUDENT_EXAMPLES) == set(STUDENTS.all()), "add a small example for the new student above"
    assert set(TEACHER_EXAMPLES) == set(TEACHERS.all()), "add a small example for the new teacher above"


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(STUDENT_EXAMPLES))
def test_every_student_trains_a_step_and_exports_with_parity(student, synth_config, mm_config, tmp_path):
    extra, data = STUDENT_EXAMPLES[student]
    config, split = (synth_config, "holdout-gamma") if data == "rgb" else (mm_config, "holdout-beta")
    run = tmp_path / "run"
    result = fasd("train", "--student", student, "--no-teacher", "--split", split, "--config", config, "--out", run,
                  "--epochs", "1", "--max-draws", "16", "--batch-size", "8", *extra)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["student"] == student and 0.0 <= metrics["auc"] <= 1.0
    exported = tmp_path / "student.onnx"
    result = fasd("export", run / "best.pt", "--out", exported, "--parity-data", split.split("-")[1], "--config",
                  config)
    assert result.exit_code == 0, result.output
    assert exported.is_file()  # export fails, leaving no file, when the ONNX logits differ by > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("teacher", sorted(TEACHER_EXAMPLES))
def test_every_teacher_caches_and_verifies_from_its_store(teacher, synth_config, mm_config, tiny_flip_checkpoint,
                                                          tiny_clip_state, tmp_path):
    make, data = TEACHER_EXAMPLES[teacher]
    args = ["--checkpoint", tiny_flip_checkpoint] if make is None else make(tmp_path, tiny_clip_state)
    checkpoint = Path(args[args.index("--checkpoint") + 1])
    config = synth_config if data == "rgb" else mm_config
    store = tmp_path / "teacher.zarr"
    result = fasd("cache-teacher", "--dataset", "alpha", "--config", config, "--store", store, "--batch-size", "16",
                  *args)
    assert result.exit_code == 0, result.output
    result = fasd("inspect", store, "--verify", "4", "--checkpoint", checkpoint, "--config", config, "--json")
    assert result.exit_code == 0, result.output
    verify = json.loads(result.output)["verify"]["alpha"]
    assert verify["frames"] == 4 and verify["worst_cosine"] >= 0.999 and verify["max_logit_diff"] <= 1e-3, verify
