"""Fine-tuning the MMDA teacher (``fasd teacher-finetune --method mmda``) and reading its checkpoint back.

Paper B's recipe: AdamW lr 5e-6, weight decay 1e-3, batch 24, L_align and L_cls with equal weights
(MMDATeacher.loss), CLIP preprocessing. Around it, as fasd's FLIP fine-tuning does (fasd.training): domain-
balanced sampling over the sources' train splits (a source is a domain; MD2A's partners are drawn from the
same batch), a linear warm-up epoch then cosine decay, gradient clipping at 1, bf16 autocast on CUDA.
Every trainable part is trained: the visual tower, MD2A, U-DSA and the shared classifier; the text tower is
frozen (its caption embeddings are a buffer). Training frames get one random resized crop (80–100 % area)
and horizontal flip, the same for the three modalities of a frame so they stay registered.

The checkpoint (``torch.save``, weights-only loadable) holds the open_clip architecture config, the
switches, the captions and the state dict; ``load_mmda_teacher`` rebuilds the identical module.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from fasd.constants import MODALITIES, NORMALIZATIONS
from fasd.data.source import FrameSource, UnreadableFrame
from fasd.device import resolve_device
from fasd.errors import FasdError
from fasd.io_checks import write_atomically
from fasd.teacher_cache.arch import TINY_ARCH, random_clip
from fasd.teacher_cache.finetune import train_augmentation
from fasd.teacher_cache.mmda.captions import default_captions
from fasd.teacher_cache.mmda.model import MMDASettings, MMDATeacher, build_mmda_teacher, teacher_from_checkpoint
from fasd.teacher_cache.mmda.udsa import TABLE9_PARAMETERS, per_layer_parameters
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.training.precision import autocast, grad_scaler
from fasd.training.modalities import warn_absent_modalities
from fasd.training.sampler import domain_balanced_sampler
from fasd.training.schedule import warmup_cosine

DEFAULT_LR = 5e-6
DEFAULT_WEIGHT_DECAY = 1e-3
DEFAULT_BATCH_SIZE = 24
DEFAULT_EPOCHS = 80  # paper B trains 80 epochs (fasd demo passes its own few)
NORMALIZE = "clip"  # CLIP preprocessing (paper B); the teacher kind's input contract
CHECKPOINT_FORMAT = "fasd-mmda"


class ModalityFrames(Dataset):
    """Source rows -> (pixels (M, S, S, 3) uint8 in MODALITIES order, mask (M,) bool, label, domain, readable)."""

    def __init__(self, source: FrameSource, rows: np.ndarray, size: int, domain: int, augment: bool):
        self.source, self.rows, self.size, self.domain = source, rows, size, domain
        self.augment = train_augmentation(size) if augment else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, int, bool]:
        row = int(self.rows[index])
        label = int(self.source.table.label[row])
        try:
            frame = self.source.read_modalities(row)
        except UnreadableFrame:
            empty = torch.zeros(len(MODALITIES), self.size, self.size, 3, dtype=torch.uint8)
            return empty, torch.ones(len(MODALITIES), dtype=torch.bool), label, self.domain, False
        if self.augment is None:
            images = [resize_uint8(frame[m], self.size) for m in MODALITIES]
        else:  # one call: the same crop and flip for every modality
            images = [np.asarray(i) for i in self.augment(*(Image.fromarray(frame[m]) for m in MODALITIES))]
        pixels = torch.from_numpy(np.stack(images))
        return pixels, torch.from_numpy(np.asarray(frame["mask"], dtype=bool)), label, self.domain, True


def modality_batch(pixels: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """(B, M, S, S, 3) uint8 -> {modality: (B, 3, S, S) CLIP-normalised} on ``device``."""
    pixels = pixels.to(device, non_blocking=True)
    return {m: normalize_batch(pixels[:, i], *NORMALIZATIONS[NORMALIZE]) for i, m in enumerate(MODALITIES)}


def _check(sources: list[FrameSource], out: Path, epochs: int, batch_size: int, lr: float,
           weight_decay: float, workers: int) -> None:
    checks = [(bool(sources), "--sources needs at least one multimodal dataset"),
              (epochs >= 1, f"--epochs must be >= 1, got {epochs}"),
              (batch_size >= 2, f"--batch-size must be >= 2 (MD2A pairs samples of a batch), got {batch_size}"),
              (lr > 0, f"--lr must be > 0, got {lr}"),
              (weight_decay >= 0, f"--weight-decay must be >= 0, got {weight_decay}"),
              (workers >= 0, f"--workers must be >= 0, got {workers}"),
              (not out.is_dir(), f"--out {out} is a folder; give the checkpoint's file name, e.g. mmda.pt")]
    for ok, message in checks:
        if not ok:
            raise FasdError(message)
    for source in sources:
        if not len(source.table.rows_in_splits(["train"])):
            raise FasdError(f"dataset '{source.name}' has no frames in split 'train'; "
                            "MMDA fine-tuning trains on the sources' train splits")
    warn_absent_modalities(sources, MODALITIES, model="MMDA teacher")  # RGB-only packs: said, not silent


def train_step(teacher: MMDATeacher, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               batch: tuple, device: torch.device) -> dict[str, float] | None:
    """One optimiser step on a loader batch; None when no frame of it was readable."""
    pixels, mask, labels, domains, readable = batch
    if not bool(readable.any()):
        return None
    keep = readable.bool()
    labels = labels[keep].to(device)
    with autocast(device):
        outputs = teacher(modality_batch(pixels[keep], device), mask[keep].to(device), domains[keep].to(device))
        parts = teacher.loss(outputs, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(parts["total"]).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(teacher.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    return {name: float(value.detach()) for name, value in parts.items()}


def save_mmda_checkpoint(teacher: MMDATeacher, out: Path, epoch: int) -> None:
    """Written to a temporary file and renamed, so ``out`` is never half written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, lambda tmp: torch.save({**teacher.checkpoint(), "epoch": int(epoch)}, tmp))


def load_mmda_teacher(path: str | Path) -> MMDATeacher:
    """The MMDA teacher a ``finetune_mmda`` checkpoint describes, in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FasdError(f"MMDA checkpoint {path} does not exist; train one with fasd teacher-finetune --method mmda")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable / non-weights files
        raise FasdError(f"cannot read MMDA checkpoint {path}: {exc.__class__.__name__}; "
                        "pass a file written by fasd teacher-finetune --method mmda") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise FasdError(f"{path} is not an MMDA checkpoint; pass a file written by fasd teacher-finetune --method mmda")
    try:
        return teacher_from_checkpoint(checkpoint)
    except (KeyError, TypeError, ValueError) as exc:  # a field missing or of the wrong kind
        raise FasdError(f"{path} is an incomplete MMDA checkpoint ({type(exc).__name__} on "
                        f"{(str(exc).splitlines() or ['?'])[0][:120]}); pass a file written by fasd teacher-finetune "
                        f"--method mmda") from None


def parameter_line(teacher: MMDATeacher) -> str:
    """The teacher's parameter counts beside paper B's Table 9 (whole model 169.95 M at U-DSA depth 0, 302.46 M
    at depth 7: 18.93 M per layer)."""
    settings = teacher.settings
    total = sum(p.numel() for p in teacher.parameters()) / 1e6
    udsa = sum(p.numel() for p in teacher.udsa.parameters()) / 1e6
    table = TABLE9_PARAMETERS
    paper = (table[7] - table[0]) / 7
    return (f"mmda teacher: {total:.2f} M parameters, U-DSA depth {settings.udsa_depth} exit {settings.udsa_exit}: "
            f"{udsa:.2f} M ({per_layer_parameters(teacher.udsa):.2f} M per layer); paper B Table 9: "
            f"{table[0]:.2f} M at depth 0 -> {table[7]:.2f} M at depth 7 ({paper:.2f} M per layer, CLIP ViT-B/16)")


def finetune_mmda(sources: list[FrameSource], out: str | Path, clip: open_clip.model.CLIP | None = None,
                  captions: dict[str, list[str]] | None = None, settings: MMDASettings = MMDASettings(),
                  epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                  weight_decay: float = DEFAULT_WEIGHT_DECAY, device: str = "auto", workers: int = 0, seed: int = 0,
                  max_frames_per_epoch: int | None = None, log=print) -> tuple[MMDATeacher, dict]:
    """Fine-tune an MMDA teacher around ``clip`` (default: a random fasd-tiny-clip; its visual tower is trained in
    place) on the sources' train splits, one domain per source, and write its checkpoint to ``out``.
    Returns the trained teacher (eval mode, CPU) and the training summary."""
    out = Path(out)
    _check(sources, out, epochs, batch_size, lr, weight_decay, workers)
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    clip = clip if clip is not None else random_clip(TINY_ARCH, seed)
    teacher = build_mmda_teacher(clip.to(torch_device), captions or default_captions(), settings)
    log(parameter_line(teacher))
    sets = [ModalityFrames(s, s.table.rows_in_splits(["train"]), teacher.input_size, d, augment=True)
            for d, s in enumerate(sources)]
    domains = np.concatenate([np.full(len(s), s.domain) for s in sets])
    draws = min(len(domains), max_frames_per_epoch or len(domains))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(ConcatDataset(sets), batch_size=batch_size, num_workers=workers, generator=generator,
                        sampler=domain_balanced_sampler(domains, draws, generator), drop_last=draws > batch_size)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = warmup_cosine(optimizer, len(loader), epochs)
    scaler = grad_scaler(torch_device)
    history, start = [], time.perf_counter()
    teacher.train()
    for epoch in range(1, epochs + 1):
        sums, steps = {}, 0
        for batch in loader:
            parts = train_step(teacher, optimizer, scaler, batch, torch_device)
            scheduler.step()
            if parts is not None:
                sums = {k: sums.get(k, 0.0) + v for k, v in parts.items()}
                steps += 1
        record = {"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()}}
        history.append(record)
        log(f"mmda epoch {epoch}/{epochs}: loss {record.get('total', float('nan')):.4f} "
            f"(cls {record.get('cls', float('nan')):.4f}, align {record.get('align', float('nan')):.4f})")
    teacher.eval()
    save_mmda_checkpoint(teacher.cpu(), out, epochs)
    return teacher, {"out": str(out), "sources": [s.name for s in sources], "settings": asdict(settings),
                     "captions": {k: len(v) for k, v in teacher.caption_texts.items()}, "epochs": epochs,
                     "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "draws_per_epoch": draws,
                     "seed": seed, "device": str(torch_device), "history": history,
                     "seconds": round(time.perf_counter() - start, 2)}
