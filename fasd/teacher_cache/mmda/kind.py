"""The ``mmda`` teacher kind (``fasd cache-teacher --teacher mmda``) and fine-tuning method
(``fasd teacher-finetune --method mmda``).

Caching reads every modality (LoadedTeacher.modalities = MODALITIES): ``module({modality: images}, mask)``
returns the classifier route's ``logits`` (2,) f4, the fused unit ``feature`` (E,) f2 and ``caption_cos``
(2K,) f2; the store's ``text/`` group holds ``captions`` (2K, E) f4 (unit, spoof captions first) and
``caption_labels`` (2K,) — what the student's RS2 term aligns to.

Fine-tuning runs fasd.teacher_cache.mmda.finetune's own loop (multimodal frames, MD2A partners per batch),
so the method registers a ``run`` rather than a model for the shared RGB loop. Defaults are paper B's
(AdamW lr 5e-6, weight decay 1e-3, batch 24) except that, as ``--method clip`` does, a random-weight CLIP
(no ``--init``) trains at fasd's RANDOM_INIT_LR: 5e-6 moves random weights nowhere.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fasd.constants import MODALITIES
from fasd.data.source import FrameSource
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec
from fasd.teacher_cache.checkpoint import file_sha256
from fasd.teacher_cache.clip import describe_arch
from fasd.teacher_cache.finetune import RANDOM_INIT_LR, FinetuneRun, initial_clip, register_finetune
from fasd.teacher_cache.mmda.finetune import (DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_WEIGHT_DECAY,
                                              NORMALIZE, finetune_mmda, load_mmda_teacher)
from fasd.teacher_cache.mmda.model import CAPTION_COS, MMDASettings, MMDATeacher
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, register_teacher

KIND = "mmda"
CAPTIONS = "captions"  # text/captions: (2K, E) unit caption embeddings
CAPTION_LABELS = "caption_labels"  # text/caption_labels: (2K,) class index per caption
CAPTION_COS_DTYPE = "f2"


class CachedMMDA(nn.Module):
    """The frozen teacher's cached targets: ``forward(images {modality: (N, 3, S, S)}, mask (N, 3))`` ->
    {logits, feature, caption_cos}; every sample is its own MD2A partner (inference)."""

    def __init__(self, teacher: MMDATeacher) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, images: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        outputs = self.teacher(images, mask)
        return {name: outputs[name] for name in (layout.LOGITS, layout.FEATURE, CAPTION_COS)}


@register_teacher(KIND, help="an MMDA checkpoint (fasd teacher-finetune --method mmda): RGB, depth and IR",
                  normalize=NORMALIZE)
def load_mmda(options: TeacherOptions, normalize: str) -> LoadedTeacher:
    checkpoint = Path(options.checkpoint)
    teacher = load_mmda_teacher(checkpoint)
    embed_dim, captions = int(teacher.captions.shape[1]), int(teacher.captions.shape[0])
    vision = teacher.config["vision_cfg"]
    return LoadedTeacher(
        CachedMMDA(teacher).eval(), KIND,
        f"mmda-ViT-{vision['layers']}L-{vision['width']}W/{vision['patch_size']}@{teacher.input_size}-D{embed_dim}",
        file_sha256(checkpoint), teacher.input_size, normalize,
        targets={layout.LOGITS: TargetSpec((2,), layout.LOGITS_DTYPE),
                 layout.FEATURE: TargetSpec((embed_dim,), layout.FEATURE_DTYPE),
                 CAPTION_COS: TargetSpec((captions,), CAPTION_COS_DTYPE)},
        details={"settings": asdict(teacher.settings), "captions": teacher.caption_texts, "feature_dim": embed_dim},
        texts={CAPTIONS: _exit_captions(teacher),
               CAPTION_LABELS: teacher.caption_labels.numpy().astype("int64")},
        modalities=MODALITIES)


def _exit_captions(teacher: MMDATeacher) -> np.ndarray:
    """The caption embeddings the cached caption_cos is taken against (through the U-DSA when the teacher was
    trained so), what the student's RS2 term aligns to."""
    with torch.inference_mode():
        return teacher.caption_depths()[0].numpy().astype("float32")


def run_mmda(sources: list[FrameSource], out: Path, run: FinetuneRun) -> dict:
    """``--method mmda``: fine-tune with finetune_mmda; the summary carries the keys the CLI prints."""
    clip, origin = initial_clip(run.options.init, run.options.arch, run.options.seed, run.options.trust_checkpoint)
    settings = run.method_options.get("settings", MMDASettings())
    lr = run.lr if run.lr is not None else (DEFAULT_LR if run.options.init is not None else RANDOM_INIT_LR)
    teacher, summary = finetune_mmda(
        sources, out, clip=clip, captions=run.method_options.get("captions"), settings=settings,
        epochs=DEFAULT_EPOCHS if run.epochs is None else run.epochs,
        batch_size=DEFAULT_BATCH_SIZE if run.batch_size is None else run.batch_size, lr=lr,
        weight_decay=DEFAULT_WEIGHT_DECAY if run.weight_decay is None else run.weight_decay, device=run.device,
        workers=run.workers, seed=run.options.seed, max_frames_per_epoch=run.max_frames_per_epoch, log=run.log)
    last = summary["history"][-1] if summary["history"] else {}
    return {**summary, "method": KIND, "teacher": KIND, "arch": describe_arch(clip), "init": origin,
            "input_size": teacher.input_size, "train_loss": float(last.get("total", np.nan))}


register_finetune(KIND, help="MMDA (paper B): a CLIP ViT on RGB, depth and IR with MD2A fusion, U-DSA and RS2; "
                  "writes a checkpoint for --teacher mmda", run=run_mmda, init_fixes_arch=True)
