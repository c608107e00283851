"""Teacher fine-tuning (``fasd teacher-finetune --method NAME``): one training loop, methods registered by name.

A method builds the model to train (any module mapping normalised images to a dict with ``logits`` [spoof,
live]), says which input contract it trains on and writes the checkpoint the matching ``--teacher`` kind
reads. ``clip`` (default) is FLIP-style below; ``vit`` (fasd.teacher_cache.finetune_vit) fine-tunes a timm
ViT/DeiT as HaTFAS does per dataset.

``clip``, as FLIP-V does: the image feature (L2-normalised) is scored against the prompt-ensemble class centroids,
``logits = exp(logit_scale) · unit(f) · centroidsᵀ`` in class order [spoof, live], and trained with
cross-entropy on the binary label. Differences from FLIP, on purpose:

* the text tower is frozen, so the centroids are computed once and ``fasd cache-teacher`` recomputes
  exactly the same ones from the saved checkpoint;
* ``logit_scale`` stays fixed at the initial checkpoint's value, so the saved teacher's logit scale is
  the one it was trained with (FLIP trains it too, which only changes the scores' temperature);
* AdamW (FLIP uses Adam with L2), a linear warm-up epoch then cosine decay, gradient clipping at 1.

Frames follow the teacher stream (resize to the model's input size with PIL bicubic, the input contract of the
teacher kind that reads the checkpoint: ImageNet mean/std for both methods).
Training frames only are lightly augmented: a random resized crop keeping 80-100 % of the area
(aspect 0.9-1.1, PIL bicubic, like the plain resize) and a horizontal flip. No colour jitter: colour
casts and lost dynamic range are presentation-attack cues. Sampling is domain-balanced over the source
datasets' train splits; the sources' val splits (when present) are scored after every epoch. The final
weights are saved (no checkpoint selection on validation data).

``clip`` writes FLIP's checkpoint format, ``{'epoch': int, 'state_dict': {'model.<OpenAI CLIP key>': ...}}``
in fp32, written atomically, with the training summary in ``<out>.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from fasd.config import load_registry
from fasd.constants import CLASS_NAMES, NORMALIZATIONS, SPLITS
from fasd.data.open_source import open_source
from fasd.data.source import FrameSource, UnreadableFrame
from fasd.device import resolve_device
from fasd.errors import FasdError
from fasd.evaluate.metrics import eer
from fasd.io_checks import ensure_writable, refuse_replacing, write_atomically
from fasd.registry import Registry
from fasd.training.sampler import domain_balanced_sampler
from fasd.training.schedule import warmup_cosine
from fasd.teacher_cache.arch import TINY_ARCH, openai_state_dict, random_clip
from fasd.teacher_cache.checkpoint import FLIP_PREFIX, clip_state_dict, read_checkpoint
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.prompts import CENTROID_MODES, centroids_from_embeddings, default_prompts
from fasd.teacher_cache.clip import Teacher, build_clip, describe_arch, encode_prompts
from fasd.teacher_cache.registry import teacher_kinds
from fasd.training.precision import autocast as precision_autocast

DEFAULT_EPOCHS = 6
DEFAULT_BATCH_SIZE = 64
# From random weights the tiny ViT needs a large step; a pretrained CLIP keeps FLIP's own 1e-6.
RANDOM_INIT_LR = 5e-4
PRETRAINED_LR = 1e-6
DEFAULT_WEIGHT_DECAY = 0.05
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)


def train_augmentation(size: int) -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, interpolation=v2.InterpolationMode.BICUBIC),
        v2.RandomHorizontalFlip(),
    ])


class LabelledFrames(Dataset):
    """Source rows -> (uint8 pixels at the teacher's size, label, readable). Unreadable frames are zeros."""

    def __init__(self, source: FrameSource, rows: np.ndarray, size: int, augment: bool):
        self.source, self.rows, self.size = source, rows, size
        self.augment = train_augmentation(size) if augment else None

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return self.source.table.label[self.rows].astype(np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        row = int(self.rows[index])
        label = int(self.source.table.label[row])
        try:
            image = self.source.read_image(row)
        except UnreadableFrame:
            return torch.zeros(self.size, self.size, 3, dtype=torch.uint8), label, False
        if self.augment is None:
            pixels = resize_uint8(image, self.size)
        else:
            pixels = np.asarray(self.augment(Image.fromarray(image)))
        return torch.from_numpy(np.array(pixels)), label, True


def initial_clip(init: Path | None, arch: str | None, seed: int,
                 trust_checkpoint: bool = False) -> tuple[open_clip.model.CLIP, str]:
    """The CLIP to fine-tune and a description of where it came from.

    ``init``: an OpenAI-format state dict or a FLIP checkpoint; otherwise ``arch`` (default the tiny
    config) with random weights. Both go through the same OpenAI-format builder ``load_teacher`` uses.
    """
    if init is not None:
        state = clip_state_dict(read_checkpoint(init, trust_checkpoint), init)
        origin = f"checkpoint {init}"
    else:
        arch = arch or TINY_ARCH
        state = openai_state_dict(random_clip(arch, seed))
        origin = f"random {arch} (seed {seed})"
    return build_clip(state), origin


def train_step(classifier: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, readable: torch.Tensor | None = None, autocast=None) -> tuple[float, int, int]:
    """One optimiser step on normalised images; returns (loss, correct, counted frames)."""
    keep = readable if readable is not None else torch.ones_like(labels, dtype=torch.bool)
    if not bool(keep.any()):
        return 0.0, 0, 0
    with autocast or nullcontext():
        logits = classifier(images[keep])["logits"]
    loss = F.cross_entropy(logits.float(), labels[keep])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([q for q in classifier.parameters() if q.requires_grad], 1.0)
    optimizer.step()
    correct = int((logits.argmax(dim=1) == labels[keep]).sum())
    return float(loss.detach()), correct, int(keep.sum())


@torch.no_grad()
def evaluate(classifier: nn.Module, frames: Dataset, labels: np.ndarray, device: torch.device,
             batch_size: int, workers: int, stats: tuple, autocast=None) -> dict:
    """Accuracy at argmax (P(live) >= 0.5) and EER of P(live) over the readable frames."""
    classifier.eval()
    p_live, ok = [], []
    loader = DataLoader(frames, batch_size=batch_size, num_workers=workers)
    for pixels, _, readable in loader:
        with autocast or nullcontext():
            logits = classifier(normalize_batch(pixels.to(device), *stats))["logits"]
        p_live.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
        ok.append(readable.numpy())
    scores, ok = np.concatenate(p_live)[np.concatenate(ok)], np.concatenate(ok)
    labels = labels[ok]
    if labels.size == 0:
        return {"frames": 0, "accuracy": None, "eer": None}
    rate, _ = eer(labels, scores)
    return {"frames": int(labels.size), "accuracy": float(((scores >= 0.5) == labels).mean()), "eer": rate}


def save_flip_checkpoint(clip: open_clip.model.CLIP, epoch: int, out: Path) -> None:
    """FLIP's format, written to a temporary file and renamed so ``out`` is never half written."""
    state = {FLIP_PREFIX + k: v.cpu() for k, v in openai_state_dict(clip).items()}
    write_atomically(out, lambda tmp: torch.save({"epoch": int(epoch), "state_dict": state}, tmp))


def _write_json_atomic(path: Path, obj: dict) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _written_by_finetune(out: Path) -> bool:
    """A checkpoint teacher-finetune wrote: a file beside its summary (``<out>.json``) naming it."""
    try:
        summary = json.loads(summary_path(out).read_text())
    except (OSError, ValueError):
        return False
    return out.is_file() and isinstance(summary, dict) and Path(str(summary.get("out"))).name == out.name


def _check_options(sources: list[str], out: Path, centroid_mode: str, epochs: int, batch_size: int,
                   lr: float | None, weight_decay: float, workers: int, max_frames_per_epoch: int | None) -> None:
    if not sources:
        raise FasdError("--sources needs at least one registered dataset, e.g. --sources alpha,beta")
    repeated = sorted({s for s in sources if sources.count(s) > 1})
    if repeated:
        raise FasdError(f"--sources lists {', '.join(repeated)} more than once")
    checks = [(centroid_mode in CENTROID_MODES,
               f"unknown centroid mode '{centroid_mode}'; valid: {', '.join(CENTROID_MODES)}"),
              (epochs >= 1, f"--epochs must be >= 1, got {epochs}"),
              (batch_size >= 1, f"--batch-size must be >= 1, got {batch_size}"),
              (lr is None or lr > 0, f"--lr must be > 0, got {lr}"),
              (weight_decay >= 0, f"--weight-decay must be >= 0, got {weight_decay}"),
              (workers >= 0, f"--workers must be >= 0, got {workers}"),
              (max_frames_per_epoch is None or max_frames_per_epoch >= 1,
               f"--max-frames-per-epoch must be >= 1, got {max_frames_per_epoch}"),
              (not out.is_dir(), f"--out {out} is a folder; give the checkpoint's file name, e.g. teacher.pt")]
    for ok, message in checks:
        if not ok:
            raise FasdError(message)


def _split_rows(source: FrameSource, split: str) -> np.ndarray:
    return source.table.rows_in_splits([split])


def _train_sets(sources: list[FrameSource], size: int) -> list[LabelledFrames]:
    sets = []
    for source in sources:
        rows = _split_rows(source, "train")
        if len(rows) == 0:
            present = ", ".join(s for s in SPLITS if len(_split_rows(source, s))) or "none"
            raise FasdError(f"dataset '{source.name}' has no frames in split 'train' (splits present: {present}); "
                            f"teacher fine-tuning trains on the sources' train splits")
        sets.append(LabelledFrames(source, rows, size, augment=True))
    return sets


def _train_epoch(classifier: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, stats: tuple, autocast,
                 desc: str, progress: bool) -> dict:
    classifier.train()
    loss_sum, correct, counted, skipped = 0.0, 0, 0, 0
    with tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False) as bar:
        for pixels, labels, readable in bar:
            images = normalize_batch(pixels.to(device, non_blocking=True), *stats)
            loss, right, n = train_step(classifier, optimizer, images, labels.to(device), readable.to(device),
                                        autocast)
            scheduler.step()
            loss_sum, correct, counted, skipped = loss_sum + loss * n, correct + right, counted + n, \
                skipped + len(labels) - n
            bar.set_postfix(loss=f"{loss_sum / max(counted, 1):.3f}", acc=f"{correct / max(counted, 1):.3f}")
    return {"train_loss": loss_sum / max(counted, 1), "train_accuracy": correct / max(counted, 1),
            "unreadable": skipped}


@dataclass
class FinetuneOptions:
    """What a fine-tuning method may read to build its model."""

    init: Path | None = None  # a checkpoint to start from (None: random weights)
    arch: str | None = None  # the architecture for random weights (the method's default when None)
    seed: int = 0
    trust_checkpoint: bool = False
    input_size: int | None = None  # random weights at another input side (vit; None: the arch's own)
    prompts: dict | None = None  # clip: the prompt ensemble (FLIP's when None)
    centroid_mode: str = "flip"  # clip


@dataclass
class FinetuneModel:
    """A method's model ready to train, and how to save it for its ``--teacher`` kind."""

    module: nn.Module  # forward(normalised images) -> {"logits": (N, 2) [spoof, live], ...}; trainable params
    teacher_kind: str  # the cache-teacher kind that reads the checkpoint (its input contract is trained on)
    arch: str  # described for logs and the summary
    origin: str
    default_lr: Callable[[int], float]  # batch size -> learning rate when --lr is not given
    save: Callable[[int, Path], None]  # (epochs trained, out) -> writes the checkpoint atomically
    details: dict = field(default_factory=dict)  # method-specific summary entries


@dataclass
class FinetuneRun:
    """What a method with its own training loop (``run``) receives; None: the method's own default."""

    options: FinetuneOptions
    epochs: int | None
    batch_size: int | None
    lr: float | None
    weight_decay: float | None
    device: str
    workers: int
    max_frames_per_epoch: int | None
    log: Callable[[str], None]
    method_options: dict = field(default_factory=dict)  # method-specific switches (mmda: settings, captions)


@dataclass(frozen=True)
class FinetuneMethod:
    name: str
    help: str
    build: Callable[[FinetuneOptions], FinetuneModel] | None  # a model for the shared RGB loop below
    # or its own loop (multimodal methods): run(sources, out, FinetuneRun) -> summary (with method, teacher, arch,
    # sources, epochs, seconds, train_loss, out)
    run: Callable[[list[FrameSource], Path, FinetuneRun], dict] | None = None
    init_fixes_arch: bool = False  # --init is a whole CLIP checkpoint, so --arch (random weights) is its alternative


METHODS: Registry[FinetuneMethod] = Registry("--method", ("fasd.teacher_cache.finetune_vit",
                                                          "fasd.teacher_cache.mmda.kind"))


def register_finetune(name: str, help: str, run: Callable | None = None,
                      init_fixes_arch: bool = False) -> Callable | FinetuneMethod:
    """A decorator registering ``build(options) -> FinetuneModel``; with ``run``, registers that loop directly."""
    if run is not None:
        return METHODS.add(name, FinetuneMethod(name, help, None, run, init_fixes_arch))
    return METHODS.register(name, lambda build: FinetuneMethod(name, help, build, init_fixes_arch=init_fixes_arch))


def _frozen_text_classifier(clip: open_clip.model.CLIP, prompts: dict, centroid_mode: str) -> Teacher:
    """Centroids from the text tower once; then only the image tower keeps gradients."""
    centroids = centroids_from_embeddings(encode_prompts(clip, prompts), centroid_mode)
    for parameter in clip.parameters():
        parameter.requires_grad_(False)
    for parameter in clip.visual.parameters():
        parameter.requires_grad_(True)
    return Teacher(clip, centroids, float(clip.logit_scale.detach().exp()))


@register_finetune("clip", help="FLIP-style: a CLIP image tower against frozen prompt centroids; writes a FLIP "
                   "checkpoint for --teacher flip-mcl", init_fixes_arch=True)
def clip_method(options: FinetuneOptions) -> FinetuneModel:
    clip, origin = initial_clip(options.init, options.arch, options.seed, options.trust_checkpoint)
    prompts = options.prompts or default_prompts()
    classifier = _frozen_text_classifier(clip, prompts, options.centroid_mode)
    return FinetuneModel(
        classifier, "flip-mcl", describe_arch(clip), origin,
        lambda _batch: PRETRAINED_LR if options.init is not None else RANDOM_INIT_LR,
        save=lambda epochs, out: save_flip_checkpoint(clip, epochs, out),
        details={"prompts": prompts, "centroid_mode": options.centroid_mode,
                 "logit_scale": classifier.logit_scale})


def finetune_teacher(config: Path | None, sources: list[str], out: Path, init: Path | None = None,
                     arch: str | None = None, prompts: dict | None = None, centroid_mode: str = "flip",
                     epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                     weight_decay: float | None = None, device: str = "auto", workers: int = 0,
                     seed: int = 0, max_frames_per_epoch: int | None = None, progress: bool = True,
                     trust_checkpoint: bool = False, method: str = "clip", input_size: int | None = None,
                     method_options: dict | None = None, overwrite: bool = False) -> dict:
    """Fine-tune a teacher with ``method`` on ``sources`` and write its checkpoint to ``out``.

    None picks the method's default (clip lr: RANDOM_INIT_LR for random weights, FLIP's PRETRAINED_LR
    for ``init``). Returns (and writes to ``<out>.json``) the training summary.
    """
    out = Path(out)
    chosen = METHODS.get(method)
    if init is not None and arch is not None and chosen.init_fixes_arch:
        raise FasdError("pass either --init FILE (a CLIP checkpoint) or --arch NAME (random weights), not both")
    _check_options(sources, out, centroid_mode, DEFAULT_EPOCHS if epochs is None else epochs,
                   DEFAULT_BATCH_SIZE if batch_size is None else batch_size, lr,
                   DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay, workers, max_frames_per_epoch)
    if init is not None and out.resolve() == Path(init).resolve():
        raise FasdError(f"--out {out} is the --init checkpoint; write the fine-tuned teacher to another file")
    refuse_replacing(out, "--out", overwrite, _written_by_finetune, "a teacher checkpoint")
    ensure_writable(out)  # before any training: a run that cannot save is refused up front
    registry = load_registry(config)
    frame_sources = [open_source(registry.dataset(name)) for name in sources]
    log = tqdm.write if progress else (lambda _msg: None)
    options = FinetuneOptions(Path(init) if init is not None else None, arch, seed, trust_checkpoint, input_size,
                              prompts, centroid_mode)
    if chosen.run is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = chosen.run(frame_sources, out, FinetuneRun(options, epochs, batch_size, lr, weight_decay, device,
                                                             workers, max_frames_per_epoch, log,
                                                             dict(method_options or {})))
        summary["threads"] = torch.get_num_threads()
        _write_json_atomic(summary_path(out), summary)
        return summary
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    weight_decay = DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    model = chosen.build(options)
    lr = lr if lr is not None else model.default_lr(batch_size)
    classifier = model.module.to(torch_device)
    size = classifier.input_size
    stats = NORMALIZATIONS[teacher_kinds()[model.teacher_kind].default_normalize]

    train_sets = _train_sets(frame_sources, size)
    train_set = ConcatDataset(train_sets)
    domains = np.concatenate([np.full(len(s), i) for i, s in enumerate(train_sets)])
    val_sets = [LabelledFrames(s, rows, size, augment=False) for s in frame_sources
                if len(rows := _split_rows(s, "val"))]
    draws = min(len(train_set), max_frames_per_epoch or len(train_set))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, sampler=domain_balanced_sampler(domains, draws, generator),
                        num_workers=workers, drop_last=draws > batch_size, pin_memory=torch_device.type == "cuda",
                        generator=generator)
    optimizer = torch.optim.AdamW([q for q in classifier.parameters() if q.requires_grad], lr=lr,
                                  weight_decay=weight_decay,
                                  fused=True if torch_device.type in ("cpu", "cuda") else None)
    scheduler = warmup_cosine(optimizer, len(loader), epochs)
    autocast = precision_autocast(torch_device)

    log(f"teacher-finetune --method {method}: {model.arch} from {model.origin}; {len(train_set)} train frames from "
        f"{', '.join(sources)}, {draws} draws/epoch, lr {lr:g}, {torch_device}")
    history: list[dict] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        record = {"epoch": epoch + 1, **_train_epoch(classifier, loader, optimizer, scheduler, torch_device, stats,
                                                     autocast, f"finetune {epoch + 1}/{epochs}", progress)}
        if val_sets:
            record["val"] = evaluate(classifier, ConcatDataset(val_sets),
                                     np.concatenate([s.labels() for s in val_sets]), torch_device,
                                     max(batch_size, 128), workers, stats, autocast)
        history.append(record)
        val = record.get("val") or {}
        log(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.3f}"
            + (f"  val acc {val['accuracy']:.3f} EER {val['eer']:.3f}" if val.get("eer") is not None else ""))
    seconds = time.perf_counter() - start

    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(epochs, out)
    unreadable = sum(r["unreadable"] for r in history)
    summary = {
        "out": str(out), "method": method, "teacher": model.teacher_kind, "init": model.origin, "arch": model.arch,
        "sources": list(sources),
        "train_frames": {s.source.name: len(s) for s in train_sets}, "draws_per_epoch": draws,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
        **model.details, "class_order": list(CLASS_NAMES), "input_size": size,
        "augmentation": f"random resized crop scale {CROP_SCALE} ratio {CROP_RATIO} (bicubic) + horizontal flip",
        "train_loss": history[-1]["train_loss"], "train_accuracy": history[-1]["train_accuracy"],
        "val": history[-1].get("val"), "unreadable_train_draws": unreadable, "history": history,
        "device": str(torch_device), "threads": torch.get_num_threads(), "seconds": round(seconds, 2),
    }
    _write_json_atomic(summary_path(out), summary)
    if unreadable:
        log(f"warning: {unreadable} unreadable training frame draw(s) were skipped")
    log(f"wrote {out} ({seconds:.1f} s); summary in {summary_path(out)}")
    return summary
