"""The README's Quick start block runs verbatim, top to bottom, in an empty folder with the venv's `fasd`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_block(text: str) -> str:
    """The first ```bash block under the '## Quick start' heading."""
    section = re.search(r"^## Quick start.*?$(.*?)^## ", text, flags=re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), flags=re.M | re.S)
    assert block, "the Quick start section has no ```bash block"
    return block.group(1)


def test_quick_start_block_is_found_and_predicts_on_images_it_made():
    block = quick_start_block(README.read_text())
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0].startswith("fasd synth") and commands[-1].startswith("fasd predict")
    assert any(c.startswith("fasd frames") for c in commands)  # the images predict reads are made here
    assert all("--config" in c for c in commands if c.split()[1] in {"teacher-finetune", "cache-teacher",
                                                                       "train", "evaluate"})


@pytest.mark.slow
def test_quick_start_runs_verbatim(tmp_path):
    block = quick_start_block(README.read_text())
    bin_dir = str(Path(sys.executable).parent)  # the venv's bin, where `fasd` is installed
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("FASD_CONFIG", None)
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    faces = sorted((tmp_path / "faces").glob("*.png"))
    assert len(faces) == 4 and {"live", "spoof"} == {p.name.split("_")[1] for p in faces}
    for face in faces:  # predict printed one row per image it made
        assert str(face.relative_to(tmp_path)) in result.stdout
    assert (tmp_path / "student.onnx").is_file() and (tmp_path / "runs" / "gamma" / "best.pt").is_file()
