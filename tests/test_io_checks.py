"""OSErrors are one line (the CLI's command decorator), outputs are checked writable up front, flags are finite."""

from __future__ import annotations

import errno

import pytest
from typer.testing import CliRunner

from fasd.cli import app
from fasd.cli.app import _finite, _positive
from fasd.errors import FasdError
from fasd.io_checks import ensure_writable, os_error_line


def test_os_error_line_wording():
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device", "/d/x.zarr")) == \
        "cannot write /d/x.zarr: No space left on device"
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "/r/o")) == \
        "cannot write /r/o: Permission denied"
    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file or directory", "/m")).startswith(
        "cannot access /m")


def test_ensure_writable(tmp_path):
    ensure_writable(tmp_path / "new" / "deeper" / "out.onnx")  # creatable folders are fine
    assert not (tmp_path / "new").exists()  # the check creates nothing
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    with pytest.raises(FasdError, match="is a file, not a folder"):
        ensure_writable(blocker / "out" / "x.pt")
    with pytest.raises(FasdError, match="not writable"):
        ensure_writable("/proc/fasd-out/x.pt")  # root ignores permission bits; /proc refuses new files
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_flags_are_refused(value):
    with pytest.raises(FasdError, match="finite"):
        _finite("--lr", value)
    with pytest.raises(FasdError, match="--lr"):
        _positive("--lr", value)
    _positive("--lr", 1e-3)


def test_cli_turns_oserror_into_one_line_and_prints_version(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    result = CliRunner().invoke(app, ["synth", str(blocker / "out"), "--frames", "36", "--size", "32"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fasd synth: error: cannot write ") and "Traceback" not in \
        result.output
    assert blocker.read_text() == "mine"
    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("fasd ")


def test_version_is_pyprojects():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert CliRunner().invoke(app, ["--version"]).output.split() == ["fasd", project["version"]]


def test_os_error_without_a_filename_keeps_its_message():
    assert os_error_line(OSError(errno.ENOENT, "Unable to create file (name = '/proc/x.h5')")) == \
        "cannot access: [Errno 2] Unable to create file (name = '/proc/x.h5')"
