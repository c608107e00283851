"""Face detection, the crop policy and `fasd ingest faces` on real photos (scikit-image's astronaut and cat)."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from skimage import data
from typer.testing import CliRunner

import faces_fixtures as ff
from fasd.cli import app
from fasd.data.hdf5_pack import HDF5FrameSource, PackWriter
from fasd.data.image_io import decode_image
from fasd.data.ingest import run_ingest
from fasd.errors import FasdError
from fasd.faces.crop import Face, crop_face, eye_angle, largest
from fasd.faces.detectors import DETECTORS, find_face, load_detector
from fasd.faces.policy import CropPolicy, policy_from_json, shared_policy

pytest.importorskip("av")


def fasd(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    return ff.build_faces_root(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def faces_pack(faces_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "mine.h5"
    return out, run_ingest("faces", faces_root, out, progress=False)


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.mark.parametrize("orientation", sorted(ff.STORED_TURNS))
def test_exif_orientation_is_applied_and_the_embedded_detector_then_finds_the_face(orientation, tmp_path):
    path = ff.save_rotated(tmp_path / "phone.jpg", ff.astronaut(), orientation)
    stored, upright = decode_image(path), decode_image(path, upright=True)
    assert upright.shape == ff.astronaut().shape and (orientation == 3 or stored.shape[:2] == (512, 512))
    assert np.abs(upright.astype(int) - ff.astronaut()).mean() < 3  # JPEG, otherwise the original pixels
    haar = load_detector("haar")
    reference = largest(haar.detect(ff.astronaut()))
    found = largest(haar.detect(upright))
    assert found is not None and _iou(found.box, reference.box) > 0.8
    x, y, w, h = found.box  # the astronaut's face: around (223, 113) in the 512 x 512 photo
    assert abs(x + w / 2 - 223) < 25 and abs(y + h / 2 - 113) < 25
    assert not any(_iou(face.box, reference.box) > 0.5 for face in haar.detect(stored))  # pixels as stored: no


def test_no_face_is_an_outcome_never_a_centre_crop():
    haar, policy = load_detector("haar"), CropPolicy()
    for image in (data.chelsea(), data.coffee(), np.full((200, 300, 3), 90, np.uint8)):
        found = find_face(image, haar, policy)
        assert (found.face, found.count, found.crop) == (None, 0, None)


def test_the_largest_face_is_used_and_the_count_reported():
    canvas = np.full((512, 1024, 3), 255, np.uint8)
    canvas[:, :512] = ff.astronaut()
    canvas[128:384, 640:896] = ff.small(ff.astronaut())  # the same person at half size
    found = find_face(canvas, load_detector("haar"), CropPolicy())
    assert found.count == 2 and found.face.box[0] < 512 and found.crop.shape == (112, 112, 3)


def test_crop_face_by_hand():
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    face = Face((10.0, 20.0, 30.0, 30.0), 1.0)
    exact = CropPolicy(scale=1.0, size=30, interpolation="nearest")
    np.testing.assert_array_equal(crop_face(image, face, exact), image[20:50, 10:40])
    wide = Face((10.0, 20.0, 30.0, 20.0), 1.0)  # square: side max(w, h) = 30 around the centre (25, 30)
    np.testing.assert_array_equal(crop_face(image, wide, exact), image[15:45, 10:40])
    stretched = crop_face(image, wide, CropPolicy(scale=1.0, square=False, size=30, interpolation="nearest"))
    expected = np.asarray(Image.fromarray(image[20:40, 10:40]).resize((30, 30), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(stretched, expected)
    padded = crop_face(image, Face((0.0, 0.0, 10.0, 10.0), 1.0), CropPolicy(scale=2.0, size=20,
                                                                            interpolation="nearest"))
    assert padded[:5, :5].max() == 0 and np.array_equal(padded[5:15, 5:15], image[0:10, 0:10])


def test_eye_alignment_levels_the_eyes_when_landmarks_exist():
    assert eye_angle((10, 10), (20, 20)) == pytest.approx(np.pi / 4)
    assert eye_angle((20, 20), (10, 10)) == pytest.approx(np.pi / 4)  # either order: never upside down
    image = np.zeros((100, 100, 3), np.uint8)
    image[48:53, 20:81] = 255  # a bar at 0 degrees ...
    turned = np.asarray(Image.fromarray(image).rotate(-30, resample=Image.Resampling.BICUBIC))  # ... at 30 degrees
    eyes = ((50 - 20 * np.cos(np.pi / 6), 50 - 20 * np.sin(np.pi / 6)), (50 + 20 * np.cos(np.pi / 6),
                                                                          50 + 20 * np.sin(np.pi / 6)))
    face = Face((20.0, 20.0, 60.0, 60.0), 1.0, eyes)
    aligned = crop_face(turned, face, CropPolicy(scale=1.0, size=60, align_eyes=True))
    unaligned = crop_face(turned, face, CropPolicy(scale=1.0, size=60))
    rows = aligned[:, 10:50, 0].astype(float).mean(axis=1)
    assert rows.argmax() in range(28, 33) and rows.max() > 200  # level again, through the centre
    assert unaligned[:, 10:50, 0].astype(float).mean(axis=1).max() < 150  # still slanted without alignment


def test_policy_json_round_trip_and_old_string_policies():
    policy = CropPolicy(detector="yunet", scale=2.7, square=False, size=80, interpolation="bilinear",
                        align_eyes=True)
    assert policy_from_json(policy.to_json()) == policy
    assert policy_from_json(json.dumps(policy.to_json())) == policy
    assert policy_from_json("box-anchored square: centre = face box centre ...") is None
    assert policy_from_json({"scale": 2}) is None
    with pytest.raises(FasdError, match="--crop-scale"):
        CropPolicy(scale=float("nan"))
    with pytest.raises(FasdError, match="interpolation"):
        CropPolicy(interpolation="cubic")
    assert shared_policy({"a": policy, "b": policy}) == policy


def test_mixed_training_crops_record_no_policy(capsys):
    assert shared_policy({"a": CropPolicy(), "b": None}) is None
    assert "cropped differently" in capsys.readouterr().err


def test_packs_hold_the_policy_as_json_and_old_packs_still_load(tmp_path):
    policy = CropPolicy(scale=2.0, size=16)
    for name, written, expected in (("new", policy, policy), ("old", "eye-anchored square ...", None)):
        path = tmp_path / f"{name}.h5"
        with PackWriter(path, dataset=name, size=16, source="test", crop_policy=written) as pack:
            pack.append(np.zeros((2, 16, 16, 3), np.uint8), ["a", "b"], [0, 1], ["train", "train"], ["a", "b"],
                        ["print", ""])
        assert HDF5FrameSource(path).crop_policy == expected
    with h5py.File(tmp_path / "new.h5") as handle:
        assert json.loads(handle.attrs["crop_policy"])["scale"] == 2.0


def test_detector_registry_and_its_one_line_errors(tmp_path):
    assert {"haar", "yunet", "retinaface"} <= set(DETECTORS.all())
    assert DETECTORS.get("yunet").landmarks and not DETECTORS.get("haar").landmarks
    with pytest.raises(FasdError, match="unknown --detector 'mtcnn'; registered: haar, yunet, retinaface"):
        load_detector("mtcnn")
    with pytest.raises(FasdError, match="--detector yunet needs --detector-weights"):
        load_detector("yunet")
    with pytest.raises(FasdError, match="embedded in OpenCV"):
        load_detector("haar", str(tmp_path / "x.onnx"))
    with pytest.raises(FasdError, match="file not found"):
        load_detector("yunet", str(tmp_path / "missing.onnx"))


@pytest.mark.parametrize("name", sorted(DETECTORS.all()))
def test_every_registered_detector_keeps_the_contract(name, tmp_path):
    """Each detector (a new one gets this for free): built from nothing (embedded) or refuses a file of the wrong
    kind in one line; finds nothing on a blank frame; says in --help what it reads."""
    kind = DETECTORS.get(name)
    for command in ("predict", "ingest"):
        assert f"{name}: " in " ".join(fasd(command, "--help").output.split())
    if kind.weights:
        garbage = tmp_path / "weights.bin"
        garbage.write_bytes(b"\x00garbage" * 10)
        (tmp_path / "deploy.prototxt").write_text("garbage {")
        with pytest.raises(FasdError) as error:
            load_detector(name, str(garbage))
        assert str(garbage) in str(error.value) and "\n" not in str(error.value)
    else:
        assert load_detector(name).detect(np.full((120, 160, 3), 90, np.uint8)) == []


class _Boom:
    """Unpickling this would write a marker file: no detector may unpickle what it is given."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


MARKER = None


def _tiny_onnx(path) -> None:
    """A valid ONNX graph that is not YuNet (one Identity)."""
    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph([node], "not-yunet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 64, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_wrong_detector_weights_are_one_line_and_never_unpickled(tmp_path):
    global MARKER
    MARKER = tmp_path / "unpickled"
    evil = tmp_path / "weights.onnx"
    evil.write_bytes(pickle.dumps(_Boom()))
    caffemodel = tmp_path / "weights.caffemodel"
    caffemodel.write_bytes(pickle.dumps(_Boom()))
    (tmp_path / "deploy.prototxt").write_text("garbage {{{")
    (tmp_path / "alone").mkdir()
    not_yunet = tmp_path / "alone" / "identity.onnx"
    _tiny_onnx(not_yunet)
    cases = [("yunet", str(evil), "is not a YuNet ONNX model"), ("yunet", str(not_yunet), "is not a YuNet"),
             ("retinaface", str(caffemodel), "is not a Caffe RetinaFace"),
             ("retinaface", str(not_yunet), "no deploy.prototxt beside"),
             ("retinaface", f"{caffemodel},{evil}", "one model, one .prototxt")]
    for name, weights, message in cases:
        with pytest.raises(FasdError, match=message) as error:
            load_detector(name, weights)
        assert "\n" not in str(error.value)
    assert not MARKER.exists()


def _tiny_yunet(path, kps: tuple[float, ...]) -> None:
    """A graph with YuNet's outputs (cls/obj/bbox/kps at strides 8, 16, 32) that OpenCV's FaceDetectorYN decodes:
    cls = obj = the cell's mean brightness / 255, bbox offsets 0 (a box of one cell), landmarks ``kps`` cells
    from the cell's corner."""
    inits = [numpy_helper.from_array(np.array([1, -1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
             numpy_helper.from_array(np.array(0, np.float32), "zero"),
             numpy_helper.from_array(np.zeros((1, 1, 4), np.float32), "box"),
             numpy_helper.from_array(np.array(kps, np.float32).reshape(1, 1, 10), "kps")]
    nodes, outputs, width = [], [], {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    for s in (8, 16, 32):
        nodes += [helper.make_node("AveragePool", ["input"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("ReduceMean", [f"p{s}"], [f"m{s}"], axes=[1], keepdims=1),
                  helper.make_node("Reshape", [f"m{s}", "shape"], [f"f{s}"]),
                  helper.make_node("Mul", [f"f{s}", "scale"], [f"cls_{s}"]),
                  helper.make_node("Identity", [f"cls_{s}"], [f"obj_{s}"]),
                  helper.make_node("Mul", [f"f{s}", "zero"], [f"z{s}"]),
                  helper.make_node("Add", [f"z{s}", "box"], [f"bbox_{s}"]),
                  helper.make_node("Add", [f"z{s}", "kps"], [f"kps_{s}"])]
    outputs = [helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, f"n{s}", width[kind]])
               for kind in width for s in (8, 16, 32)]
    graph = helper.make_graph(nodes, "tiny-yunet", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 3, "h", "w"])], outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_yunet_wiring_boxes_scores_and_landmarks(tmp_path):
    """A white 32 px cell at row 1, column 2 of the stride-32 grid: YuNet's decoding (centre = cell corner + offset,
    side = e^0 x stride, landmarks = (cell + kps) x stride) gives a box of (48, 16, 32, 32), score 1, the eyes at
    (64, 32) and (96, 64): a 45 degree eye line, which the policy levels."""
    _tiny_yunet(tmp_path / "tiny.onnx", kps=(0, 0, 1, 1, 0.5, 0.5, 0, 1, 1, 1))
    image = np.zeros((128, 128, 3), np.uint8)
    image[32:64, 64:96] = 255
    found = find_face(image, load_detector("yunet", str(tmp_path / "tiny.onnx")), CropPolicy(align_eyes=True))
    assert found.face.box == (48.0, 16.0, 32.0, 32.0) and found.face.score == pytest.approx(1.0)
    assert found.face.landmarks[:2] == ((64.0, 32.0), (96.0, 64.0)) and found.count > 1
    assert eye_angle(*found.face.landmarks[:2]) == pytest.approx(np.pi / 4)
    assert not np.array_equal(found.crop, find_face(image, load_detector("yunet", str(tmp_path / "tiny.onnx")),
                                                    CropPolicy()).crop)


# An SSD net in Caffe's format that needs no learned weights (an empty .caffemodel): one prior per 32 px cell, zero
# box offsets, face confidence = the cell's mean blue value after Silent-Face's mean subtraction / 151 (white -> 1).
TINY_SSD = """name: "tiny-ssd"
input: "data"
input_shape { dim: 1 dim: 3 dim: 64 dim: 64 }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE kernel_size: 32 stride: 32 } }
layer { name: "blue" type: "Slice" bottom: "pool" top: "blue" top: "rest" slice_param { axis: 1 slice_point: 1 } }
layer { name: "face" type: "Power" bottom: "blue" top: "face" power_param { scale: 0.0066225 } }
layer { name: "bg" type: "Power" bottom: "face" top: "bg" power_param { scale: -1 shift: 1 } }
layer { name: "conf" type: "Concat" bottom: "bg" bottom: "face" top: "conf" }
layer { name: "zero" type: "Power" bottom: "blue" top: "zero" power_param { scale: 0 } }
layer { name: "loc" type: "Concat" bottom: "zero" bottom: "zero" bottom: "zero" bottom: "zero" top: "loc" }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm"
        permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm"
        permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
layer { name: "priors" type: "PriorBox" bottom: "pool" bottom: "data" top: "priors"
        prior_box_param { min_size: 32 clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2
                          step: 32 offset: 0.5 } }
layer { name: "detection_out" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_flat" bottom: "priors"
        top: "detection_out"
        detection_output_param { num_classes: 2 share_location: true background_label_id: 0
          nms_param { nms_threshold: 0.3 top_k: 100 } code_type: CENTER_SIZE keep_top_k: 100
          confidence_threshold: 0.01 } }
"""


def test_retinaface_wiring_boxes_and_scores(tmp_path):
    """OpenCV's Caffe importer runs the net as Silent-Face runs RetinaFace; the white top-right cell of a 64 px
    frame is the one detection: its prior, (32, 0, 32, 32), score 1."""
    (tmp_path / "deploy.prototxt").write_text(TINY_SSD)
    (tmp_path / "tiny.caffemodel").write_bytes(b"")
    image = np.zeros((64, 64, 3), np.uint8)
    image[0:32, 32:64] = 255
    for weights in (tmp_path / "tiny.caffemodel", f"{tmp_path / 'deploy.prototxt'},{tmp_path / 'tiny.caffemodel'}"):
        [face] = load_detector("retinaface", str(weights)).detect(image)
        assert face.box == (32.0, 0.0, 32.0, 32.0) and face.score == pytest.approx(1.0, abs=1e-4)
        assert face.landmarks is None
    assert load_detector("retinaface", str(tmp_path / "tiny.caffemodel")).detect(np.zeros_like(image)) == []


def test_a_caffe_net_without_ssd_output_is_refused(tmp_path):
    """A valid Caffe net (prototxt + an empty weights file, no learned layers) whose detection_out is not N x 7."""
    (tmp_path / "deploy.prototxt").write_text(
        'name: "tiny"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 64 dim: 64 }\n'
        'layer { name: "detection_out" type: "Power" bottom: "data" top: "detection_out" }\n')
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(FasdError, match=r"not SSD detections \(N x 7\)"):
        load_detector("retinaface", str(tmp_path / "empty.caffemodel"))


# --- fasd ingest faces -----------------------------------------------------------------------------------------


def test_ingest_faces_crops_every_face_and_names_what_it_skipped(faces_pack, faces_root):
    out, summary = faces_pack
    source = HDF5FrameSource(out)
    ids = list(source.table.frame_id)
    assert ids[:3] == ["test/live/clip.avi/00000", "test/live/clip.avi/00001", "test/live/clip.avi/00002"]
    assert set(ids[3:]) == {"train/live/astronaut.jpg", "train/spoof/print/upright.png", "val/live/smaller.png"}
    assert len(set(source.table.video_id[:3])) == 1 and len(set(source.table.video_id[3:])) == 3
    assert dict(zip(ids, source.table.attack_type))["train/spoof/print/upright.png"] == "print"
    assert source.crop_policy == CropPolicy()
    text = summary.format()
    assert "6 files seen, 6 frames written" in text
    assert "no face found x1 (e.g. test/spoof/replay/cat.jpg)" in text
    assert "unreadable image x1 (e.g. test/spoof/replay/broken.jpg)" in text
    assert "video frame without a face x2 (e.g. test/live/clip.avi frame 3, test/live/clip.avi frame 4)" in text
    # the rotated phone photo and the upright one give the same crop (only JPEG noise apart)
    rotated, upright = (source.read_image(ids.index(name)).astype(int)
                        for name in ("train/live/astronaut.jpg", "train/spoof/print/upright.png"))
    assert np.abs(rotated - upright).mean() < 3
    expected = find_face(ff.astronaut(), load_detector("haar"), CropPolicy()).crop
    np.testing.assert_array_equal(source.read_image(ids.index("train/spoof/print/upright.png")), expected)


def test_ingest_faces_cli_flags_and_bad_input(faces_root, tmp_path):
    out = tmp_path / "scaled.h5"
    result = fasd("ingest", "faces", "--root", faces_root, "--out", out, "--crop-scale", 2.0, "--size", 64,
                  "--frames-per-video", 1)
    assert result.exit_code == 0, result.output
    source = HDF5FrameSource(out)
    assert source.crop_policy == CropPolicy(scale=2.0, size=64)
    assert sum(video.startswith("test/live/clip") for video in source.table.video_id) == 1
    kept = out.read_bytes()
    refused = fasd("ingest", "faces", "--root", faces_root, "--out", out)
    assert refused.exit_code != 0 and "--overwrite" in refused.output and out.read_bytes() == kept
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for args, message in ((("--detector", "yunet", "--detector-weights", bad), "is not a YuNet ONNX model"),
                          (("--crop-scale", "nan"), "--crop-scale must be a positive number"),
                          (("--detector", "mtcnn"), "unknown --detector 'mtcnn'")):
        result = fasd("ingest", "faces", "--root", faces_root, "--out", tmp_path / "new.h5", *args)
        assert result.exit_code != 0 and message in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "new.h5").exists()
    other = fasd("ingest", "mcio", "--root", faces_root, "--out", tmp_path / "m.h5", "--detector", "haar")
    assert other.exit_code != 0 and "--detector applies to faces only" in other.output
