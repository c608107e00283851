"""The ONNX teacher (``--teacher onnx``): any model exported to ONNX, run by ONNX Runtime, with the input contract
an ONNX file does not state given as flags and its output mapped to fasd's [spoof, live].

Input: the one float input N x 3 x S x S (NCHW) or N x S x S x 3 (NHWC, as TensorFlow exports), S fixed in the
model or ``--input-size``. fasd resizes each frame to S x S (PIL bicubic, like every teacher), puts the channels in
``--channel-order`` and scales them: with ``--normalize none`` the model reads ``value / 255 * pixel_range``; with
``imagenet`` / ``clip`` it reads ``(value / 255 - mean) / std`` whatever ``--pixel-range`` says, because a model
normalising 0-255 pixels uses mean and std times 255 (mmcv's ``mean=[123.675, ...]`` is imagenet).

Output: the first output that is not ``--feature-output`` holds class logits (N, C), before any softmax. The
store keeps their softmax as ``class_probs`` (N, C) and, as ``logits``, [log P(spoof), log P(live)] where
P(live) sums the probabilities of the ``--live-class`` classes: their softmax is exactly the model's P(live).
A model with one logit z (N,) or (N, 1) is read as two classes [0, z] (P(class 1) = sigmoid(z)), so
``--live-class 1`` (the default for one or two classes) means z is the live logit. ``--feature-output NAME``
also caches that output, flattened and scaled to unit length, as ``feature`` (what the feature term reads).

An ONNX file holds no pickled objects, so loading one never runs code of its own beyond the graph's operators.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from fasd.constants import NO_NORMALIZATION
from fasd.errors import FasdError, warn
from fasd.export.metadata import first_line
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec
from fasd.teacher_cache.checkpoint import file_sha256
from fasd.teacher_cache.registry import CONTRACT_FLAGS, LoadedTeacher, TeacherOptions, register_teacher

CLASS_PROBS = "class_probs"
CHANNEL_ORDERS = ("rgb", "bgr")
PIXEL_RANGES = (1, 255)
DEFAULT_CHANNEL_ORDER, DEFAULT_PIXEL_RANGE, DEFAULT_LIVE_CLASS = "rgb", 1, 1
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_CUDA = "CUDAExecutionProvider"


def _session(path: Path, device: torch.device) -> ort.InferenceSession:
    """An ONNX Runtime session on ``device``: the CUDA execution provider for a CUDA device when this
    onnxruntime has it (else CPU, with a warning), torch's CPU thread count on CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    providers: list = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if _CUDA in ort.get_available_providers():
            providers.insert(0, (_CUDA, {"device_id": device.index or 0}))
        else:
            warn(f"onnxruntime {ort.__version__} has no CUDA execution provider (install onnxruntime-gpu); "
                 f"the ONNX teacher runs on CPU")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's errors share no base class narrower than Exception
        raise FasdError(f"{path} is not an ONNX model onnxruntime can load ({first_line(exc)[:200]}); --teacher onnx "
                        f"reads a .onnx file (torch.onnx.export, tf2onnx, paddle2onnx, ...)") from None


def _read_input(session: ort.InferenceSession, path: Path, input_size: int | None) -> tuple[str, str, int, int | None]:
    """(input name, layout NCHW|NHWC, side S, fixed batch size or None) of a model that fits the contract; a model
    that does not is one line saying what it has."""
    inputs = session.get_inputs()
    described = ", ".join(f"{node.name} {node.type} {node.shape}" for node in inputs) or "none"
    if len(inputs) != 1:
        raise FasdError(f"{path} has {len(inputs)} inputs ({described}); --teacher onnx needs one image input")
    node = inputs[0]
    shape = list(node.shape)
    why = None
    if node.type not in _INPUT_TYPES:
        why = f"its input is {node.type}, not float"
    elif len(shape) != 4:
        why = f"its input has rank {len(shape)}, not 4"
    elif shape[1] != 3 and shape[3] != 3:
        why = "its input has no 3-channel axis (N x 3 x S x S or N x S x S x 3)"
    if why:
        raise FasdError(f"{path}: {why} ({described}); --teacher onnx needs one float image input N x 3 x S x S "
                        f"or N x S x S x 3")
    order = "NCHW" if shape[1] == 3 else "NHWC"
    sides = shape[2:] if order == "NCHW" else shape[1:3]
    fixed = sorted({side for side in sides if isinstance(side, int)})
    if len(fixed) > 1:
        raise FasdError(f"{path}: its input is {described}, not square; fasd's face crops are S x S")
    if fixed and input_size is not None and input_size != fixed[0]:
        raise FasdError(f"--input-size {input_size}: {path} takes {fixed[0]} px images ({described}); pass "
                        f"--input-size {fixed[0]} or leave it out")
    size = input_size if input_size is not None else (fixed[0] if fixed else None)
    if size is None:
        raise FasdError(f"{path} takes images of any size ({described}): pass --input-size N, the size it was "
                        f"trained at")
    if size <= 0:
        raise FasdError(f"--input-size must be > 0, got {size}")
    return node.name, order, int(size), shape[0] if isinstance(shape[0], int) else None


class OnnxTeacher(nn.Module):
    """Maps images normalised by fasd's stream (N, 3, S, S) RGB, ``(value / 255 - mean) / std`` of the contract's
    normalisation, to the contract's input and runs the model: {logits (N, 2), class_probs (N, C), and with a
    feature output: feature (N, D) unit length}. One ONNX Runtime session per device the images come on."""

    def __init__(self, path: Path, session: ort.InferenceSession, input_name: str, channels_last: bool,
                 fixed_batch: int | None, scale: float, bgr: bool, logits_output: str, feature_output: str | None,
                 live_classes: tuple[int, ...]):
        super().__init__()
        self.path, self.input_name, self.channels_last, self.fixed_batch = path, input_name, channels_last, fixed_batch
        self.scale, self.bgr, self.logits_output, self.feature_output = scale, bgr, logits_output, feature_output
        self.live_classes = live_classes
        self.dtype = _INPUT_TYPES[session.get_inputs()[0].type]
        self._sessions = {"cpu": session}

    def _run(self, batch: np.ndarray, device: torch.device) -> list[np.ndarray]:
        """The model's (logits, feature) outputs of a contract-ready batch, in slices of a fixed batch size."""
        key = str(device) if device.type == "cuda" else "cpu"
        if key not in self._sessions:
            self._sessions[key] = _session(self.path, device)
        names = [self.logits_output] + ([self.feature_output] if self.feature_output else [])
        step = self.fixed_batch or len(batch)
        parts = []
        for start in range(0, len(batch), step):
            part = batch[start:start + step]
            padded = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
            parts.append([value[:len(part)] for value in _run(self._sessions[key], self.path, names,
                                                              {self.input_name: padded})])
        return [np.concatenate(values) for values in zip(*parts)]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pixels = images.float() * self.scale
        if self.bgr:
            pixels = pixels.flip(1)
        if self.channels_last:
            pixels = pixels.permute(0, 2, 3, 1)
        outputs = self._run(np.ascontiguousarray(pixels.cpu().numpy().astype(self.dtype)), images.device)
        targets = class_targets(outputs[0], self.live_classes)
        if self.feature_output:
            feature = torch.from_numpy(outputs[1].reshape(len(images), -1).astype(np.float32))
            targets[layout.FEATURE] = torch.nn.functional.normalize(feature, dim=1)
        return {name: value.to(images.device) for name, value in targets.items()}


def class_logits(outputs: np.ndarray) -> torch.Tensor:
    """The model's class logits (N, C); one logit z per frame ((N,) or (N, 1)) is two classes [0, z]."""
    values = torch.from_numpy(np.asarray(outputs, dtype=np.float64))
    if values.ndim == 1 or values.shape[1] == 1:
        values = values.reshape(-1, 1)
        values = torch.cat([torch.zeros_like(values), values], dim=1)
    return values


def class_targets(outputs: np.ndarray, live_classes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """{class_probs: softmax (N, C), logits: [log P(spoof), log P(live)] (N, 2)} from the model's logits, in float64
    (log-sum-exp over the live and the other classes: exact for any logit size) and stored as float32."""
    values = class_logits(outputs)
    live = torch.zeros(values.shape[1], dtype=torch.bool)
    live[list(live_classes)] = True
    total = values.logsumexp(dim=1)
    two_way = torch.stack([values[:, ~live].logsumexp(dim=1), values[:, live].logsumexp(dim=1)], dim=1)
    return {layout.LOGITS: (two_way - total[:, None]).float(), CLASS_PROBS: values.softmax(dim=1).float()}


def _live_classes(given: tuple[int, ...], classes: int, path: Path) -> tuple[int, ...]:
    """The live classes of a ``classes``-way head: --live-class, else class 1 of a 1- or 2-logit head."""
    if not given:
        if classes > 2:
            raise FasdError(f"{path} has a {classes}-class head: pass --live-class K (repeatable, or a comma list) "
                            f"naming the classes that mean bona fide")
        return (DEFAULT_LIVE_CLASS,)
    two = max(classes, 2)  # one logit reads as two classes
    bad = [k for k in given if not 0 <= k < two]
    if bad or len(set(given)) != len(given):
        raise FasdError(f"--live-class {','.join(map(str, given))}: {path} has classes 0..{two - 1}; name distinct "
                        f"ones")
    if len(given) == two:
        raise FasdError(f"--live-class {','.join(map(str, given))} names every class of {path}: P(live) would be 1; "
                        f"leave the attack classes out")
    return tuple(sorted(given))


def _run(session: ort.InferenceSession, path: Path, names: list[str], feeds: dict[str, np.ndarray]
         ) -> list[np.ndarray]:
    """``session.run``; a model that fails on the batch (e.g. one exported for batch 1 whose batch axis says
    dynamic) is one line."""
    try:
        return session.run(names, feeds)
    except Exception as exc:  # onnxruntime's errors share no base class narrower than Exception
        shape = " x ".join(map(str, next(iter(feeds.values())).shape))
        raise FasdError(f"{path}: onnxruntime cannot run it on a {shape} input ({first_line(exc)[:200]}); a model "
                        f"exported for one batch size should say so in its input shape") from None


@register_teacher("onnx", help="any model exported to ONNX, run by ONNX Runtime (--input-size, --channel-order, "
                  "--pixel-range, --normalize, --live-class, --feature-output state its contract)",
                  normalize="imagenet", reads=tuple(CONTRACT_FLAGS), raw_pixels=True)
def load_onnx(options: TeacherOptions, normalize: str) -> LoadedTeacher:
    path = Path(options.checkpoint)
    for flag, given in (("--arch", options.arch), ("--layers", options.layers),
                        ("--trust-checkpoint", options.trust_checkpoint)):
        if given:
            raise FasdError(f"{flag} does not apply to --teacher onnx (an ONNX file states its graph and holds no "
                            f"pickled objects)")
    channel_order = options.channel_order or DEFAULT_CHANNEL_ORDER
    if channel_order not in CHANNEL_ORDERS:
        raise FasdError(f"--channel-order must be {' or '.join(CHANNEL_ORDERS)}, got '{channel_order}'")
    pixel_range = DEFAULT_PIXEL_RANGE if options.pixel_range is None else options.pixel_range
    if pixel_range not in PIXEL_RANGES:
        raise FasdError(f"--pixel-range must be {' or '.join(map(str, PIXEL_RANGES))} (what one unit of the model's "
                        f"input means: 1 for 0..1 pixels, 255 for 0..255), got {pixel_range}")
    session = _session(path, torch.device("cpu"))
    input_name, order, size, fixed_batch = _read_input(session, path, options.input_size)
    outputs = [node.name for node in session.get_outputs()]
    if options.feature_output is not None and options.feature_output not in outputs:
        raise FasdError(f"--feature-output {options.feature_output}: {path} has no such output; its outputs: "
                        f"{', '.join(outputs)}")
    logits_output = next((name for name in outputs if name != options.feature_output), None)
    if logits_output is None:
        raise FasdError(f"{path} has no output besides --feature-output {options.feature_output} for its class "
                        f"logits")
    names = [logits_output] + ([options.feature_output] if options.feature_output else [])
    batch = fixed_batch or 2  # two frames: a dynamic batch axis that is not one fails here, not mid-job
    shape = (batch, 3, size, size) if order == "NCHW" else (batch, size, size, 3)
    dtype = _INPUT_TYPES[session.get_inputs()[0].type]
    probed = _run(session, path, names, {input_name: np.zeros(shape, dtype)})
    logits = probed[0]
    if logits.ndim not in (1, 2) or len(logits) != batch or logits.size == 0:
        raise FasdError(f"{path}: output {logits_output} is {logits.shape} for {batch} image(s); --teacher onnx needs "
                        f"class logits N x C (or one logit per image, N or N x 1); name the feature output "
                        f"with --feature-output")
    classes = 1 if logits.ndim == 1 else int(logits.shape[1])
    live_classes = _live_classes(tuple(options.live_classes), classes, path)
    targets = {layout.LOGITS: TargetSpec((2,), layout.LOGITS_DTYPE),
               CLASS_PROBS: TargetSpec((max(classes, 2),), layout.LOGITS_DTYPE)}
    if options.feature_output:
        width = int(probed[1].size // batch)
        targets[layout.FEATURE] = TargetSpec((width,), layout.FEATURE_DTYPE)
    scale = float(pixel_range) if normalize == NO_NORMALIZATION else 1.0
    teacher = OnnxTeacher(path, session, input_name, order == "NHWC", fixed_batch, scale, channel_order == "bgr",
                          logits_output, options.feature_output, live_classes)
    graph = session.get_modelmeta().graph_name or "graph"
    contract = {"input_size": size, "channel_order": channel_order, "pixel_range": pixel_range,
                "live_classes": list(live_classes), "feature_output": options.feature_output,
                "input": input_name, "layout": order, "logits_output": logits_output, "classes": classes}
    return LoadedTeacher(teacher, "onnx", f"onnx:{graph}@{size}", file_sha256(path), size, normalize, targets,
                         details={"contract": contract})
