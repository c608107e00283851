"""The options of a training run, stored as config.json in the run directory (and read back by --resume)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fasd.device import default_workers
from fasd.errors import FasdError


@dataclass
class TrainOptions:
    protocol: str
    sources: list[str]
    target: str
    config: str  # fasd.toml path
    store: str | None = "teacher.zarr"
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_draws: int = 60000
    lambda_kl: float = 1.0
    lambda_feat: float = 1.0
    lambda_triplet: float = 0.5
    tau: float = 4.0
    margin: float = 0.5
    no_teacher: bool = False
    seed: int = 0
    device: str = "auto"
    workers: int = field(default_factory=default_workers)
    student_weights: str | None = None
    stream_targets: bool = False  # read features chunk by chunk instead of loading them (big stores)
    teacher: dict = field(default_factory=dict)  # the store's teacher fingerprint, filled in at start

    def validate(self) -> None:
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--lr", self.lr),
                            ("--max-draws", self.max_draws)):
            if value <= 0:
                raise FasdError(f"{flag} must be > 0, got {value}")
        if self.batch_size < 2:
            raise FasdError("--batch-size must be at least 2 (batch norm needs two frames)")
        if self.weight_decay < 0 or self.workers < 0:
            raise FasdError("--weight-decay and --workers must be >= 0")

    def loss_weights(self) -> dict[str, float]:
        return {"lambda_kl": self.lambda_kl, "lambda_feat": self.lambda_feat,
                "lambda_triplet": self.lambda_triplet, "tau": self.tau, "margin": self.margin}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainOptions":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise FasdError(f"cannot read run config {path}: {exc}") from None
