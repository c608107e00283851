"""The distillation trainer: streams frames + cached teacher targets into the MobileNetV3-Small student.

A run directory holds config.json, log.jsonl (one line per epoch), last.pt (every completed epoch, for
--resume), best.pt (lowest total validation loss), metrics.json, scores.csv and report.md.
Epoch e re-seeds every random stream with (seed, e), so a resumed run continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fasd.config import Registry
from fasd.constants import SPLITS
from fasd.data.open_source import open_source
from fasd.device import resolve_device
from fasd.errors import FasdError
from fasd.evaluate.metrics import eer
from fasd.evaluate.scoring import metrics_for, score_rows, write_scores
from fasd.student_train.checkpoint import read_checkpoint, save_checkpoint
from fasd.student_train.data import DomainRows, StudentFrames
from fasd.student_train.losses import DistillationLoss
from fasd.student_train.model import PROJECTION_DIM, build_student, parameter_counts
from fasd.student_train.report import write_report
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.sampler import domain_balanced_sampler
from fasd.student_train.schedule import warmup_cosine
from fasd.student_train.targets import attach_targets
from fasd.student_train.transforms import eval_transform, train_transform

LAST, BEST = "last.pt", "best.pt"


def _domain_rows(registry: Registry, names: list[str], split: str) -> list[DomainRows]:
    parts = []
    for name in names:
        source = open_source(registry.dataset(name))
        rows = source.table.rows_in_splits([split])
        if len(rows) == 0:
            present = ", ".join(s for s in SPLITS if len(source.table.rows_in_splits([s]))) or "none"
            raise FasdError(f"dataset '{name}' has no frames in split '{split}' (splits present: {present})")
        parts.append(DomainRows(source, rows))
    return parts


def _seed_epoch(seed: int, epoch: int) -> torch.Generator:
    torch.manual_seed(seed * 100003 + epoch)
    np.random.seed((seed * 100003 + epoch) % 2**32)
    return torch.Generator().manual_seed(seed * 100003 + epoch)


def _to_device(batch, device):
    images, labels, domains, feature, logits = batch
    move = {"device": device, "non_blocking": True}
    return images.to(**move), labels.to(**move), domains.to(**move), feature.to(**move), logits.to(**move)


class Trainer:
    def __init__(self, registry: Registry, options: TrainOptions, run_dir: Path, progress: bool = True):
        options.validate()
        self.options, self.run_dir, self.progress = options, Path(run_dir), progress
        self.device = resolve_device(options.device)
        self.criterion = DistillationLoss(*(0.0, 0.0, 0.0) if options.no_teacher else
                                          (options.lambda_kl, options.lambda_feat, options.lambda_triplet),
                                          tau=options.tau, margin=options.margin)
        self.train_parts = _domain_rows(registry, options.sources, "train")
        self.val_parts = _domain_rows(registry, options.sources, "val")
        self.test_part = _domain_rows(registry, [options.target], "test")[0]
        if self.criterion.needs_teacher:
            if not options.store:
                raise FasdError("distillation needs --store (the teacher store), or pass --no-teacher")
            options.teacher = attach_targets(options.store, [self.train_parts, self.val_parts])
        self.train_set = StudentFrames(self.train_parts, train_transform())
        self.val_set = StudentFrames(self.val_parts, eval_transform())
        self.draws = min(len(self.train_set), options.max_draws)
        self.steps_per_epoch = max(1, self.draws // options.batch_size)

    def _build(self, log) -> None:
        torch.manual_seed(self.options.seed)
        weights = Path(self.options.student_weights) if self.options.student_weights else None
        # The projection head maps into the teacher's feature space, whatever its dimension.
        self.student, warning = build_student(weights, self.options.teacher.get("feature_dim", PROJECTION_DIM))
        if warning:
            log(f"warning: {warning}")
        counts = parameter_counts(self.student)
        log(f"student: {counts['total'] / 1e6:.2f} M parameters in training, {counts['deployed'] / 1e6:.2f} M "
            f"deployed; {len(self.train_set)} train frames from {', '.join(self.options.sources)}, "
            f"{self.draws} draws/epoch, target {self.options.target}")
        self.student.to(self.device)
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=self.options.lr,
                                           weight_decay=self.options.weight_decay)
        self.scheduler = warmup_cosine(self.optimizer, self.steps_per_epoch, self.options.epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else nullcontext()

    def _loss(self, batch) -> tuple[torch.Tensor, dict]:
        images, labels, domains, feature, logits = _to_device(batch, self.device)
        with self._autocast():
            student_logits, features = self.student(images)
            projection = self.student.project(features)
        teacher = {} if not self.criterion.needs_teacher else {"teacher_logits": logits,
                                                               "teacher_features": feature}
        return self.criterion(student_logits.float(), projection.float(), labels, domains, **teacher)

    def _train_epoch(self, epoch: int) -> dict:
        generator = _seed_epoch(self.options.seed, epoch)
        sampler = domain_balanced_sampler(self.train_set.domain_of, self.draws, generator)
        loader = DataLoader(self.train_set, batch_size=self.options.batch_size, sampler=sampler,
                            num_workers=self.options.workers, drop_last=self.draws >= 2 * self.options.batch_size,
                            pin_memory=self.device.type == "cuda", generator=generator)
        self.student.train()
        sums: dict[str, float] = {}
        steps = 0
        with tqdm(loader, desc=f"epoch {epoch + 1}/{self.options.epochs}", unit="batch",
                  disable=not self.progress, leave=False) as bar:
            for batch in bar:
                loss, terms = self._loss(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                steps += 1
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()})
        return {name: value / max(steps, 1) for name, value in sums.items()} | {"steps": steps}

    @torch.no_grad()
    def _validate(self) -> dict:
        loader = DataLoader(self.val_set, batch_size=max(self.options.batch_size, 128),
                            num_workers=self.options.workers)
        self.student.eval()
        sums: dict[str, float] = {}
        frames = 0
        for batch in loader:
            _, terms = self._loss(batch)
            count = len(batch[1])
            frames += count
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value * count
        return {name: value / frames for name, value in sums.items()}

    def _p_live(self, images: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), self._autocast():
            logits, _ = self.student(images.to(self.device))
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()

    def run(self, resume: bool = False) -> dict:
        """Train (or continue), then evaluate the best checkpoint on the target's test split."""
        log = tqdm.write if self.progress else (lambda _msg: None)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._build(log)
        start_epoch, best = 0, {"val_loss": float("inf"), "epoch": -1}
        if resume:
            start_epoch, best = self._restore()
            log(f"resuming at epoch {start_epoch + 1} (best so far: epoch {best['epoch'] + 1})")
        self.options.save(self.run_dir / "config.json")
        try:
            for epoch in range(start_epoch, self.options.epochs):
                began = time.perf_counter()
                train_terms = self._train_epoch(epoch)
                val_terms = self._validate()
                record = {"epoch": epoch + 1, "lr": self.scheduler.get_last_lr()[0], "train": train_terms,
                          "val": val_terms, "seconds": round(time.perf_counter() - began, 2)}
                if val_terms["total"] < best["val_loss"]:
                    best = {"val_loss": val_terms["total"], "epoch": epoch}
                    save_checkpoint(self.run_dir / BEST, self.student, epoch, self.options.__dict__,
                                    val_loss=val_terms["total"])
                self._save_last(epoch, best)
                with open(self.run_dir / "log.jsonl", "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                log(f"epoch {epoch + 1}: train {train_terms['total']:.4f}  val {val_terms['total']:.4f}"
                    f"{'  *best' if best['epoch'] == epoch else ''}")
        except KeyboardInterrupt:
            log(f"interrupted: completed epochs are saved in {self.run_dir / LAST}; continue with "
                f"`fasd train --resume {self.run_dir}`")
            raise
        return self._finish(best)

    def _save_last(self, epoch: int, best: dict) -> None:
        save_checkpoint(self.run_dir / LAST, self.student, epoch, self.options.__dict__,
                        extra={"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                               "best": best})

    def _restore(self) -> tuple[int, dict]:
        payload = read_checkpoint(self.run_dir / LAST)
        self.student.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        return payload["epoch"] + 1, payload["best"]

    def _finish(self, best: dict) -> dict:
        payload = read_checkpoint(self.run_dir / BEST)
        self.student.load_state_dict(payload["model"])
        self.student.eval()
        # Operating threshold chosen on the sources' validation data (never on the target).
        val_scores = [score_rows(self._p_live, p.source, p.rows, progress=False) for p in self.val_parts]
        val_labels = np.concatenate([p.source.table.label[p.rows] for p in self.val_parts])
        _, val_threshold = eer(val_labels, np.concatenate(val_scores))
        save_checkpoint(self.run_dir / BEST, self.student, payload["epoch"], self.options.__dict__,
                        eer_threshold=val_threshold, val_loss=payload["val_loss"])
        test = self.test_part
        scores = score_rows(self._p_live, test.source, test.rows, progress=self.progress,
                            desc=f"test {self.options.target}")
        write_scores(self.run_dir / "scores.csv", test.source, test.rows, scores)
        metrics = metrics_for(test.source, test.rows, scores, val_threshold=val_threshold)
        metrics.update({"protocol": self.options.protocol, "sources": self.options.sources,
                        "target": self.options.target, "seed": self.options.seed,
                        "no_teacher": self.options.no_teacher, "loss_weights": self.options.loss_weights(),
                        "best_epoch": best["epoch"] + 1, "epochs": self.options.epochs})
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_report(self.run_dir, metrics)
        return metrics


def resume_options(run_dir: Path) -> TrainOptions:
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        raise FasdError(f"{run_dir} has no {LAST} to resume from (no epoch completed yet, or not a run directory)")
    return TrainOptions.load(run_dir / "config.json")
