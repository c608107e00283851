"""``fasd export``: write the deployable student in one format, verify it, and only then put it at --out.

Verification is parity in the format's own runtime (ONNX Runtime, ExecuTorch) against PyTorch on the same
frames: real frames of a dataset split when one is named, logits compared. An fp32 file more than
PARITY_TOLERANCE away is refused; an int8 file must make fp32's decisions on the frames fp32 decides clearly
(see DECIDED_SPREAD), else it is refused or, with --force, written with a warning (its accuracy is measured by
`fasd evaluate`). A format without a Linux runtime (Core ML) is checked by its spec instead. On any
failure nothing is written at --out and an earlier file there is kept.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fasd.errors import FasdError, warn
from fasd.evaluate.scoring import live_score
from fasd.export.deployable import Deployable, load_deployable
from fasd.export.formats import ExportFormat, ExportOptions, export_format, formats
from fasd.export.frames import dataset_frames, random_frames
from fasd.export.metadata import modalities_of
from fasd.export.runtimes import Scorer, load_scorer
from fasd.io_checks import refuse_replacing

PARITY_TOLERANCE = 1e-3  # max |Δ logit| allowed between an fp32 export in its runtime and PyTorch
PARITY_FRAMES = 64
PARITY_BATCH = 16  # frames per runtime call; the first frame is also run alone (batch 1)
PARITY_SPLIT = "test"  # default split of --parity-data
CALIBRATION_SPLIT = "train"  # default split of --calibrate
DEFAULT_THRESHOLD = 0.5  # decision threshold when the checkpoint carries no EER threshold
QUANTIZATIONS = ("int8",)
# The int8 gate. A parity frame whose fp32 logit margin (live - spoof) lies within DECIDED_SPREAD standard
# deviations (of the parity frames' fp32 margins) of the threshold's margin is undecided: int8's rounding flips it by
# chance, which says nothing about the file (a weak student has many frames there). On the other frames int8 must
# make fp32's decision on INT8_MIN_AGREEMENT of them, and there must be at least INT8_MIN_DECIDED of them to tell;
# else export refuses the file (or writes it with --force and a warning).
DECIDED_SPREAD = 0.25
INT8_MIN_AGREEMENT = 0.99
INT8_MIN_DECIDED = 16


@dataclass(frozen=True)
class Parity:
    runtime: str
    frames: str  # what the frames were, e.g. "64 frames of alpha/test"
    max_logit_diff: float
    max_p_live_diff: float
    agreement: float  # fraction of frames with the same live/spoof decision at the threshold
    median_logit_diff: float = 0.0
    decided: int = 0  # frames whose fp32 logit margin is at least DECIDED_SPREAD std from the threshold's
    decided_agreement: float = float("nan")  # fraction of those with the same decision (the int8 gate)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    bytes: int  # the file, or every file of a package directory
    parameters: int
    note: str  # what the format writer did (opset, backend, quantisation ...)
    int8: bool
    parity: Parity | None  # None: no runtime on Linux (see ``check``)
    check: str | None  # the spec check of a format without a Linux runtime
    val_threshold: float | None  # as written to the metadata
    operating_point: str | None = None  # where val_threshold was chosen (eer, apcer=A, bpcer=B)

    def describe(self) -> str:
        threshold = ("unknown (fasd predict falls back to 0.5)" if self.val_threshold is None
                     else f"{self.val_threshold:.4f}" + (f" (operating point {self.operating_point})"
                                                         if self.operating_point else ""))
        lines = [f"wrote {self.path} ({self.format}): {self.parameters / 1e6:.2f} M parameters, "
                 f"{self.bytes / 1e6:.2f} MB; {self.note}"]
        if self.parity is not None:
            p = self.parity
            limit = "reported, int8" if self.int8 else f"limit {PARITY_TOLERANCE:.0e}"
            lines.append(f"parity {p.runtime} vs PyTorch fp32 on {p.frames}: max |Δ logit| = {p.max_logit_diff:.1e} "
                         f"({limit}), max |Δ p_live| = {p.max_p_live_diff:.1e}, same decision on "
                         f"{100 * p.agreement:.1f} % of frames")
            if self.int8:
                lines.append(f"int8 gate: same decision on {100 * p.decided_agreement:.1f} % of the {p.decided} "
                             f"frames fp32 decides clearly (logit margin >= {DECIDED_SPREAD:g} std from the "
                             f"threshold's; >= {100 * INT8_MIN_AGREEMENT:g} % required; frames nearer the threshold "
                             f"flip by rounding alone); median |Δ logit| = {p.median_logit_diff:.2f}")
        if self.check is not None:
            lines.append(f"{self.check} (no runtime on Linux: not run)")
        lines.append(f"validation threshold in metadata: {threshold}")
        return "\n".join(lines)


def size_of(path: Path) -> int:
    """Bytes of a file, or of all files under a package directory."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def export_model(checkpoint: Path, out: Path | None = None, fmt: str = "onnx", quantize: str | None = None,
                 calibrate: str | None = None, calibration_frames: int = 256, parity_data: str | None = None,
                 config: Path | None = None, opset: int = 17, overwrite: bool = False,
                 operating_point: str | None = None, force: bool = False,
                 ort_platform: str | None = None) -> ExportReport:
    """Export ``checkpoint`` as ``fmt`` to ``out`` (default ``student[-int8].<suffix>``), verified.

    ``calibrate``/``parity_data``: DATASET[:SPLIT] of the registry (``config``); parity frames default to
    --calibrate's dataset (test split), else random inputs. FasdError, nothing at ``out``, on any failure.
    An existing ``out`` is replaced only with ``overwrite``, and only when fasd export wrote it.
    ``operating_point``: choose the metadata's decision threshold there on the checkpoint's validation scores.
    ``force``: write an int8 file that fails the decision-agreement gate (with a warning). ``ort_platform``:
    --format ort's target CPU (fasd.export.formats.onnx.ORT_PLATFORMS; default arm).
    """
    kind = export_format(fmt)
    out = _out_path(kind, out, quantize is not None)
    refuse_replacing(out, "--out", overwrite, _exported_by_fasd, "a model file")  # before any long work
    deployable = load_deployable(checkpoint, operating_point)
    options = _options(kind, quantize, calibrate, calibration_frames, config, opset, deployable.input_size)
    if ort_platform is not None:
        if kind.name != "ort":
            raise FasdError(f"--ort-platform is for --format ort; drop it for --format {kind.name}")
        options = replace(options, ort_platform=ort_platform)
    modalities = modalities_of(deployable.metadata)
    if len(deployable.input_names) > 1 and (not kind.multi_input or options.int8):
        raise FasdError(f"the {'/'.join(modalities)} student exports to fp32 "
                        f"{' or '.join(n for n, k in formats().items() if k.multi_input)} only (one graph with an "
                        "input per modality)")
    frames, frames_source = _parity_frames(parity_data, calibrate, config, modalities, deployable.input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    _remove(tmp)
    try:
        note = kind.write(deployable, tmp, options)
        if kind.check is not None:
            parity, check = None, kind.check(tmp, deployable)
        else:
            parity, check = _parity(load_scorer(tmp), deployable, frames, frames_source), None
            if not options.int8 and not parity.max_logit_diff <= PARITY_TOLERANCE:  # also catches NaN
                raise FasdError(f"the {fmt} export of {checkpoint} disagrees with PyTorch (max |Δ logit| = "
                                f"{parity.max_logit_diff:.1e} > {PARITY_TOLERANCE:.0e}); nothing written")
            if options.int8 and not np.isfinite(parity.max_logit_diff):
                raise FasdError(f"the int8 {fmt} export of {checkpoint} gives non-finite logits; nothing written")
            problem = _int8_problem(parity) if options.int8 else ""
            if problem and not force:
                raise FasdError(f"the int8 {fmt} export of {checkpoint} {problem}; nothing written (--force writes "
                                "it anyway)")
            if problem:
                warn(f"WRITING A SUSPECT int8 FILE (--force): the int8 {fmt} export {problem}; measure it with "
                     "fasd evaluate before shipping it")
        _remove(out)
        tmp.replace(out)
    finally:
        _remove(tmp)
    return ExportReport(path=out, format=fmt, bytes=size_of(out), parameters=deployable.parameters, note=note,
                        int8=options.int8, parity=parity, check=check, val_threshold=deployable.val_threshold,
                        operating_point=deployable.metadata.get("operating_point"))


def _options(kind: ExportFormat, quantize: str | None, calibrate: str | None, calibration_frames: int,
             config: Path | None, opset: int, size: int) -> ExportOptions:
    if quantize is None:
        if calibrate is not None:
            raise FasdError("--calibrate is for --quantize int8; drop it or add --quantize int8")
        return ExportOptions(opset=opset)
    if quantize not in QUANTIZATIONS:
        raise FasdError(f"--quantize {quantize} is not supported; pass one of {', '.join(QUANTIZATIONS)}")
    if kind.int8 is None:
        raise FasdError(f"--format {kind.name} has no int8 export in fasd; drop --quantize")
    if calibrate is None:
        raise FasdError("--quantize int8 needs calibration frames: add --calibrate DATASET[:SPLIT]")
    frames, source = dataset_frames(calibrate, calibration_frames, CALIBRATION_SPLIT, config,
                                    flag="--calibrate", size=size)
    return ExportOptions(opset=opset, calibration=frames, calibration_source=source)


def _out_path(kind: ExportFormat, out: Path | None, int8: bool) -> Path:
    if out is None:
        return Path(f"student{'-int8' if int8 else ''}{kind.suffix}")
    out = Path(out)
    if out.suffix.lower() != kind.suffix:
        hint = out / f"student{kind.suffix}" if out.is_dir() else out.with_suffix(kind.suffix)
        what = "is a directory" if out.is_dir() else f"does not end in {kind.suffix}"
        raise FasdError(f"--out {out} {what}; --format {kind.name} writes a {kind.suffix} (e.g. --out {hint})")
    return out


# Every file of a Core ML package coremltools writes lies under these (relative to the package folder).
_PACKAGE_FILES = ("Manifest.json", "Data/com.apple.CoreML/")


def _exported_by_fasd(path: Path) -> bool:
    """A model file whose metadata is fasd's input contract (what fasd export writes); a Core ML package, which
    no Linux runtime loads, by its spec's metadata and holding no file coremltools does not write."""
    if path.is_dir():
        files = [p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir()]
        if not files or not all(f == _PACKAGE_FILES[0] or f.startswith(_PACKAGE_FILES[1]) for f in files):
            return False
        try:
            import coremltools

            spec = coremltools.utils.load_spec(str(path))
        except Exception:  # noqa: BLE001 - not readable as a package: not one fasd wrote
            return False
        return "fasd_version" in spec.description.metadata.userDefined
    try:
        return "fasd_version" in load_scorer(path).metadata
    except Exception:  # noqa: BLE001 - any file its runtime cannot open is not one fasd wrote
        return False


def _parity_frames(parity_data: str | None, calibrate: str | None, config: Path | None,
                   modalities: tuple[str, ...], size: int) -> tuple[np.ndarray, str]:
    spec = parity_data if parity_data is not None else (calibrate.partition(":")[0] if calibrate else None)
    if spec is None:
        return random_frames(PARITY_FRAMES, modalities, size)
    return dataset_frames(spec, PARITY_FRAMES, PARITY_SPLIT, config, flag="--parity-data", modalities=modalities,
                          size=size)


def _parity(scorer: Scorer, deployable: Deployable, frames: np.ndarray, source: str) -> Parity:
    """The runtime against the deployable's PyTorch forward: frame 0 alone, then PARITY_BATCH at a time.
    Decisions are compared on the scores metrics use (live_score) at the model's threshold."""
    batches = [frames[:1]] + [frames[i:i + PARITY_BATCH] for i in range(0, len(frames), PARITY_BATCH)]
    logit_diff, p_diff, runtime_logits, torch_logits = [], [], [], []
    for batch in batches:
        logits, p_live = scorer.forward(batch)
        with torch.inference_mode():
            expected_logits, expected_p = (t.numpy() for t in deployable.run(torch.from_numpy(batch)))
        logit_diff.append(np.abs(logits - expected_logits).max())
        p_diff.append(np.abs(p_live - expected_p).max())
        runtime_logits.append(logits)
        torch_logits.append(expected_logits)
    logits, expected = np.concatenate(runtime_logits[1:]), np.concatenate(torch_logits[1:])  # frame 0 once
    threshold = deployable.val_threshold if deployable.val_threshold is not None else DEFAULT_THRESHOLD
    same = (live_score(logits) >= threshold) == (live_score(expected) >= threshold)
    margin = expected[:, 1].astype(np.float64) - expected[:, 0]
    with np.errstate(divide="ignore"):  # a threshold of 0 or 1 is an infinite margin: every frame decided
        threshold_margin = np.log(threshold) - np.log1p(-threshold)
    decided = np.abs(margin - threshold_margin) >= DECIDED_SPREAD * margin.std()
    return Parity(runtime=scorer.runtime, frames=source, max_logit_diff=float(np.max(logit_diff)),
                  max_p_live_diff=float(np.max(p_diff)), agreement=float(same.mean()),
                  median_logit_diff=float(np.median(np.abs(logits - expected))), decided=int(decided.sum()),
                  decided_agreement=float(same[decided].mean()) if decided.any() else float("nan"))


def _int8_problem(parity: Parity) -> str:
    """Why an int8 file fails the decision-agreement gate ("" when it passes)."""
    if parity.decided < INT8_MIN_DECIDED:
        return (f"cannot be checked: fp32 decides only {parity.decided} of the parity frames clearly (logit margin "
                f">= {DECIDED_SPREAD:g} std from the threshold's; {INT8_MIN_DECIDED} needed); pass --parity-data "
                "with frames the student separates")
    if not parity.decided_agreement >= INT8_MIN_AGREEMENT:
        return (f"agrees with fp32 on only {100 * parity.decided_agreement:.1f} % of the {parity.decided} parity "
                f"frames fp32 decides clearly (>= {100 * INT8_MIN_AGREEMENT:g} % required)")
    return ""


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
