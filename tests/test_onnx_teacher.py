"""--teacher onnx: any model exported to ONNX with an explicit input contract and output mapping.

The acceptance model is a 3-class PAI head [2D attack, live, 3D attack] reading BGR 0..255 unnormalised 80 px
images; what the store holds is checked against ONNX Runtime run by hand on the pack's pixels.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper
from PIL import Image

from fasd.config import load_registry
from fasd.data.synth import synthesize
from fasd.store_schema.store import open_store, read_strings
from fasd.teacher_cache.onnx_teacher import class_targets

from helpers import assert_one_line, dying_cache_command, fasd
from test_docs import bash_blocks, run_block

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE, CHUNK_ROWS, BATCH = 80, 16, 8
CONTRACT = ["--channel-order", "bgr", "--pixel-range", "255", "--normalize", "none", "--live-class", "1",
            "--input-size", str(SIZE)]
ARRAYS = ("logits", "class_probs", "done")


class PaiNet(nn.Module):
    """A multi-class PAI head [2D attack, live, 3D attack] as a vendor would train it: BGR pixels 0..255, no
    normalisation; a second output is its embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.head = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.relu(self.conv(image / 64.0)).mean(dim=(2, 3))
        return 3 * self.head(embedding), embedding


def export(module: nn.Module, path: Path, example: torch.Tensor) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(module.eval(), example, str(path), input_names=["image"],
                      output_names=["pai_logits", "embedding"], dynamic_axes={"image": {0: "batch"}}, dynamo=False)
    return path


@pytest.fixture(scope="module")
def pai_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter (the new one needs onnxscript)
        return export(PaiNet(), tmp_path_factory.mktemp("onnx") / "pai.onnx", torch.zeros(1, 3, SIZE, SIZE))


def cache(config, store, model, *extra, dataset="alpha"):
    return fasd("cache-teacher", "--teacher", "onnx", "--checkpoint", model, "--dataset", dataset, "--config", config,
                "--store", store, "--chunk-rows", CHUNK_ROWS, "--batch-size", BATCH, "--workers", 0,
                "--device", "cpu", *extra)


@pytest.fixture(scope="module")
def onnx_store(tmp_path_factory, synth_config, pai_onnx) -> str:
    """alpha and beta cached by the PAI model with the acceptance contract."""
    store = str(tmp_path_factory.mktemp("onnx_store") / "pai.zarr")
    for dataset in ("alpha", "beta"):
        result = cache(synth_config, store, pai_onnx, *CONTRACT, dataset=dataset)
        assert result.exit_code == 0, result.output
    return store


def pack_frames(config: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame IDs, RGB uint8 images) read from the HDF5 pack with h5py, not through fasd's source."""
    with h5py.File(load_registry(config).dataset(dataset).path, "r") as pack:
        return pack["frame_id"][:].astype(str), pack["images"][:]


def by_hand(model: Path, images: np.ndarray, bgr: bool = True) -> np.ndarray:
    """The model's softmax computed the documented way: PIL bicubic resize to 80 px, channels flipped to BGR,
    0..255 floats, NCHW, through a fresh ONNX Runtime session."""
    resized = np.stack([np.asarray(Image.fromarray(i).resize((SIZE, SIZE), Image.BICUBIC)) for i in images])
    pixels = (resized[..., ::-1] if bgr else resized).astype(np.float32).transpose(0, 3, 1, 2)
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        ["pai_logits"], {"image": np.ascontiguousarray(pixels)})[0].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def softmax(values: np.ndarray) -> np.ndarray:
    exp = np.exp(values - values.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_cached_p_live_and_class_probs_are_the_models_own_softmax(onnx_store, synth_config, pai_onnx):
    group = open_store(onnx_store).dataset("alpha")
    ids, images = pack_frames(synth_config, "alpha")
    row_of = {frame_id: row for row, frame_id in enumerate(ids)}
    rows = [row_of[str(i)] for i in read_strings(group["frame_id"])]
    probs = by_hand(pai_onnx, images[rows])
    cached_p_live = softmax(group["logits"][:].astype(np.float64))[:, 1]
    np.testing.assert_allclose(cached_p_live, probs[:, 1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(group["class_probs"][:], probs, atol=1e-4, rtol=0)
    assert 0.05 < probs[:, 1].min() and probs[:, 1].max() < 0.95  # P(live) is informative, not saturated
    # The check can fail: the same model read in RGB order differs.
    assert np.abs(by_hand(pai_onnx, images[rows], bgr=False)[:, 1] - cached_p_live).max() > 1e-3


@pytest.mark.parametrize("logits, live, p_live", [
    ([[0.3, -1.2, 2.0]], (1,), None),  # 3 classes, one live
    ([[0.3, -1.2, 2.0]], (0, 2), None),  # two live classes
    ([[1.5, -0.5]], (1,), None),  # two classes
    ([[2.0]], (1,), 1 / (1 + np.exp(-2.0))),  # one logit: sigmoid(z) is P(live)
    ([-2.0], (0,), 1 / (1 + np.exp(-2.0))),  # one logit per image, the spoof class's: P(live) = sigmoid(-z)
    ([[1000.0, -1000.0, 0.0]], (1,), None),  # extreme logits stay finite
])
def test_two_way_logits_softmax_to_p_live(logits, live, p_live):
    targets = class_targets(np.asarray(logits, dtype=np.float32), live)
    values = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    probs = softmax(values if values.shape[1] > 1 else np.concatenate([np.zeros_like(values), values], axis=1))
    expected = probs[:, list(live)].sum(axis=1) if p_live is None else np.array([p_live])
    two_way = targets["logits"].double().numpy()
    assert np.isfinite(two_way).all()
    np.testing.assert_allclose(softmax(two_way)[:, 1], expected, atol=1e-6)
    np.testing.assert_allclose(targets["class_probs"].numpy(), probs, atol=1e-6)


def test_inspect_shows_the_contract_and_the_targets(onnx_store):
    result = fasd("inspect", onnx_store)
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output and "no mean/std (raw pixels)" in result.output
    assert "contract    input image NCHW 80px BGR 0..255; output pai_logits: 3 class logit(s), live class(es) 1" \
        in result.output
    assert "class_probs  3" in result.output and "logits       2" in result.output
    assert "feature" not in result.output.split("[alpha]")[0]  # no feature output cached


@pytest.mark.slow
def test_student_trains_from_the_store_with_feat_switched_off_in_one_line(onnx_store, synth_config, tmp_path):
    run = tmp_path / "run"
    result = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", onnx_store, "--epochs",
                  1, "--max-draws", 16, "--batch-size", 8, "--device", "cpu", "--workers", 0, "--out", run)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if "switching off" in line]
    assert len(warnings) == 1 and "--lambda-feat" in warnings[0] and "feature" in warnings[0], result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["lambda_feat"] == 0.0 and saved["lambda_kl"] == 1.0 and saved["lambda_triplet"] == 0.5
    assert saved["teacher"]["contract"]["channel_order"] == "bgr"
    assert (run / "best.pt").is_file()


def test_views_feature_output_fsspec_store_and_verify_rerun_the_model(synth_config, pai_onnx, onnx_store):
    url = "memory://onnx-views.zarr"
    result = cache(synth_config, url, pai_onnx, *CONTRACT, "--feature-output", "embedding", "--views", 2)
    assert result.exit_code == 0, result.output
    group = open_store(url).dataset("alpha")
    rows = group.attrs["rows"]
    assert group["views/logits"].shape == (rows, 2, 2) and group["views/class_probs"].shape == (rows, 2, 3)
    assert group["feature"].shape == (rows, 8)
    np.testing.assert_allclose(np.linalg.norm(group["feature"][:].astype(np.float32), axis=1), 1, atol=2e-3)
    # the frames' own targets are the plain store's
    np.testing.assert_array_equal(group["class_probs"][:], open_store(onnx_store).dataset("alpha")["class_probs"][:])
    result = fasd("inspect", url, "--verify", 6, "--checkpoint", pai_onnx, "--config", synth_config, "--json")
    assert result.exit_code == 0, result.output
    verify = json.loads(result.output)["verify"]["alpha"]
    assert verify["view_params_match"] and verify["max_logit_diff"] < 1e-4
    assert verify["worst_cosine"] > 0.999 and "views/feature" in verify["worst_cosine_per_target"]
    # another model file is refused by --verify
    other = pai_onnx.parent / "other.onnx"
    torch.manual_seed(1)
    with pytest.warns(DeprecationWarning):
        export(PaiNet(), other, torch.zeros(1, 3, SIZE, SIZE))
    assert_one_line(fasd("inspect", url, "--verify", 2, "--checkpoint", other, "--config", synth_config),
                      "is not the checkpoint this store was cached with")


def test_the_session_runs_on_the_cuda_provider_for_a_gpu_and_on_cpu_without_it(monkeypatch, pai_onnx, capsys):
    import fasd.teacher_cache.onnx_teacher as onnx_teacher

    made = []
    monkeypatch.setattr(onnx_teacher.ort, "InferenceSession", lambda path, options, providers: made.append(providers))
    monkeypatch.setattr(onnx_teacher.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    onnx_teacher._session(pai_onnx, torch.device("cuda:1"))
    monkeypatch.setattr(onnx_teacher.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    onnx_teacher._session(pai_onnx, torch.device("cuda"))
    onnx_teacher._session(pai_onnx, torch.device("cpu"))
    assert made == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"],
                    ["CPUExecutionProvider"], ["CPUExecutionProvider"]]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "no CUDA execution provider (install onnxruntime-gpu)" in warnings[0]


class ChannelsLast(nn.Module):
    """The PAI net reading N x S x S x 3 (as TensorFlow exports)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(image.permute(0, 3, 1, 2))


def test_a_channels_last_fixed_batch_model_caches_the_same_targets(tmp_path, synth_config, pai_onnx, onnx_store):
    torch.manual_seed(0)
    net = PaiNet()
    path = tmp_path / "nhwc.onnx"
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(ChannelsLast(net).eval(), torch.zeros(1, SIZE, SIZE, 3), str(path), input_names=["image"],
                          output_names=["pai_logits", "embedding"], dynamo=False)  # batch fixed at 1
    assert ort.InferenceSession(str(path)).get_inputs()[0].shape == [1, SIZE, SIZE, 3]
    store = tmp_path / "nhwc.zarr"
    result = cache(synth_config, store, path, *CONTRACT)
    assert result.exit_code == 0, result.output
    mine, reference = open_store(str(store)).dataset("alpha"), open_store(onnx_store).dataset("alpha")
    np.testing.assert_allclose(mine["class_probs"][:], reference["class_probs"][:], atol=1e-5)
    assert "NHWC" in fasd("inspect", store).output


@pytest.mark.slow
def test_kill9_resume_shards_and_repair_are_bit_identical(tmp_path, synth_config, pai_onnx, onnx_store):
    reference = open_store(onnx_store).dataset("alpha")
    store = tmp_path / "killed.zarr"

    def command(path: Path) -> list:
        return ["cache-teacher", "--teacher", "onnx", "--checkpoint", pai_onnx, "--dataset", "alpha", "--config",
                synth_config, "--store", path, "--chunk-rows", CHUNK_ROWS, "--batch-size", BATCH, "--workers", 0,
                "--device", "cpu", *CONTRACT]

    args = command(store)
    died = subprocess.run([sys.executable, "-c", dying_cache_command("class_probs"), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert died.returncode == 137, died.stdout + died.stderr
    for shard in ("1/2", "0/2"):  # two shards fill one store: the same arrays
        assert fasd(*command(tmp_path / "shards.zarr"), "--shard", shard).exit_code == 0
    assert open_store(str(store)).dataset("alpha")["done"][:].tolist()[:2] == [True, False]
    assert fasd(*args).exit_code == 0
    group = open_store(str(store)).dataset("alpha")
    for array in ARRAYS:
        for stored in (group, open_store(str(tmp_path / "shards.zarr")).dataset("alpha")):
            np.testing.assert_array_equal(stored[array][:], reference[array][:], err_msg=array)
    # a chunk lost on disk: --check names it, --repair recomputes it to the same bytes
    shutil.rmtree(store / "alpha" / "class_probs" / "c" / "1")
    assert fasd("inspect", store, "--check").exit_code == 1
    result = fasd(*args, "--repair")
    assert result.exit_code == 0 and "cached 16 frames in 1 chunk(s)" in result.output, result.output
    for array in ARRAYS:
        np.testing.assert_array_equal(group[array][:], reference[array][:], err_msg=array)


# ---------------------------------------------------------------- models and flags that do not fit: one line

def graph_model(path: Path, shape: list, inputs: int = 1, elem: int = TensorProto.FLOAT,
                reshape: list[int] | None = None) -> Path:
    """A one-node ONNX graph with ``inputs`` inputs of ``shape``: Identity of the first, or its Reshape to
    ``reshape``."""
    values = [helper.make_tensor_value_info(f"x{i}", elem, shape) for i in range(inputs)]
    node, constants = helper.make_node("Identity", ["x0"], ["y"]), []
    if reshape is not None:
        node = helper.make_node("Reshape", ["x0", "shape"], ["y"])
        constants = [helper.make_tensor("shape", TensorProto.INT64, [len(reshape)], reshape)]
    graph = helper.make_graph([node], "g", values, [helper.make_tensor_value_info("y", elem, None)],
                              initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class Unpickled:
    """Unpickling this touches a file: proof that a model file was (not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


BAD_MODELS = {
    "two inputs": (lambda p: graph_model(p, ["n", 3, SIZE, SIZE], inputs=2), CONTRACT, "has 2 inputs"),
    "rank 3": (lambda p: graph_model(p, ["n", SIZE, SIZE]), CONTRACT, "rank 3, not 4"),
    "one channel": (lambda p: graph_model(p, ["n", 1, SIZE, SIZE]), CONTRACT, "no 3-channel axis"),
    "uint8 input": (lambda p: graph_model(p, ["n", 3, SIZE, SIZE], elem=TensorProto.UINT8), CONTRACT, "not float"),
    "fixed size": (lambda p: graph_model(p, ["n", 3, 64, 64]), CONTRACT, "takes 64 px images"),
    "not square": (lambda p: graph_model(p, ["n", 3, 64, 80]), [], "not square"),
    "dynamic size": (lambda p: graph_model(p, ["n", 3, "h", "w"]), [], "pass --input-size N"),
    "batch 1 only": (lambda p: graph_model(p, ["n", 3, SIZE, SIZE], reshape=[1, 3 * SIZE * SIZE]), CONTRACT,
                     "cannot run it on a 2 x 3 x 80 x 80 input"),
    "image output": (lambda p: graph_model(p, ["n", 3, SIZE, SIZE]), CONTRACT, "needs class logits"),
    "text file": (lambda p: p.write_text("not a model") and p, CONTRACT, "is not an ONNX model"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps(Unpickled(p.parent / "unpickled"))) and p, CONTRACT,
               "is not an ONNX model"),
}


@pytest.mark.parametrize("name", BAD_MODELS)
def test_a_model_that_does_not_fit_is_one_line(name, tmp_path, synth_config):
    make, flags, fragment = BAD_MODELS[name]
    model = make(tmp_path / "model.onnx")
    assert_one_line(cache(synth_config, tmp_path / "store.zarr", model, *flags), fragment)
    assert not (tmp_path / "store.zarr").exists() and not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("flags, fragment", [
    (["--input-size", "80"], "3-class head: pass --live-class K"),
    ([*CONTRACT, "--live-class", "5"], "has classes 0..2"),
    ([*CONTRACT[:-4], "--live-class", "0,1", "--live-class", "2", "--input-size", "80"], "names every class"),
    ([*CONTRACT, "--live-class", "x"], "--live-class takes class indices"),
    ([*CONTRACT, "--feature-output", "nope"], "outputs: pai_logits, embedding"),
    ([*CONTRACT[2:], "--channel-order", "bgra"], "--channel-order must be rgb or bgr"),
    ([*CONTRACT[4:], "--pixel-range", "100"], "--pixel-range must be 1 or 255"),
    ([*CONTRACT, "--input-size", "64"], "takes 80 px images"),
    ([*CONTRACT, "--arch", "deit_tiny_patch16_224"], "--arch does not apply to --teacher onnx"),
    ([*CONTRACT, "--trust-checkpoint"], "--trust-checkpoint does not apply to --teacher onnx"),
])
def test_contract_flags_that_do_not_fit_the_model_are_one_line(flags, fragment, tmp_path, synth_config, pai_onnx):
    assert_one_line(cache(synth_config, tmp_path / "store.zarr", pai_onnx, *flags), fragment)


@pytest.mark.parametrize("flags, fragment", [
    (["--channel-order", "bgr"], "--channel-order does not apply to --teacher flip-mcl"),
    (["--live-class", "1"], "only --teacher onnx reads it"),
    (["--normalize", "none"], "--normalize none: --teacher flip-mcl reads normalised pixels; use imagenet or clip"),
])
def test_contract_flags_are_refused_by_teachers_that_state_their_own(flags, fragment, tmp_path, synth_config,
                                                                     tiny_flip_checkpoint):
    result = fasd("cache-teacher", "--checkpoint", tiny_flip_checkpoint, "--dataset", "alpha", "--config",
                  synth_config, "--store", tmp_path / "store.zarr", *flags)
    assert_one_line(result, fragment)


def test_help_shows_the_contract_flags_and_their_defaults():
    text = " ".join(fasd("cache-teacher", "--help").output.split())
    for fragment in ("--channel-order", "(default: rgb)", "--pixel-range", "(default: 1)", "--live-class",
                     "--feature-output", "--input-size", "imagenet, clip or none", "onnx imagenet"):
        assert fragment in text, fragment


# ---------------------------------------------------------------- docs/teachers.md, verbatim

DOCS = Path(__file__).resolve().parents[1] / "docs" / "teachers.md"


@pytest.mark.slow
def test_the_docs_block_exports_caches_verifies_and_trains_verbatim(tmp_path):
    section = DOCS.read_text().split("## Bring your own teacher", 1)[1]
    block = bash_blocks(section)[0][0]
    assert "torch.onnx.export" in block and "--teacher onnx" in block
    synthesize(tmp_path / "data", domains=3, frames=36, size=64, seed=0, progress=False)
    result = run_block(block, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    group = open_store(str(tmp_path / "pai.zarr")).dataset("beta")
    assert group["class_probs"].shape == (36, 3) and group["feature"].shape == (36, 8)
    assert "contract    input image NCHW 80px BGR 0..255; output class_logits: 3 class logit(s)" in result.stdout
    verified = [line for line in result.stdout.splitlines() if line.startswith("verify [")]
    assert len(verified) == 2 and all("max |Δlogit| " in line for line in verified)
    assert max(float(line.rsplit("max |Δlogit| ", 1)[1].split()[0]) for line in verified) < 1e-4
    assert "switching off" not in result.stderr  # the feature output feeds the feature term
    assert (tmp_path / "runs" / "pai" / "best.pt").is_file()
