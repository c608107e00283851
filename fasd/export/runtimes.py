"""Scorers: a model file run in its own runtime (ONNX Runtime for .onnx/.ort, ExecuTorch for .pte) or a
training checkpoint run by PyTorch. All map float32 N x 3 x S x S ImageNet-normalised images
(``eval_transform`` output) to (logits N x 2, p_live N) with ``forward`` (the runtime's own outputs, for parity
checks) and to the score metrics use with ``p_live`` (the same function of the logits for every runtime,
fasd.evaluate.scoring.live_score), so evaluate, predict and bench take any of them and give the same numbers.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import torch

from fasd.constants import MODALITIES
from fasd.errors import FasdError
from fasd.evaluate.scoring import live_score
from fasd.export.deployable import load_deployable
from fasd.export.metadata import INPUT_NAME, OUTPUT_NAMES, as_batch, decode_metadata, first_line

METADATA_METHOD = "fasd_metadata"  # ExecuTorch constant method holding the metadata as JSON text
EXECUTORCH_MAX_BATCH = 64  # requested bound of the .pte's dynamic batch axis; torch.export may tighten it


class Scorer(Protocol):
    """What evaluation, prediction, benchmarking and parity checks need from a model file."""

    path: Path
    metadata: dict
    runtime: str  # the runtime and its version, e.g. "onnxruntime 1.31.1"

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def p_live(self, images: np.ndarray) -> np.ndarray: ...  # live_score of forward's logits


def require(module: str, extra: str, why: str) -> ModuleType:
    """Import an optional dependency, or one FasdError line naming the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FasdError(f"{why} needs {module.split('.')[0]}: pip install 'fasd[{extra}]'") from None


class _FileScorer:
    """Shared by the runtime scorers: the file check, the not-ours error, p_live from forward."""

    kind = ""  # "ONNX", "ExecuTorch" ...: in error messages

    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FasdError(f"{self.kind} model not found: {self.path}; pass the file written by `fasd export`")
        if threads is not None and threads < 1:
            raise FasdError(f"threads must be >= 1, got {threads}")

    def _not_ours(self, reason: str) -> FasdError:
        return FasdError(f"{self.path} is not a fasd student {self.kind} model: {reason}; "
                         "pass the file written by `fasd export`")

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def p_live(self, images: np.ndarray) -> np.ndarray:
        """The score per image (N float64): P(live) of the rounded logit margin, fasd.evaluate.scoring.live_score."""
        return live_score(self.forward(images)[0])


class OnnxStudent(_FileScorer):
    """An exported student (.onnx, or the ONNX Runtime Mobile .ort format) run by ONNX Runtime on CPU."""

    kind = "ONNX"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """``threads``: ONNX Runtime intra-op threads (None: its default, one per physical core)."""
        import onnxruntime as ort

        super().__init__(path, threads)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors share no base class narrower than Exception
            raise self._not_ours(first_line(exc)) from None
        self._check_io()
        self.metadata = decode_metadata(self._session.get_modelmeta().custom_metadata_map, self._not_ours)
        self.runtime = f"onnxruntime {ort.__version__}"

    def _check_io(self) -> None:
        """One input ``image``, or one per modality named after it (a multimodal student, in MODALITIES order)."""
        inputs = self._session.get_inputs()
        outputs = [node.name for node in self._session.get_outputs()]
        names = [node.name for node in inputs]
        self._inputs = names
        if (names not in ([INPUT_NAME], list(MODALITIES)) or outputs != list(OUTPUT_NAMES)
                or not all(_float_batch(node) for node in inputs)):
            found = ", ".join(f"{node.name} {node.type} {node.shape}" for node in inputs)
            raise self._not_ours(f"expected input {INPUT_NAME} (or inputs {', '.join(MODALITIES)}) float N x "
                                 f"3 x S x S (dynamic N) and outputs "
                                 f"{', '.join(OUTPUT_NAMES)}; found input(s) {found or 'none'} and outputs "
                                 f"{', '.join(outputs) or 'none'}")

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = as_batch(images, len(self._inputs))
        feeds = ({INPUT_NAME: batch} if batch.ndim == 4 else
                 {name: np.ascontiguousarray(batch[:, i]) for i, name in enumerate(self._inputs)})
        logits, p_live = self._session.run(list(OUTPUT_NAMES), feeds)
        return logits, p_live


def _float_batch(node) -> bool:
    """A float N x 3 x S x S input with a dynamic batch axis (S: the student's input side)."""
    shape = node.shape
    return (node.type == "tensor(float)" and len(shape) == 4 and not isinstance(shape[0], int)
            and shape[1] == 3 and shape[2] == shape[3])


class ExecuTorchStudent(_FileScorer):
    """An exported .pte run by ExecuTorch's Python runtime (XNNPACK delegate), in chunks no larger than the
    batch bound its memory plan was made for (read from the program: torch.export may tighten the requested
    EXECUTORCH_MAX_BATCH, e.g. to 15 for MobileNetV3-Small)."""

    kind = "ExecuTorch"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """``threads``: size of ExecuTorch's (process-wide) thread pool; None leaves it as is."""
        runtime = require("executorch.runtime", "executorch", "running a .pte")
        portable = require("executorch.extension.pybindings.portable_lib", "executorch", "running a .pte")
        super().__init__(path, threads)
        if threads is not None:
            portable._unsafe_reset_threadpool(threads)
        try:
            program = runtime.Runtime.get().load_program(self.path)
            if METADATA_METHOD not in program.method_names:
                raise self._not_ours(f"no {METADATA_METHOD} method")
            text = program.load_method(METADATA_METHOD).execute([])[0]
            self._method = program.load_method("forward")
            self.max_batch = int(self._method.metadata.input_tensor_meta(0).sizes()[0])
        except FasdError:
            raise
        except Exception as exc:  # the pybindings raise RuntimeError/ValueError without a common base
            raise self._not_ours(first_line(exc)) from None
        try:
            props = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise self._not_ours(f"unreadable metadata ({exc})") from None
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise self._not_ours("metadata is not a text -> text mapping")
        self.metadata = decode_metadata(props, self._not_ours)
        self.runtime = f"executorch {version('executorch')}"

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = torch.from_numpy(as_batch(images))
        outs = [self._method.execute([chunk.contiguous()]) for chunk in batch.split(self.max_batch)]
        return (torch.cat([o[0] for o in outs]).numpy(), torch.cat([o[1] for o in outs]).numpy())


class TorchStudentScorer:
    """A training checkpoint's deployable module, scored by PyTorch on CPU in eval mode."""

    def __init__(self, checkpoint: Path, threads: int | None = None) -> None:
        """``threads``: torch intra-op threads (process-wide); None leaves them as they are."""
        if threads is not None:
            if threads < 1:
                raise FasdError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.path = Path(checkpoint)
        deployable = load_deployable(self.path)
        self.model = deployable.module
        self.deployable = deployable
        self.metadata = deployable.metadata
        self.runtime = f"torch {torch.__version__}"

    @torch.inference_mode()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, p_live = self.deployable.run(torch.from_numpy(as_batch(images, len(self.deployable.input_names))))
        return logits.numpy(), p_live.numpy()

    def p_live(self, images: np.ndarray) -> np.ndarray:
        """The score per image (N float64): P(live) of the rounded logit margin, fasd.evaluate.scoring.live_score."""
        return live_score(self.forward(images)[0])


def load_scorer(path: Path, threads: int | None = None) -> Scorer:
    """By suffix, the runtime of the export format that writes it (fasd.export.formats), else a training
    checkpoint (a torch zip), else ONNX."""
    from fasd.export.formats import formats  # the format modules import the scorers above

    path = Path(path)
    kinds = [kind for kind in formats().values() if kind.runtime is not None]
    kind = next((kind for kind in kinds if kind.suffix == path.suffix.lower()), None)
    if kind is not None and (path.exists() or kind.check is None):  # a missing spec-checked package: not found
        return kind.runtime(path, threads)
    known = (f"a checkpoint from `fasd train` or a {', '.join(k.suffix for k in kinds if k.check is None)} file "
             "from `fasd export`")
    if not path.is_file():
        raise FasdError(f"model not found: {path}; pass {known}")
    if zipfile.is_zipfile(path):
        return TorchStudentScorer(path, threads)
    try:
        return OnnxStudent(path, threads)
    except FasdError:
        raise FasdError(f"{path} is neither a fasd student checkpoint nor a fasd student model file; "
                        f"pass {known}") from None
