"""fasd.toml reader and writer, the manifest CSV reader and the MCIO reader: hand cases and properties."""

from __future__ import annotations

import csv
import string
import tomllib

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fasd.config import FORMATS, load_registry, register_dataset, write_config
from fasd.constants import SPLITS
from fasd.data.folder import FolderFrameSource
from fasd.data.mcio import MCIOFrameSource, scan_mcio
from fasd.data.source import in_val_share
from fasd.errors import FasdError

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}", fullmatch=True).filter(lambda n: "-to-" not in n)
# Any path text TOML can carry (quotes, backslashes, unicode, control characters) except NUL.
paths = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30)
specs = st.fixed_dictionaries({"format": st.sampled_from(FORMATS), "path": paths})


def _one_line_error(call, *fragments: str) -> str:
    with pytest.raises(FasdError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


@PROPERTY
@given(first=st.dictionaries(names, specs, min_size=1, max_size=4),
       second=st.dictionaries(names, specs, min_size=1, max_size=4))
def test_write_then_read_round_trips_and_merges(tmp_path_factory, first, second):
    folder = tmp_path_factory.mktemp("cfg")
    config = folder / "fasd.toml"
    write_config(config, first, list(first))
    write_config(config, second, list(second))
    registry = load_registry(config)
    expected = {**first, **second}
    assert set(registry.datasets) == set(expected)
    base = config.resolve().parent
    for name, spec in expected.items():
        entry = registry.datasets[name]
        assert entry.format == spec["format"] and entry.path == (base / spec["path"]).resolve()
    assert registry.domains == list(first) + [n for n in second if n not in first]
    assert tomllib.loads(config.read_text())["datasets"] == expected


def test_synth_and_register_keep_the_users_other_entries(tmp_path):
    config = tmp_path / "fasd.toml"
    config.write_text('title = "mine"\n[datasets.oulu]\nformat = "folder"\npath = "data/oulu"\n'
                      'manifest = "data/oulu/m.csv"\n[extra]\nowner = "me"\n')
    register_dataset(config, "replay", "hdf5", tmp_path / "packs" / "replay.h5")
    write_config(config, {"alpha": {"format": "hdf5", "path": "alpha.h5"}}, ["alpha"])
    raw = tomllib.loads(config.read_text())
    assert raw["title"] == "mine" and raw["extra"] == {"owner": "me"}
    assert raw["datasets"]["oulu"] == {"format": "folder", "path": "data/oulu", "manifest": "data/oulu/m.csv"}
    assert raw["datasets"]["replay"] == {"format": "hdf5", "path": "packs/replay.h5"}
    # Without [protocol] every registered dataset was a domain; adding alpha keeps them.
    assert raw["protocol"]["domains"] == ["oulu", "replay", "alpha"]
    assert [p.name for p in tmp_path.iterdir()] == ["fasd.toml"]  # no temporary file left


def test_files_with_comments_are_refused_untouched(tmp_path):
    config = tmp_path / "fasd.toml"
    text = '# my datasets\n[datasets.oulu]\npath = "o.h5"\n'
    config.write_text(text)
    _one_line_error(lambda: register_dataset(config, "x", "hdf5", tmp_path / "x.h5"), "has comments")
    assert config.read_text() == text
    config.write_text('[datasets.oulu]\npath = "o#1.h5"  \n')  # '#' inside a string is no comment
    register_dataset(config, "x", "hdf5", tmp_path / "x.h5")
    assert set(load_registry(config).datasets) == {"oulu", "x"}


@pytest.mark.parametrize("body, fragments", [
    ('[datasets.a]\nformat = 5\npath = "a.h5"\n', ("datasets.a.format", "must be a string", "int")),
    ('[datasets.a]\npath = ["a.h5"]\n', ("datasets.a.path", "must be a string", "list")),
    ('[datasets.a]\npath = "a.h5"\nmanifest = true\n', ("datasets.a.manifest", "bool")),
    ('datasets = 3\n', ("[datasets]", "must be a table")),
    ('[datasets]\na = "a.h5"\n', ("[datasets.a]", "must be a table")),
    ('[datasets.a]\npath = "a.h5"\nmanfest = "m.csv"\n', ("unknown key 'manfest'", "format, path, manifest")),
    ('[datasets.a]\nformat = "zip"\npath = "a.h5"\n', ("format 'zip'",)),
    ('[datasets.a]\nformat = "hdf5"\n', ("has no 'path'",)),
    ('[datasets.a]\npath = ""\n', ("non-empty",)),
    ('[datasets."my set"]\npath = "a.h5"\n', ("'my set'", "not allowed")),
    ('[datasets."a.b"]\npath = "a.h5"\n', ("'a.b'", "not allowed")),
    ('[datasets.a-to-b]\npath = "a.h5"\n', ("'a-to-b'", "-to-")),
    ('[datasets.a]\npath = "a.h5"\n[protocol]\ndomains = "a"\n', ("[protocol] domains", "must be an array")),
    ('[datasets.a]\npath = "a.h5"\n[protocol]\ndomains = [1]\n', ("names 1",)),
    ('[datasets.a]\npath = "a.h5"\n[protocol]\ndomain = ["a"]\n', ("unknown key 'domain'",)),
    ('protocol = 1\n', ("[protocol]", "must be a table")),
    ('[datasets.a\npath = "a.h5"\n', ("not valid TOML",)),
])
def test_malformed_config_is_one_line(tmp_path, body, fragments):
    config = tmp_path / "fasd.toml"
    config.write_text(body)
    _one_line_error(lambda: load_registry(config), *fragments)
    _one_line_error(lambda: register_dataset(config, "new", "hdf5", tmp_path / "n.h5"))
    assert config.read_text() == body  # a refused merge leaves the file as it was


def test_bad_names_and_unreadable_files(tmp_path):
    _one_line_error(lambda: write_config(tmp_path / "f.toml", {"a b": {"path": "x"}}, None), "'a b'")
    assert not (tmp_path / "f.toml").exists()
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[datasets]")
    _one_line_error(lambda: load_registry(tmp_path / "bin.toml"), "not a UTF-8")
    _one_line_error(lambda: load_registry(tmp_path), "is a directory")


toml_values = st.recursive(st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=6)


@PROPERTY
@example(doc={"protocol": {"\n": 0}})  # found by this test: key names with line breaks, quoted in the message
@example(doc={"datasets": {"\n": {"path": "x"}}})
@given(doc=st.dictionaries(st.sampled_from(["datasets", "protocol", "other"]),
                           st.dictionaries(st.text(max_size=6), toml_values, max_size=3), max_size=3))
def test_any_toml_document_reads_or_is_one_line(tmp_path_factory, doc):
    """Whatever types a TOML file holds, the reader answers with a registry or one FasdError line."""
    config = tmp_path_factory.mktemp("any") / "fasd.toml"
    config.write_text(tomli_w.dumps(doc))
    try:
        registry = load_registry(config)
    except FasdError as exc:
        assert "\n" not in str(exc)
    else:
        assert set(registry.domains) <= set(registry.datasets)


# --- manifest CSV -------------------------------------------------------------------------------------

field = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1,
                max_size=12).map(str.strip).filter(bool)
manifest_rows = st.lists(st.tuples(field, field, st.sampled_from(["0", "1"]), st.sampled_from(SPLITS),
                                   st.text(string.ascii_letters + " ,\"", max_size=6).map(str.strip),
                                   st.text(string.ascii_letters, max_size=6)),
                         min_size=1, max_size=8, unique_by=lambda row: row[0])


@PROPERTY
@given(rows=manifest_rows)
def test_manifest_round_trip(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("manifest")
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["frame_id", "path", "label", "split", "video_id", "attack_type"])
        out.writerows(rows)
    table = FolderFrameSource(folder / "manifest.csv").table
    frame_id, _, label, split, video, attack = (list(c) for c in zip(*rows))
    assert table.frame_id.tolist() == frame_id and table.label.tolist() == [int(v) for v in label]
    assert table.split.tolist() == split and table.video_id.tolist() == video
    assert table.attack_type.tolist() == attack


@PROPERTY
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_manifest_bytes_read_or_are_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("junk") / "manifest.csv"
    path.write_bytes(b"frame_id,path,label,split\n" + data)
    try:
        FolderFrameSource(path)
    except FasdError as exc:
        assert "\n" not in str(exc)


# --- MCIO folders ---------------------------------------------------------------------------------------

mcio_files = st.lists(st.tuples(st.sampled_from([*SPLITS, None]), st.sampled_from(["real", "fake"]),
                                st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True), st.integers(0, 3),
                                st.sampled_from([".png", ".jpg", ".JPEG"])),
                      min_size=1, max_size=10, unique_by=lambda f: (f[0], f[1], f[2], f[3]))


@PROPERTY
@given(files=mcio_files)
def test_mcio_reader_against_the_file_list(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("mcio")
    with_split = any(split is not None for split, *_ in files)
    expected = {}
    for split, kind, video, index, suffix in files:
        if with_split and split is None:
            continue  # a split layout ignores top-level class folders
        relative = f"{split}/{kind}" if split else kind
        (root / relative).mkdir(parents=True, exist_ok=True)
        (root / relative / f"{video}_frame{index}{suffix}").write_bytes(b"")
        frame_id = f"{relative}/{video}_frame{index}"
        derived_val = split == "train" and not any(s == "val" for s, *_ in files) and \
            in_val_share(f"{relative}/{video}")  # FLIP's layout without val/: a share of train videos
        expected[frame_id] = (0 if kind == "fake" else 1, "val" if derived_val else split or "test",
                              f"{relative}/{video}")
    if not expected:
        with pytest.raises(FasdError, match="is not a FLIP/MCIO frame folder"):
            scan_mcio(root)
        return
    table = MCIOFrameSource(root).table
    assert table.frame_id.tolist() == sorted(expected)
    got = zip(table.label.tolist(), table.split.tolist(), table.video_id.tolist())
    assert dict(zip(table.frame_id.tolist(), got)) == expected
    assert set(table.attack_type.tolist()) == {""}
    order = [f.frame_id for f in scan_mcio(root)]  # ingest order: split, class, file name
    assert sorted(order) == sorted(expected) and len(order) == len(set(order))
    assert np.all(np.diff([SPLITS.index(expected[f][1]) for f in order]) >= 0)
