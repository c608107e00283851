"""The README and every page under docs/ stay true: mkdocs builds them strictly, the Quick start runs verbatim,
and every other ```bash block either runs verbatim after the Quick start or says why it cannot
(``<!-- not run: REASON -->`` on the line before it: real datasets, a GPU, an object store)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]*\S)\s*-->\s*\n$")


def bash_blocks(text: str) -> list[tuple[str, str | None]]:
    """Every ```bash block of a page with its not-run reason (None: it runs)."""
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        before = text[:match.start()]
        reason = NOT_RUN.search(before[-300:])
        blocks.append((match.group(1), reason.group("reason") if reason else None))
    return blocks


def quick_start_block(text: str) -> str:
    """The first ```bash block under the '## Quick start' heading."""
    section = re.search(r"^## Quick start.*?$(.*?)^## ", text, flags=re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), flags=re.M | re.S)
    assert block, "the Quick start section has no ```bash block"
    return block.group(1)


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # the venv's bin, where `fasd` is installed
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    env.pop("FASD_CONFIG", None)
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def runnable_blocks() -> list[tuple[str, list[str]]]:
    """(page name, its runnable blocks in order) for every page with one, the Quick start excluded."""
    quick = quick_start_block(README.read_text())
    pages = []
    for page in PAGES:
        blocks = [block for block, reason in bash_blocks(page.read_text()) if reason is None and block != quick]
        if blocks:
            pages.append((page.name, blocks))
    return pages


@pytest.fixture(scope="session")
def quick_start_folder(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """An empty folder in which the README's Quick start ran verbatim, and what it printed."""
    folder = tmp_path_factory.mktemp("quick_start")
    return folder, run_block(quick_start_block(README.read_text()), folder)


def test_mkdocs_builds_strictly(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "commands" / "index.html").is_file()


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Install", "## Quick start", "## Recipes", "## Results", "## Documentation"):
        assert heading in text
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", text))
    assert linked == {p.name for p in PAGES[1:] if p.name != "index.md"}, "every docs page is linked"


def test_every_not_run_marker_belongs_to_a_bash_block():
    for page in PAGES:
        text = page.read_text()
        markers = re.findall(r"<!-- not run:", text)
        reasons = [reason for _, reason in bash_blocks(text) if reason is not None]
        assert len(markers) == len(reasons), f"{page.name}: a not-run marker stands before no ```bash block"
        assert all(len(reason) > 10 for reason in reasons), f"{page.name}: a not-run reason says what it needs"
    assert {"commands.md", "deploying.md"} <= {name for name, _ in runnable_blocks()}


def test_quick_start_block_is_found_and_predicts_on_images_it_made():
    block = quick_start_block(README.read_text())
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0].startswith("fasd synth") and commands[-1].startswith("fasd predict")
    assert any(c.startswith("fasd frames") for c in commands)  # the images predict reads are made here
    assert all("--config" in c for c in commands if c.split()[1] in {"teacher-finetune", "cache-teacher",
                                                                       "train", "evaluate"})


@pytest.mark.slow
def test_quick_start_runs_verbatim(quick_start_folder):
    folder, result = quick_start_folder
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    faces = sorted((folder / "faces").glob("*.png"))
    assert len(faces) == 4 and {"live", "spoof"} == {p.name.split("_")[1] for p in faces}
    for face in faces:  # predict printed one row per image it made
        assert str(face.relative_to(folder)) in result.stdout
    assert (folder / "student.onnx").is_file() and (folder / "runs" / "gamma" / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("page, blocks", runnable_blocks(), ids=[name for name, _ in runnable_blocks()])
def test_docs_blocks_run_verbatim_after_the_quick_start(page, blocks, quick_start_folder, tmp_path):
    folder, quick = quick_start_folder
    assert quick.returncode == 0, "the Quick start failed; see test_quick_start_runs_verbatim"
    work = tmp_path / "work"
    shutil.copytree(folder, work, symlinks=True)
    for block in blocks:
        result = run_block(block, work)
        assert result.returncode == 0, f"{page}:\n{block}\n" + result.stdout[-2000:] + result.stderr[-2000:]
