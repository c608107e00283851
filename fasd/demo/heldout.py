"""Held-out settings with modalities missing (Protocol 2) for ``fasd demo``: the teacher and every student run
scored on the target's test split with some modalities absent.

A student gets what ``fasd evaluate --missing`` gives it: the missing modalities as the all-zero image, metrics at
its own validation threshold. The teacher gets what its cache job would give it for frames whose sensor lacks
those modalities: the cache job's own frames and forward (fasd.teacher_cache.job), with the missing modalities'
pixels zeroed AND masked out — the mask is how a multimodal teacher learns that a modality is absent (an ingested
frame without depth arrives exactly so), whereas the student has no mask and sees only the zero image. The
store holds the teacher's targets with every modality present, so these scores are computed here, not read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fasd.constants import MODALITIES
from fasd.data.source import FrameSource
from fasd.device import resolve_device
from fasd.errors import FasdError
from fasd.evaluate.metrics import compute_metrics
from fasd.evaluate.scoring import write_scores
from fasd.evaluate.store_metrics import p_live
from fasd.experiment.figures import SCORES_FILE
from fasd.export.evaluation import evaluate_scorer
from fasd.export.runtimes import load_scorer
from fasd.teacher_cache.job import ModalityTeacherFrames, forward_modalities, multimodal
from fasd.teacher_cache.registry import LoadedTeacher

BATCH = 64


def setting_title(missing: tuple[str, ...], modalities: tuple[str, ...]) -> str:
    """How a held-out setting is named in reports: "all modalities (rgb, depth, ir)", "depth missing"; "" for
    the one setting of an RGB-only demo."""
    if missing:
        return f"{' and '.join(missing)} missing"
    return f"all modalities ({', '.join(modalities)})" if len(modalities) > 1 else ""


def setting_suffix(missing: tuple[str, ...]) -> str:
    """The file-name suffix of a setting's outputs: "" (every modality present), "-missing-depth"."""
    return f"-missing-{'-'.join(missing)}" if missing else ""


def scores_name(missing: tuple[str, ...]) -> str:
    """A setting's scores file: scores.csv (what the trainer writes), scores-missing-depth.csv, ..."""
    stem, extension = SCORES_FILE.rsplit(".", 1)
    return f"{stem}{setting_suffix(missing)}.{extension}"


def teacher_without(loaded: LoadedTeacher, source: FrameSource, rows: np.ndarray, missing: tuple[str, ...],
                    progress: bool) -> np.ndarray:
    """P(live) of a multimodal teacher on ``rows`` with the ``missing`` modalities zeroed and masked out."""
    if not multimodal(loaded):
        raise FasdError(f"the {loaded.kind} teacher reads RGB only; a setting with {', '.join(missing)} missing "
                        "needs a multimodal teacher")
    absent = torch.tensor([m in missing for m in MODALITIES])
    device = resolve_device("auto")
    module = loaded.module.to(device)
    scores = []
    loader = DataLoader(ModalityTeacherFrames(source, rows, loaded.input_size), batch_size=BATCH)
    for pixels, mask, _params, readable in tqdm(loader, desc=f"teacher {source.name}, {'/'.join(missing)} missing",
                                                unit="batch", disable=not progress, leave=False):
        if not bool(readable.all()):
            raise FasdError(f"cannot score the teacher on {source.name}: an unreadable test frame")
        pixels[:, absent] = 0
        targets = forward_modalities(module, loaded, pixels, mask & ~absent, device, BATCH)
        scores.append(p_live(targets["logits"]))
    return np.concatenate(scores)


def teacher_setting(loaded: LoadedTeacher, source: FrameSource, rows: np.ndarray, missing: tuple[str, ...],
                    scores_path: Path, progress: bool) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """The teacher's metrics and ROC curve (labels, scores) with ``missing`` absent; its scores written to
    ``scores_path`` (frame_id,label,score)."""
    scores = teacher_without(loaded, source, rows, missing, progress)
    write_scores(scores_path, source, rows, scores)
    labels = source.table.label[rows]
    return compute_metrics(labels, scores, source.table.attack_type[rows]), (labels, scores)


def student_setting(run_dir: Path, run: dict, source: FrameSource, rows: np.ndarray, missing: tuple[str, ...],
                    progress: bool) -> dict:
    """A trained student run (its metrics.json ``run``) on ``rows`` with ``missing`` zeroed, as ``fasd evaluate
    --missing`` scores it; scores and metrics are kept in the run folder (a re-run reads them back)."""
    suffix = setting_suffix(missing)
    metrics_path = run_dir / f"metrics{suffix}.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    rows, scores, metrics = evaluate_scorer(load_scorer(run_dir / "best.pt"), source, rows, missing,
                                            desc=f"{run_dir.parent.name} seed {run['seed']}, "
                                                 f"{'/'.join(missing)} missing", progress=progress)
    write_scores(run_dir / scores_name(missing), source, rows, scores)
    metrics = {**metrics, "seed": run["seed"], "no_teacher": run["no_teacher"], "missing": list(missing)}
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics
