"""The distillation trainer: streams frames + cached teacher targets into a registered student and trains the
recipe's weighted loss terms.

A run directory holds config.json, log.jsonl (one line per epoch), last.pt (every completed epoch, for
--resume), best.pt (lowest total validation loss), metrics.json, scores.csv and report.md
(fasd.training.rundir).
Epoch e re-seeds every random stream with (seed, e), so a resumed run continues exactly as the
uninterrupted run would have.

Under torchrun (a torch.distributed process group, fasd.distributed) the student is wrapped in
DistributedDataParallel. ``--batch-size`` stays the global batch: each of the W ranks takes batch/W frames
a step and draws/W domain-balanced draws an epoch from its own random stream (seed, epoch, rank), so the
optimiser steps per epoch (draws // batch) and the schedule are those of a single-process run. Only rank 0
validates, logs, writes checkpoints and evaluates the target.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from fasd import distributed
from fasd.config import DatasetRegistry
from fasd.constants import CLASS_NAMES, SPLITS
from fasd.data.open_source import open_target
from fasd.device import resolve_device, set_cpu_threads
from fasd.errors import FasdError, listed, warn
from fasd.io_checks import write_atomically
from fasd.evaluate.metrics import (DEFAULT_OPERATING_POINT, check_operating_point, eer, operating_threshold,
                                   parse_operating_point)
from fasd.evaluate.scoring import live_score, metrics_for, readable_scores, score_rows, write_scores
from fasd.faces.policy import shared_policy
from fasd.student_train.checkpoint import read_checkpoint, save_checkpoint, validation_record
from fasd.student_train.data import StudentFrames, ViewSampler
from fasd.student_train.losses import CompositeLoss, LossSettings, StepBatch
from fasd.student_train.report import write_report
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.students import StudentConfig, check_student_fits, student_kind
from fasd.student_train.targets import (STREAM_WINDOW, FrameTargets, attach_targets, projection_dim, readable_parts,
                                        terms_without_targets, warn_raw_features)
from fasd.training.frames import DomainRows
from fasd.training.precision import autocast, grad_scaler
from fasd.training.rundir import BEST, CONFIG, LAST, LOG, METRICS, SCORES
from fasd.training.sampler import BlockWindowSampler, RepeatedDraws, domain_balanced_sampler
from fasd.training.schedule import warmup_cosine
from fasd.training.modalities import run_deployed, warn_absent_modalities
from fasd.training.augment import model_ema
from fasd.training.augment import mixer as augment_mixer
from fasd.training.augment import policy as augment_policy
from fasd.training.augment import smoothed_targets as augment_smoothed
from fasd.training.transforms import view_transform


def _domain_rows(registry: DatasetRegistry, names: list[str], split: str) -> list[DomainRows]:
    parts = []
    for name in names:
        source = open_target(registry, name)  # a pooled C+D: several targets' test splits as one
        rows = source.table.rows_in_splits([split])
        if len(rows) == 0:
            present = ", ".join(s for s in SPLITS if len(source.table.rows_in_splits([s]))) or "none"
            raise FasdError(f"dataset '{name}' has no frames in split '{split}' (splits present: {present})")
        parts.append(DomainRows(source, rows))
    return parts


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seed every random stream of epoch ``epoch`` on rank ``rank``; ranks get distinct streams (rank 0's
    is the single-process one). Returns the generator for the epoch's sampler and loader."""
    value = seed * 100003 + epoch
    if rank:
        value = int(np.random.SeedSequence([value, rank]).generate_state(1, np.uint64)[0] >> 1)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    return torch.Generator().manual_seed(value)


def _warn_one_class(parts: list[DomainRows]) -> None:
    """A source whose train split holds one class teaches live vs spoof nothing (only its domain)."""
    for part in parts:
        labels = part.source.table.label[part.rows]
        if (labels == labels[0]).all():
            warn(f"every train frame of '{part.source.name}' is {CLASS_NAMES[int(labels[0])]}: it cannot teach live "
                 f"vs spoof, and its domain may pass for the class")


def _check_same_layers(teacher: dict, options: TrainOptions) -> None:
    """The head-aware term pairs the student's layer k with the teacher's: same count and the same tap."""
    cached, tap = teacher.get("layers", []), teacher.get("layer_tap")
    if len(cached) != len(options.layers) or tap != options.layer_tap:
        raise FasdError(f"the store's layer_cls holds layers {','.join(map(str, cached))} (tap {tap}) but this run "
                        f"asks for --layers {','.join(map(str, options.layers))} --layer-tap {options.layer_tap}: "
                        f"use as many layers and the same tap as the store")


class TrainHeads(torch.nn.Module):
    """The student's training forward, images -> its outputs dict: one module, so that DistributedDataParallel
    sees every parameter a step trains."""

    def __init__(self, student: torch.nn.Module):
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.student.outputs(images)


class Trainer:
    """``options.stream_targets`` reads teacher features from the store chunk by chunk (stores larger than
    memory) instead of loading them; it changes the order of the draws within an epoch, not the draws."""

    def __init__(self, registry: DatasetRegistry, options: TrainOptions, run_dir: Path, progress: bool = True):
        options.validate()
        self.ranks = distributed.current()
        world = self.ranks.world_size
        if options.batch_size % world or options.batch_size // world < 2:
            raise FasdError(f"--batch-size {options.batch_size} must split evenly into at least 2 frames for each "
                            f"of the {world} processes (it is the global batch)")
        self.options, self.run_dir = options, Path(run_dir)
        self.progress = progress and self.ranks.is_main
        self.device = resolve_device(options.device)
        set_cpu_threads(self.device, options.workers)
        if options.store and not options.no_teacher:
            for name in terms_without_targets(options.store, options.loss_weights()):
                options.set_weight(name, 0.0)  # recorded off in config.json too
            if self.ranks.is_main:
                warn_raw_features(options.store, options.loss_weights())
        self.criterion = CompositeLoss(options.loss_weights(), LossSettings(tau=options.tau, margin=options.margin,
                                                                            kl_direction=options.kl_direction))
        self.policy = augment_policy(options.augment)
        self.kind = student_kind(options.student)
        self.train_parts = _domain_rows(registry, options.sources, "train")
        self.crop_policy = shared_policy({part.source.name: part.source.crop_policy for part in self.train_parts})
        self.val_parts = _domain_rows(registry, options.sources, "val")
        self.test_part = _domain_rows(registry, [options.target], "test")[0]
        needs_layers = "layer_cls" in self.criterion.needed_outputs
        self.student_config = StudentConfig(layers=list(options.layers) if needs_layers else [],
                                            layer_tap=options.layer_tap, arch=options.student_arch,
                                            input_size=options.input_size, modality_dropout=options.modality_dropout)
        check_student_fits(self.kind, self.student_config, self.criterion.active())
        self.input_size = options.input_size or self.kind.input_size
        if options.views and not self.criterion.needs_teacher:
            raise FasdError("--views replays the teacher store's views: it needs a teacher (drop --no-teacher)")
        if self.criterion.needs_teacher:
            if not options.store:
                raise FasdError("distillation needs --store (the teacher store), or pass --no-teacher")
            self.train_parts, self.val_parts = readable_parts(options.store, [self.train_parts, self.val_parts])
        check_operating_point(parse_operating_point(options.operating_point),
                              np.concatenate([p.source.table.label[p.rows] for p in self.val_parts]),
                              "the sources' validation split")
        if self.ranks.is_main:
            _warn_one_class(self.train_parts)
            if len(self.kind.modalities) > 1:
                warn_absent_modalities([part.source for part in [*self.train_parts, self.test_part]],
                                       self.kind.modalities)
        self.unreadable: set[str] = set()  # frames that failed to decode during this run, warned about once
        stream = self.kind.stream
        if self.policy.train is not None and len(self.kind.modalities) > 1:
            raise FasdError(f"--augment {options.augment} augments RGB frames; the {options.student} student reads "
                            f"{', '.join(self.kind.modalities)}: use --augment fasd")
        self.train_set = stream.frames(self.train_parts, (self.policy.train or stream.train)(self.input_size),
                                       replay=view_transform(self.input_size) if options.views else None)
        self.val_set = stream.frames(self.val_parts, (self.policy.eval or stream.eval)(self.input_size))
        self.train_targets = self.val_targets = None
        if self.criterion.needs_teacher:
            store, (self.train_targets, self.val_targets) = attach_targets(
                options.store, [self.train_set, self.val_set], self.criterion.needed_targets,
                stream=options.stream_targets)
            options.teacher = store.teacher
            if needs_layers:
                _check_same_layers(store.teacher, options)
            self._attach_texts(store)
            if not options.views and store.views is not None and store.views.mix.active and self.ranks.is_main:
                warn(f"{options.store} holds mixed views (cache-teacher --mix): pass --views to train on them; "
                     f"without it the student trains on the unmixed frames' targets")
            if "projection" in self.criterion.needed_outputs:
                # The projection head maps into the teacher's feature space, whatever its dimension.
                self.student_config.projection_dim = projection_dim(store)
        self.draws = min(len(self.train_set), options.max_draws)
        self.steps_per_epoch = max(1, self.draws // options.batch_size)
        self.mixup = self._online_mixup()

    def _attach_texts(self, store) -> None:
        """The store-level arrays (text/ group) the active terms read, e.g. RS2's caption embeddings."""
        texts = {}
        for name in self.criterion.needed_texts:
            values = store.text(name)
            if values is None:
                raise FasdError(f"the store {self.options.store} has no text/{name}, which the "
                                f"{'/'.join(t.name for t in self.criterion.active() if name in t.texts)} term reads: "
                                f"cache a teacher that writes it (e.g. --teacher mmda) or set that term's weight to 0")
            texts[name] = torch.from_numpy(np.asarray(values)).to(self.device)
        self.criterion.settings = replace(self.criterion.settings, texts=texts)

    def _build(self, log) -> None:
        torch.manual_seed(self.options.seed)
        self.student = self.kind.build(self.student_config)
        weights = Path(self.options.student_weights) if self.options.student_weights else None
        if self.kind.pretrained is not None:
            warning = self.kind.pretrained(self.student, weights)
            if warning:
                log(f"warning: {warning}")
        elif weights is not None:
            raise FasdError(f"--student-weights: the {self.options.student} student trains from scratch and "
                            f"loads no pre-trained weights")
        total = sum(p.numel() for p in self.student.parameters())
        deployed = sum(p.numel() for p in self.student.deployable().parameters())
        log(f"student {self.options.student}: {total / 1e6:.2f} M parameters in training, {deployed / 1e6:.2f} M "
            f"deployed; {len(self.train_set)} train frames from {', '.join(self.options.sources)}, "
            f"{self.draws} draws/epoch, target {self.options.target}")
        self.student.to(self.device)
        self.deployed = self.student.deployable()
        self.heads = self.train_heads = TrainHeads(self.student)
        if self.ranks.world_size > 1:
            cuda = self.device.type == "cuda"
            index = (self.device.index if self.device.index is not None else torch.cuda.current_device()
                     ) if cuda else None
            # Outputs no active term reads (e.g. layer tokens of a CE-only run) get no gradient.
            self.train_heads = DistributedDataParallel(self.heads, device_ids=[index] if cuda else None,
                                                       find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=self.options.lr,
                                           weight_decay=self.options.weight_decay)
        floor = min(self.options.min_lr / self.options.lr, 1.0)  # a peak lr below --min-lr stays flat
        self.scheduler = warmup_cosine(self.optimizer, self.steps_per_epoch, self.options.epochs,
                                       self.options.warmup_epochs, floor=floor)
        # HaTFAS/DeiT keep an EMA of the weights beside the model they validate and evaluate; so does fasd
        # (last.pt holds it).
        self.ema = model_ema(self.student, self.options.model_ema)
        self.scaler = grad_scaler(self.device)

    def _loss(self, batch, soft_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        move = {"device": self.device, "non_blocking": True}
        images, labels, domains, targets = batch
        # Training steps go through DDP (gradient all-reduce); rank 0's validation does not.
        heads = self.train_heads if torch.is_grad_enabled() else self.heads
        with autocast(self.device):
            outputs = heads(images.to(**move))
        return self.criterion(StepBatch({name: value.float() for name, value in outputs.items()},
                                        labels.to(**move), domains.to(**move),
                                        {name: value.to(**move) for name, value in targets.items()},
                                        None if soft_labels is None else soft_labels.to(**move)))

    def _online_mixup(self):
        """timm's Mixup for the student's own batches, or None. Cached targets are the teacher's output on unmixed
        frames, so a distilling run mixes only through a store cached with mixed views (cache-teacher --views K
        --mix ...: replayed, not drawn here)."""
        mixer = augment_mixer(self.options.mixup, self.options.cutmix, self.options.smoothing)
        if mixer is None:
            return None
        if self.options.views:
            if self.train_set.partners is None and self.ranks.is_main:
                warn(f"--mixup {self.options.mixup} --cutmix {self.options.cutmix}: the store's views are not mixed, "
                     f"so this run does not mix; cache them with `--views K --mix mixup={self.options.mixup},"
                     f"cutmix={self.options.cutmix}` (or set --mixup 0 --cutmix 0)")
            return None
        if self.criterion.needs_teacher:
            if self.ranks.is_main:
                warn(f"--mixup {self.options.mixup} --cutmix {self.options.cutmix}: the cached teacher targets are "
                     f"of unmixed frames, so this run does not mix; to mix with consistent targets cache "
                     f"`--views K --mix mixup={self.options.mixup},cutmix={self.options.cutmix}` and train with "
                     f"--views (or set --mixup 0 --cutmix 0)")
            return None
        return mixer

    def _soft_labels(self, raw, batch) -> torch.Tensor | None:
        """The CE term's soft targets of a (readable) training batch: the stored mixed views' labels, or the
        label-smoothed ones (--smoothing); None for plain CE."""
        items, readable = raw[3], raw[4]
        soft = self.train_set.soft_labels(items[readable].numpy(), batch[1].numpy(), self.options.smoothing) \
            if self.train_set.view_count else None
        if soft is not None:
            return torch.from_numpy(soft)
        return augment_smoothed(batch[1], self.options.smoothing) if self.options.smoothing > 0 else None

    def _mix(self, batch, soft: torch.Tensor | None):
        """timm's Mixup on the student's batch (an odd batch drops its last frame: timm mixes pairs)."""
        images, labels, domains, targets = batch
        if len(labels) % 2:
            images, labels, domains = images[:-1], labels[:-1], domains[:-1]
            targets = {name: value[:-1] for name, value in targets.items()}
        images, soft = self.mixup(images, labels)
        return (images, labels, domains, targets), soft

    def _readable(self, batch, frames: StudentFrames, targets: FrameTargets | None, what: str, least: int):
        """(images, labels, domains, items, readable) -> (images, labels, domains, {target: tensor}) of its readable
        items; None when fewer than ``least`` are. A frame that fails to decode is left out of ``what`` with a
        warning the first time. No targets without a teacher, so ``--no-teacher`` needs no store."""
        images, labels, domains, items, readable = batch
        if not readable.all():
            lost = items[~readable]
            names = [frames.frame_name(int(i)) for i in (lost if lost.ndim == 1 else lost[:, 0])]
            new = [name for name in names if name not in self.unreadable]
            if new:
                self.unreadable.update(new)
                warn(f"{len(new)} unreadable frame(s) left out of {what}: {listed(new)}")
            images, labels, domains, items = images[readable], labels[readable], domains[readable], items[readable]
        if len(labels) < least:
            return None
        return images, labels, domains, targets(items) if targets is not None else {}

    def _sampler(self, generator: torch.Generator, draws: int):
        sampler = domain_balanced_sampler(self.train_set.domain_of, draws, generator)
        blocks = self.train_targets.block_of if self.train_targets is not None else None
        if blocks is not None:
            sampler = BlockWindowSampler(sampler, blocks, self.train_set.domain_of, STREAM_WINDOW, generator)
        if self.options.repeated_aug > 1:  # repeated augmentation (deit policy)
            sampler = RepeatedDraws(sampler, self.options.repeated_aug)
        if self.train_set.view_count:  # one stored view per draw (--views)
            sampler = ViewSampler(sampler, self.train_set.view_count, generator.initial_seed())
        return sampler

    def _train_epoch(self, epoch: int) -> dict:
        world = self.ranks.world_size
        generator = seed_epoch(self.options.seed, epoch, self.ranks.rank)
        draws, batch_size = self.draws // world, self.options.batch_size // world
        loader = DataLoader(self.train_set, batch_size=batch_size, sampler=self._sampler(generator, draws),
                            num_workers=self.options.workers, drop_last=draws >= 2 * batch_size,
                            pin_memory=self.device.type == "cuda", generator=generator)
        self.student.train()
        sums: dict[str, float] = {}
        steps = 0
        with tqdm(loader, desc=f"epoch {epoch + 1}/{self.options.epochs}", unit="batch",
                  disable=not self.progress, leave=False) as bar:
            for batch in bar:
                # BatchNorm trains on two frames or more. Under DDP every rank takes every step: a batch one rank
                # skips is skipped by all.
                raw = batch
                batch = self._readable(batch, self.train_set, self.train_targets, "training", least=2)
                if any(distributed.all_gather(batch is None)):
                    continue
                soft = self._soft_labels(raw, batch)
                if self.mixup is not None:
                    batch, soft = self._mix(batch, soft)
                loss, terms = self._loss(batch, soft)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.options.clip_grad > 0:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.options.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.student)
                steps += 1
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()})
        means = distributed.mean_over_ranks({name: value / max(steps, 1) for name, value in sums.items()})
        return means | {"steps": steps}

    @torch.no_grad()
    def _validate(self) -> dict:
        # One fixed shuffle (seed 0), the same every epoch: in file order a batch holds a single domain's frames, so
        # the triplet term, which pairs live frames of two domains, was 0 in every batch; mixed batches define it.
        order = torch.randperm(len(self.val_set), generator=torch.Generator().manual_seed(0)).tolist()
        loader = DataLoader(self.val_set, batch_size=max(self.options.batch_size, 128), sampler=order,
                            num_workers=self.options.workers)
        self.student.eval()
        sums: dict[str, float] = {}
        frames = 0
        for batch in loader:
            batch = self._readable(batch, self.val_set, self.val_targets, "validation", least=1)
            if batch is None:
                continue
            _, terms = self._loss(batch)
            count = len(batch[1])
            frames += count
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value * count
        if not frames:
            raise FasdError(f"none of the {len(self.val_set)} validation frames can be decoded; check their files")
        return {name: value / frames for name, value in sums.items()}

    def _eval_transform(self):
        """The augmentation policy's evaluation transform (None: scoring's plain resize)."""
        return self.policy.eval(self.input_size) if self.policy.eval is not None else None

    def _p_live(self, images: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), autocast(self.device):
            logits, _ = run_deployed(self.deployed, images.to(self.device))
        return live_score(logits.float().cpu().numpy())  # the score evaluate gives the saved checkpoint

    def run(self, resume: bool = False) -> dict | None:
        """Train (or continue), then evaluate the best checkpoint on the target's test split.

        Returns the target's metrics; None on ranks other than 0, which only train.
        """
        main = self.ranks.is_main
        log = tqdm.write if self.progress else (lambda _msg: None)
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._build(log)
        start_epoch, best = 0, {"val_loss": float("inf"), "epoch": -1}
        if resume:
            start_epoch, best = self._restore()
            log(f"resuming at epoch {start_epoch + 1} (best so far: epoch {best['epoch'] + 1})")
        if main:
            self.options.save(self.run_dir / CONFIG)
        try:
            for epoch in range(start_epoch, self.options.epochs):
                began = time.perf_counter()
                train_terms = self._train_epoch(epoch)
                if main:
                    best = self._end_epoch(epoch, train_terms, best, began, log)
        except KeyboardInterrupt:
            log(f"interrupted: completed epochs are saved in {self.run_dir / LAST}; continue with "
                f"`fasd train --resume {self.run_dir}`")
            raise
        metrics = self._finish(best) if main else None
        distributed.barrier()  # the other ranks leave the process group after rank 0's evaluation
        return metrics

    def _end_epoch(self, epoch: int, train_terms: dict, best: dict, began: float, log) -> dict:
        """Validate, keep the best checkpoint and the last one, append to log.jsonl; returns the best so far."""
        val_terms = self._validate()
        record = {"epoch": epoch + 1, "lr": self.scheduler.get_last_lr()[0], "train": train_terms,
                  "val": val_terms, "seconds": round(time.perf_counter() - began, 2)}
        if val_terms["total"] < best["val_loss"]:
            best = {"val_loss": val_terms["total"], "epoch": epoch}
            save_checkpoint(self.run_dir / BEST, self.student, epoch, self.options.__dict__,
                            val_loss=val_terms["total"], crop_policy=self.crop_policy)
        self._save_last(epoch, best)
        with open(self.run_dir / LOG, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        log(f"epoch {epoch + 1}: train {train_terms['total']:.4f}  val {val_terms['total']:.4f}"
            f"{'  *best' if best['epoch'] == epoch else ''}")
        return best

    def _save_last(self, epoch: int, best: dict) -> None:
        save_checkpoint(self.run_dir / LAST, self.student, epoch, self.options.__dict__, crop_policy=self.crop_policy,
                        extra={"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                               "scaler": self.scaler.state_dict(), "best": best,
                               **({"model_ema": self.ema.module.state_dict()} if self.ema is not None else {})})

    def _restore(self) -> tuple[int, dict]:
        payload = read_checkpoint(self.run_dir / LAST)
        self.student.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        if self.ema is not None and "model_ema" in payload:
            self.ema.module.load_state_dict(payload["model_ema"])
        return payload["epoch"] + 1, payload["best"]

    def _operating_threshold(self, labels: np.ndarray, scores: np.ndarray) -> tuple[str, float | None]:
        """(operating point, threshold) on the validation scores: --operating-point's, or, when the scores cannot
        reach it (tied scores, frames left out as unreadable), a warning and the validation EER's, so that a
        finished run is never lost. The EER's threshold is None with one class only."""
        point = parse_operating_point(self.options.operating_point)
        if point.target is None:
            return point.name, eer(labels, scores)[1]
        try:
            return point.name, operating_threshold(point, labels, scores, "the sources' validation split")
        except FasdError as exc:
            fallback = eer(labels, scores)[1]
            if self.ranks.is_main:
                warn(f"{exc}; best.pt decides at " + ("the validation EER instead" if fallback is not None else
                                                      "0.5 (no threshold kept)")
                     + " (fasd export --operating-point chooses another from the validation scores it keeps)")
            return DEFAULT_OPERATING_POINT, fallback

    def _finish(self, best: dict) -> dict:
        payload = read_checkpoint(self.run_dir / BEST)
        self.student.load_state_dict(payload["model"])
        self.student.eval()
        # Operating threshold chosen on the sources' validation data (never on the target).
        val = [readable_scores(p.source, p.rows, score_rows(
            self._p_live, p.source, p.rows, progress=False, size=self.input_size, modalities=self.kind.modalities,
            transform=self._eval_transform()), left_out_of="the validation threshold") for p in self.val_parts]
        val_labels = np.concatenate([p.source.table.label[rows] for p, (rows, _) in zip(self.val_parts, val)])
        val_scores = np.concatenate([scores for _, scores in val])
        point, val_threshold = self._operating_threshold(val_labels, val_scores)
        # The validation scores travel along so that `fasd export --operating-point` can choose another point.
        save_checkpoint(self.run_dir / BEST, self.student, payload["epoch"], self.options.__dict__,
                        val_threshold=val_threshold, val_loss=payload["val_loss"], crop_policy=self.crop_policy,
                        extra=validation_record(point, val_labels, val_scores))
        test = self.test_part
        rows, scores = readable_scores(test.source, test.rows, score_rows(
            self._p_live, test.source, test.rows, progress=self.progress, desc=f"test {self.options.target}",
            size=self.input_size, modalities=self.kind.modalities, transform=self._eval_transform()))
        write_scores(self.run_dir / SCORES, test.source, rows, scores)
        metrics = metrics_for(test.source, rows, scores, val_threshold=val_threshold)
        metrics.update({"recipe": self.options.recipe, "student": self.options.student,
                        "protocol": self.options.protocol, "sources": self.options.sources,
                        "target": self.options.target, "seed": self.options.seed,
                        "no_teacher": self.options.no_teacher, "loss_weights": self.options.loss_settings(),
                        "best_epoch": best["epoch"] + 1, "epochs": self.options.epochs})
        text = json.dumps(metrics, indent=2)
        write_atomically(self.run_dir / METRICS, lambda tmp: tmp.write_text(text))  # marks the run finished
        write_report(self.run_dir, metrics)
        return metrics


def resume_options(run_dir: Path) -> TrainOptions:
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        raise FasdError(f"{run_dir} has no {LAST} to resume from (no epoch completed yet, or not a run directory)")
    return TrainOptions.load(run_dir / CONFIG)


# Options that only say where or how fast a run executes; they may differ between a run and its resumption.
_EXECUTION_OPTIONS = ("device", "workers", "teacher", "config")


def refuse_changed_options(saved: TrainOptions, given: dict) -> None:
    """``--resume DIR`` continues DIR's run exactly: a flag given with another value than the run's is refused."""
    changed = [name for name, value in given.items()
               if value is not None and name not in _EXECUTION_OPTIONS and getattr(saved, name) != value]
    if changed:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in changed)
        raise FasdError(f"--resume continues the run with its own options; {flags} differ from the run's "
                        f"{CONFIG}: drop them, or train into a new --out")


def existing_run(run_dir: Path, options: TrainOptions) -> TrainOptions | None:
    """What to do when a plain `fasd train` targets a run directory that already exists: the saved options when
    it is the same, interrupted run (so it resumes instead of appending a second history); None for a new
    directory. A finished run or another run's directory is refused."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not (run_dir / CONFIG).is_file():
        if any(run_dir.iterdir()):
            raise FasdError(f"{run_dir} exists and is not a fasd run directory; choose another --out")
        return None
    saved = TrainOptions.load(run_dir / CONFIG)
    mine = {k: v for k, v in asdict(options).items() if k not in _EXECUTION_OPTIONS}
    theirs = {k: v for k, v in asdict(saved).items() if k not in _EXECUTION_OPTIONS}
    if mine != theirs:
        raise FasdError(f"{run_dir} holds another run (different options); choose another --out")
    if (run_dir / METRICS).is_file():
        raise FasdError(f"{run_dir} holds this run, already finished (see {run_dir / METRICS}); choose another "
                        f"--out to train again")
    if not (run_dir / LAST).is_file():
        return None  # interrupted before its first epoch ended: start it again
    tqdm.write(f"{run_dir} holds this run, interrupted: resuming it (as `fasd train --resume {run_dir}`)")
    return saved
