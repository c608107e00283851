"""Frame sources: manifest folder, FLIP/MCIO folders, HDF5 packs and the dispatch from fasd.toml entries."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fasd.config import DatasetEntry
from fasd.data.folder import FolderFrameSource
from fasd.data.hdf5_pack import HDF5FrameSource, PackWriter
from fasd.data.mcio import MCIOFrameSource
from fasd.data.open_source import open_source
from fasd.data.source import UnreadableFrame
from fasd.errors import FasdError


def pixels(seed: int, height: int = 6, width: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_png(path: Path, seed: int, image: np.ndarray | None = None) -> np.ndarray:
    """Write ``image`` (default: noise from ``seed``); the suffix picks the encoder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels(seed) if image is None else image
    Image.fromarray(image).save(path)
    return image


# --- folder + manifest -------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_png(tmp_path / "img" / "a.png", 1)
    write_png(tmp_path / "img" / "b.png", 2)
    Image.fromarray(pixels(3)[..., 0]).save(tmp_path / "img" / "gray.png")  # single channel -> RGB
    (tmp_path / "manifest.csv").write_text(
        "frame_id,path,label,split,video_id,attack_type\n"
        "a,img/a.png,1,train,v1,\n"
        "b,img/b.png,0,test,v2,print\n"
        "g,img/gray.png,0,val,v3,replay\n")
    return tmp_path


def test_folder_source_reads_table_and_images(folder: Path) -> None:
    source = FolderFrameSource(folder / "manifest.csv", "mine")
    assert (source.name, source.format, len(source)) == ("mine", "folder", 3)
    assert source.table.frame_id.tolist() == ["a", "b", "g"]
    assert source.table.label.tolist() == [1, 0, 0]
    assert source.table.label.dtype == np.int8
    assert source.table.split.tolist() == ["train", "test", "val"]
    assert source.table.video_id.tolist() == ["v1", "v2", "v3"]
    assert source.table.attack_type.tolist() == ["", "print", "replay"]
    np.testing.assert_array_equal(source.read_image(1), pixels(2))
    gray = source.read_image(2)
    assert gray.shape == (6, 8, 3) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[..., 2], pixels(3)[..., 0])


def test_folder_source_optional_columns_default_to_empty(tmp_path: Path) -> None:
    write_png(tmp_path / "x.png", 4)
    (tmp_path / "manifest.csv").write_text("frame_id,path,label,split\nx,x.png,1,test\n")
    source = FolderFrameSource(tmp_path / "manifest.csv")
    assert source.name == tmp_path.name
    assert source.table.video_id.tolist() == [""] and source.table.attack_type.tolist() == [""]


def test_folder_source_unreadable_images(folder: Path) -> None:
    (folder / "img" / "a.png").write_bytes(b"this is not a png")
    (folder / "img" / "b.png").unlink()
    source = FolderFrameSource(folder / "manifest.csv")
    with pytest.raises(UnreadableFrame, match="^a: "):
        source.read_image(0)
    with pytest.raises(UnreadableFrame, match="^b: "):
        source.read_image(1)


def test_folder_source_truncated_image_is_unreadable(tmp_path: Path) -> None:
    write_png(tmp_path / "t.png", 5)
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "manifest.csv").write_text("frame_id,path,label,split\nt,t.png,1,test\n")
    with pytest.raises(UnreadableFrame):
        FolderFrameSource(tmp_path / "manifest.csv").read_image(0)


@pytest.mark.parametrize(("content", "message"), [
    ("frame_id,path,split\na,a.png,train\n", r"manifest.csv:1: .*lacks column\(s\) label"),
    ("frame_id,path,label,split\na,a.png,1,train\nb,b.png,2,train\n", r"manifest.csv:3: label '2'"),
    ("frame_id,path,label,split\na,a.png,live,train\n", r"manifest.csv:2: label 'live'"),
    ("frame_id,path,label,split\na,a.png,1,dev\n", r"manifest.csv:2: split 'dev' must be one of train"),
    ("frame_id,path,label,split\na,a.png,1,train\na,b.png,0,test\n", r"manifest.csv:3: duplicate frame_id 'a'"),
    ("frame_id,path,label,split\n,a.png,1,train\n", r"manifest.csv:2: frame_id and path must not be empty"),
    ("frame_id,path,label,split\n", r"manifest.csv: manifest has a header but no frames"),
])
def test_bad_manifest_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "manifest.csv").write_text(content)
    with pytest.raises(FasdError, match=message):
        FolderFrameSource(tmp_path / "manifest.csv")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FasdError, match="manifest CSV not found"):
        FolderFrameSource(tmp_path / "nope.csv")


# --- FLIP/MCIO layout ----------------------------------------------------------------------------------


def test_mcio_source_split_layout(tmp_path: Path) -> None:
    root = tmp_path / "replay"
    expected = {
        "test/fake/v9_frame0": write_png(root / "test" / "fake" / "v9_frame0.jpg", 1,
                                         np.full((6, 8, 3), (200, 40, 90), np.uint8)),
        "test/real/v3_frame1": write_png(root / "test" / "real" / "v3_frame1.png", 2),
        "train/fake/v2_frame0": write_png(root / "train" / "fake" / "v2_frame0.png", 3),
        "train/real/v1_frame0": write_png(root / "train" / "real" / "v1_frame0.png", 4),
        "train/real/v1_frame1": write_png(root / "train" / "real" / "v1_frame1.PNG", 5),
    }
    (root / "train" / "real" / "notes.txt").write_text("ignored")
    source = MCIOFrameSource(root, "replay")
    table = source.table
    assert (source.name, source.format) == ("replay", "mcio")
    assert table.frame_id.tolist() == sorted(expected)
    assert table.label.tolist() == [0, 1, 0, 1, 1]
    assert table.split.tolist() == ["test", "test", "train", "train", "train"]
    assert table.video_id.tolist() == ["test/fake/v9", "test/real/v3", "train/fake/v2", "train/real/v1",
                                       "train/real/v1"]
    assert table.attack_type.tolist() == ["", "", "", "", ""]  # MCIO folders do not say which attack
    np.testing.assert_array_equal(source.read_image(4), expected["train/real/v1_frame1"])
    jpeg = source.read_image(0)  # lossy: close, not equal
    assert jpeg.shape == (6, 8, 3) and np.abs(jpeg.astype(int) - expected["test/fake/v9_frame0"]).max() < 8


def test_mcio_source_celeb_layout_is_test_split(tmp_path: Path) -> None:
    write_png(tmp_path / "celeb" / "real" / "001.png", 1)
    write_png(tmp_path / "celeb" / "fake" / "002.png", 2)
    table = MCIOFrameSource(tmp_path / "celeb").table
    assert table.frame_id.tolist() == ["fake/002", "real/001"]
    assert table.split.tolist() == ["test", "test"]
    assert table.label.tolist() == [0, 1]


@pytest.mark.parametrize("layout", ["flat", "empty-classes", "missing"])
def test_mcio_source_rejects_other_layouts(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    if layout == "flat":
        write_png(root / "a_frame0.png", 1)
    elif layout == "empty-classes":
        (root / "train" / "real").mkdir(parents=True)
    with pytest.raises(FasdError, match=r"expected <root>/\{train,val,test\}/\{real,fake\}"):
        MCIOFrameSource(root)


def test_mcio_source_rejects_two_files_for_one_frame(tmp_path: Path) -> None:
    write_png(tmp_path / "test" / "real" / "a.png", 1)
    write_png(tmp_path / "test" / "real" / "a.jpg", 1)
    with pytest.raises(FasdError, match="test/real/a exist with two image extensions"):
        MCIOFrameSource(tmp_path)


# --- HDF5 packs --------------------------------------------------------------------------------------


@pytest.fixture
def pack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    images = np.stack([pixels(i, 8, 8) for i in range(5)])
    with PackWriter(tmp_path / "p.h5", dataset="packed", size=8, source="test", crop_policy="none") as writer:
        writer.append(images[:3], ["f0", "f1", "f2"], [1, 0, 0], ["train", "train", "val"],
                      ["v0", "v1", "v1"], ["", "print", "print"])
        writer.append(images[3:], ["f3", "f4"], [1, 0], ["test", "test"], ["v2", "v3"], ["", "replay"])
    return tmp_path / "p.h5", images


def test_hdf5_round_trip(pack: tuple[Path, np.ndarray]) -> None:
    path, images = pack
    source = HDF5FrameSource(path)
    assert (source.name, source.format, len(source)) == ("packed", "hdf5", 5)
    assert source.table.frame_id.tolist() == ["f0", "f1", "f2", "f3", "f4"]
    assert source.table.label.tolist() == [1, 0, 0, 1, 0]
    assert source.table.split.tolist() == ["train", "train", "val", "test", "test"]
    assert source.table.video_id.tolist() == ["v0", "v1", "v1", "v2", "v3"]
    assert source.table.attack_type.tolist() == ["", "print", "print", "", "replay"]
    for row in range(5):
        np.testing.assert_array_equal(source.read_image(row), images[row])


def test_hdf5_source_survives_pickling(pack: tuple[Path, np.ndarray]) -> None:
    path, images = pack
    source = HDF5FrameSource(path, "renamed")
    source.read_image(0)  # opens the file handle, which must not travel
    clone = pickle.loads(pickle.dumps(source))
    assert clone.name == "renamed"
    np.testing.assert_array_equal(clone.read_image(4), images[4])
    np.testing.assert_array_equal(source.read_image(3), images[3])


def test_hdf5_source_in_dataloader_workers(pack: tuple[Path, np.ndarray]) -> None:
    import torch
    from torch.utils.data import DataLoader, Dataset

    path, images = pack
    source = HDF5FrameSource(path)
    source.read_image(0)

    class Frames(Dataset):
        def __len__(self) -> int:
            return len(source)

        def __getitem__(self, row: int) -> torch.Tensor:
            return torch.from_numpy(source.read_image(row))

    batches = list(DataLoader(Frames(), batch_size=2, num_workers=2))
    np.testing.assert_array_equal(torch.cat(batches).numpy(), images)


def test_hdf5_missing_pack(tmp_path: Path) -> None:
    with pytest.raises(FasdError, match="HDF5 frame pack not found"):
        HDF5FrameSource(tmp_path / "missing.h5")


# --- dispatch from fasd.toml entries -------------------------------------------------------------------


def test_open_source_dispatches_on_format(tmp_path: Path, folder: Path, pack: tuple[Path, np.ndarray]) -> None:
    write_png(tmp_path / "mcio" / "test" / "real" / "a.png", 1)
    (folder / "other.csv").write_text("frame_id,path,label,split\nonly,img/a.png,1,test\n")
    cases = [
        (DatasetEntry("h", "hdf5", pack[0]), "hdf5", 5),
        (DatasetEntry("f", "folder", folder), "folder", 3),
        (DatasetEntry("m", "folder", folder, manifest=folder / "other.csv"), "folder", 1),
        (DatasetEntry("c", "mcio", tmp_path / "mcio"), "mcio", 1),
    ]
    for entry, fmt, rows in cases:
        source = open_source(entry)
        assert (source.name, source.format, len(source)) == (entry.name, fmt, rows)


def test_open_source_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FasdError, match="unknown format 'zip'"):
        open_source(DatasetEntry("z", "zip", tmp_path))
