"""Bad inputs found by the issue-12 sweep: one line, exit 2, and nothing of the user's touched."""

from __future__ import annotations

import torch

from helpers import assert_one_line, fasd


def test_synth_never_overwrites_a_file_it_did_not_write(tmp_path):
    (tmp_path / "alpha.h5").write_bytes(b"my own data")
    assert_one_line(fasd("synth", tmp_path, "--domains", "2", "--frames", "36", "--size", "32"),
                    "was not written by fasd synth")
    assert (tmp_path / "alpha.h5").read_bytes() == b"my own data"
    again = tmp_path / "again"
    assert fasd("synth", again, "--domains", "2", "--frames", "36", "--size", "32").exit_code == 0
    assert fasd("synth", again, "--domains", "2", "--frames", "36", "--size", "32").exit_code == 0  # its own


def test_a_clip_state_dict_of_inconsistent_shapes_is_one_line(tmp_path, synth_config, tiny_clip_state):
    broken = dict(tiny_clip_state) | {"visual.proj": torch.zeros(3, 3)}
    torch.save(broken, tmp_path / "broken.pt")
    assert_one_line(fasd("cache-teacher", "--dataset", "alpha", "--config", synth_config, "--teacher", "clip",
                         "--checkpoint", tmp_path / "broken.pt", "--store", tmp_path / "s.zarr"),
                    "not a consistent CLIP ViT state dict")
    assert not (tmp_path / "s.zarr").exists()


def test_negative_and_non_finite_numbers_are_refused(tmp_path, synth_store):
    assert_one_line(fasd("inspect", synth_store, "--verify", "-1"), "--verify must be >= 0")
    assert_one_line(fasd("ingest", "mcio", "--root", tmp_path, "--out", tmp_path / "p.h5", "--margin", "nan"),
                    "--margin")
    assert not (tmp_path / "p.h5").exists()
