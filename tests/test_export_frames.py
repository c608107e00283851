"""`fasd frames`: PNG files of a pack's frames, alternating live and spoof, pixel for pixel the pack's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fasd.cli import app
from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.export_frames import pick_rows
from fasd.data.hdf5_pack import HDF5FrameSource


def test_pick_rows_alternates_classes_in_pack_order_then_takes_what_is_left():
    labels = np.array([LABEL_SPOOF, LABEL_SPOOF, LABEL_LIVE, LABEL_SPOOF, LABEL_LIVE, LABEL_SPOOF])
    rows = np.array([0, 1, 2, 3, 4, 5])
    assert pick_rows(labels, rows, 4).tolist() == [2, 0, 4, 1]
    assert pick_rows(labels, rows, 6).tolist() == [2, 0, 4, 1, 3, 5]
    assert pick_rows(labels, rows[[0, 1]], 3).tolist() == [0, 1]


def test_frames_command_writes_the_pack_frames(synth_config, tmp_path):
    pack = synth_config.parent / "gamma.h5"
    result = CliRunner().invoke(app, ["frames", str(pack), "--out", str(tmp_path / "faces"), "--count", "3"])
    assert result.exit_code == 0, result.output
    source = HDF5FrameSource(pack)
    test_rows = source.table.rows_in_splits(["test"])
    files = sorted((tmp_path / "faces").glob("*.png"))
    assert len(files) == 3
    by_id = {str(f): i for i, f in enumerate(source.table.frame_id)}
    for path, label in zip(files, ("live", "spoof", "live")):
        index, name, frame_id = path.stem.split("_", 2)
        row = by_id[frame_id]
        assert name == label and row in test_rows
        assert name == ("live" if source.table.label[row] == LABEL_LIVE else "spoof")
        assert np.array_equal(np.asarray(Image.open(path)), source.read_image(row))


@pytest.mark.parametrize("args, message", [(["--count", "0"], "--count must be at least 1"),
                                           (["--split", "dev"], "--split must be one of train, val, test")])
def test_frames_command_refuses_bad_arguments_in_one_line(synth_config, tmp_path, args, message):
    result = CliRunner().invoke(app, ["frames", str(synth_config.parent / "gamma.h5"), "--out", str(tmp_path),
                                      *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_multimodal_pack_frames_go_to_one_folder_per_modality(tmp_path):
    from fasd.constants import MODALITIES, SPLITS
    from test_multimodal_data import write_pack

    assert SPLITS.index("test") == 2  # write_pack puts rows 2 and 5 in test: 2 spoof, 5 live
    present = np.ones((6, 3), dtype=bool)
    present[5, MODALITIES.index("ir")] = False  # the live test frame has no IR
    arrays = write_pack(tmp_path / "mm.h5", count=6, present=present)
    result = CliRunner().invoke(app, ["frames", str(tmp_path / "mm.h5"), "--out", str(tmp_path / "faces")])
    assert result.exit_code == 0, result.output
    written = {m: sorted(p.name for p in (tmp_path / "faces" / m).glob("*.png")) for m in MODALITIES}
    assert written == {"rgb": ["000_live_f5.png", "001_spoof_f2.png"],
                       "depth": ["000_live_f5.png", "001_spoof_f2.png"],
                       "ir": ["001_spoof_f2.png"]}  # no file: fasd predict reads IR as missing
    for modality, names in written.items():
        for name in names:
            row = int(name.rsplit("_f", 1)[1].split(".")[0])
            assert np.array_equal(np.asarray(Image.open(tmp_path / "faces" / modality / name)), arrays[modality][row])
