"""The options of a training run, stored as config.json in the run directory (and read back by --resume)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fasd.device import default_workers
from fasd.errors import FasdError
from fasd.io_checks import write_atomically
from fasd.evaluate.metrics import DEFAULT_OPERATING_POINT, parse_operating_point
from fasd.student_train.losses import KL_DIRECTIONS
from fasd.student_train.loss_terms import TERMS, weight_fields
from fasd.student_train.recipes import RECIPES
from fasd.training.augment import policy as augment_policy
from fasd.student_train.recipes import recipe as get_recipe

VLMKD_TERMS = tuple(RECIPES["vlmkd"].weights)


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
    # fasd 0.2: recipes. The defaults above and below are the vlmkd recipe's (fasd 0.1's run configs load as it).
    recipe: str = "vlmkd"
    student: str = "mobilenetv3-small"
    lambda_ce: float = 1.0
    lambda_head_aware: float = 0.0
    layers: list[int] = field(default_factory=list)
    layer_tap: str = "block"
    warmup_epochs: int = 1
    student_arch: str | None = None  # timm students: another timm ViT (None: the student's default)
    input_size: int | None = None  # timm students: another input side (None: the student's default)
    views: bool = False  # replay the store's stored augmentation views (cache-teacher --views K)
    lambda_rs2: float = 0.0  # RS2 alignment of the projection to the store's captions (mmda)
    modality_dropout: float = 0.0  # multimodal students: drop whole modalities of training samples
    # fasd 0.3: weights of the loss terms that have no lambda_* field above (`--loss NAME=W`; weight_fields)
    loss: dict[str, float] = field(default_factory=dict)
    operating_point: str = DEFAULT_OPERATING_POINT  # where best.pt's val_threshold is chosen (--operating-point)
    # The augmentation policy (fasd.training.augment) and its flags; the defaults are the fasd policy's, so older
    # run configs load unchanged.
    augment: str = "fasd"
    mixup: float = 0.0
    cutmix: float = 0.0
    smoothing: float = 0.0
    model_ema: float = 0.0
    repeated_aug: int = 0
    clip_grad: float = 1.0
    min_lr: float = 0.0
    kl_direction: str = "teacher-student"  # --kl-direction (fasd.student_train.losses.KL_DIRECTIONS)

    @classmethod
    def for_recipe(cls, name: str, **overrides) -> "TrainOptions":
        """Options with recipe ``name``'s defaults; ``overrides`` that are None keep the recipe's value."""
        chosen = get_recipe(name)
        weights = chosen.weights
        batch_size = overrides.get("batch_size") or chosen.batch_size
        defaults = {"recipe": name, "student": chosen.student, "epochs": chosen.epochs, "batch_size": batch_size,
                    "lr": chosen.lr_for(batch_size), "weight_decay": chosen.weight_decay,
                    "max_draws": chosen.max_draws, "tau": chosen.tau, "margin": chosen.margin,
                    **weight_fields({name: weights.get(name, 0.0) for name in TERMS}),
                    "layers": list(chosen.layers),
                    "layer_tap": chosen.layer_tap, "warmup_epochs": chosen.warmup_epochs}
        augment = overrides.get("augment") or chosen.augment  # --augment NAME brings that policy's defaults
        defaults |= {"augment": augment, **augment_policy(augment).defaults()}
        loss = defaults.pop("loss", {}) | (overrides.pop("loss", None) or {})
        return cls(loss=loss, **(defaults | {k: v for k, v in overrides.items() if v is not None}))

    def validate(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise FasdError(f"--{item.name.replace('_', '-')} must be a finite number, got {value}")
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--lr", self.lr),
                            ("--max-draws", self.max_draws)):
            if value <= 0:
                raise FasdError(f"{flag} must be > 0, got {value}")
        if self.warmup_epochs < 0:
            raise FasdError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        if self.batch_size < 2:
            raise FasdError("--batch-size must be at least 2 (batch norm needs two frames)")
        if self.weight_decay < 0 or self.workers < 0:
            raise FasdError("--weight-decay and --workers must be >= 0")
        parse_operating_point(self.operating_point)
        for name in self.loss:
            TERMS.get(name)  # a run config naming a term no longer registered: one line listing the terms
        augment_policy(self.augment)
        for flag, value in (("--mixup", self.mixup), ("--cutmix", self.cutmix), ("--repeated-aug", self.repeated_aug),
                            ("--clip-grad", self.clip_grad), ("--min-lr", self.min_lr)):
            if value < 0:
                raise FasdError(f"{flag} must be >= 0, got {value}")
        for flag, value in (("--smoothing", self.smoothing), ("--model-ema", self.model_ema)):
            if not 0 <= value < 1:
                raise FasdError(f"{flag} must be in [0, 1), got {value}")
        if self.kl_direction not in KL_DIRECTIONS:
            raise FasdError(f"--kl-direction must be one of {', '.join(KL_DIRECTIONS)}, got '{self.kl_direction}'")

    def weight(self, name: str) -> float:
        """Loss term ``name``'s weight: its lambda_* field (fasd 0.2's terms), else ``loss`` (0 when unset)."""
        field_name = TERMS.get(name).field
        return getattr(self, field_name) if field_name else self.loss.get(name, 0.0)

    def set_weight(self, name: str, value: float) -> None:
        field_name = TERMS.get(name).field
        if field_name:
            setattr(self, field_name, value)
        else:
            self.loss[name] = value

    def loss_weights(self) -> dict[str, float]:
        """Weight per loss term (fasd.student_train.loss_terms.TERMS); --no-teacher keeps only CE."""
        weights = {name: self.weight(name) for name in TERMS}
        if self.no_teacher:
            weights = {name: value if TERMS[name].supervised else 0.0 for name, value in weights.items()}
        # paper A's four terms are always logged (0.0 when off), as fasd 0.1 did; the others only when used
        return {name: value for name, value in weights.items() if name in VLMKD_TERMS or value > 0}

    def loss_settings(self) -> dict[str, float]:
        """The weights and settings as metrics.json records them: lambda_<term>, tau, margin."""
        return {**{f"lambda_{name.replace('-', '_')}": value for name, value in self.loss_weights().items()},
                "tau": self.tau, "margin": self.margin}

    def save(self, path: Path) -> None:
        text = json.dumps(asdict(self), indent=2)
        write_atomically(Path(path), lambda tmp: tmp.write_text(text))  # a full disk leaves no empty config.json

    @classmethod
    def load(cls, path: Path) -> "TrainOptions":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise FasdError(f"cannot read run config {path}: {exc}") from None
