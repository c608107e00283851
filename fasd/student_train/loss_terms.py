"""The loss-term registry: every term `fasd train --loss NAME=W` weighs, with all it knows about itself.

A term is registered with ``@register_loss`` around ``compute(batch, settings) -> scalar tensor``
(batch: fasd.student_train.losses.StepBatch, settings: LossSettings): its name, the ``--lambda-*`` alias of its
weight (fasd 0.2's flags; a new term needs none), a help line, the teacher targets, student outputs and store
text arrays it reads. Recipes give the default weights (fasd.student_train.recipes; a term a recipe does not name
weighs 0). This module imports no torch, so `fasd train --help` lists the terms without loading it; the terms'
tensor functions live in fasd.student_train.losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fasd.errors import FasdError
from fasd.registry import Registry

if TYPE_CHECKING:
    import torch

    from fasd.student_train.losses import LossSettings, StepBatch


@dataclass(frozen=True)
class LossTerm:
    name: str
    help: str
    compute: Callable[[StepBatch, LossSettings], torch.Tensor]
    alias: str | None = None  # fasd 0.2's --lambda-* flag for its weight (and TrainOptions' lambda_* field)
    targets: tuple[str, ...] = ()  # teacher targets it reads
    outputs: tuple[str, ...] = ("logits",)  # student outputs it reads
    texts: tuple[str, ...] = ()  # arrays of the store's text/ group it reads (LossSettings.texts)
    supervised: bool = False  # learns from the labels alone: the one kind of term --no-teacher keeps

    @property
    def flag(self) -> str:
        """How a user sets its weight, for messages."""
        return self.alias or f"--loss {self.name}"

    @property
    def field(self) -> str | None:
        """Its weight's TrainOptions field (run configs since fasd 0.1); None: in TrainOptions.loss."""
        return None if self.alias is None else self.alias.removeprefix("--").replace("-", "_")

    @property
    def defaults(self) -> dict[str, float]:
        """Its default weight in every recipe (0 where a recipe does not name it)."""
        from fasd.student_train.recipes import RECIPES

        return {name: recipe.weights.get(self.name, 0.0) for name, recipe in RECIPES.all().items()}

    def describe(self) -> str:
        """'NAME: help (default: vlmkd 1, hatfas 0.3, mmda 1)', for --help."""
        by_recipe = ", ".join(f"{recipe} {weight:g}" for recipe, weight in self.defaults.items())
        return f"{self.name}: {self.help} (default: {by_recipe})"


TERMS: Registry[LossTerm] = Registry("--loss", (__name__,), unknown="unknown {flag} term '{name}'; registered: {names}")


def register_loss(name: str, help: str, alias: str | None = None, targets: tuple[str, ...] = (),
                  outputs: tuple[str, ...] = ("logits",), texts: tuple[str, ...] = (),
                  supervised: bool = False) -> Callable:
    """Register ``compute(batch, settings) -> scalar`` as loss term ``name``."""
    return TERMS.register(name, lambda compute: LossTerm(name, help, compute, alias, targets, outputs, texts,
                                                         supervised))


def parse_loss_weights(items: Iterable[str], flag: str = "--loss") -> dict[str, float]:
    """``NAME=W`` items (repeatable --loss) as {term: weight}; an unknown term, a weight that is not a finite
    number >= 0, or a term given twice is a one-line FasdError listing the registered terms."""
    weights: dict[str, float] = {}
    names = ", ".join(TERMS)
    for item in items:
        name, has_weight, value = str(item).partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if name not in TERMS or not has_weight or not math.isfinite(weight) or weight < 0:
            what = f"unknown term '{name}'" if name not in TERMS else f"'{value}' is not a weight >= 0"
            raise FasdError(f"{flag} {item!r}: {what}; use NAME=W with NAME one of {names}")
        if name in weights:
            raise FasdError(f"{flag} {name} given twice; give each term once")
        weights[name] = weight
    return weights


def weight_fields(weights: dict[str, float]) -> dict:
    """Loss-term weights as TrainOptions fields: lambda_<term> for the terms with a --lambda-* alias (run configs
    keep fasd 0.2's layout), the others under "loss" (absent when there are none)."""
    fields = {TERMS[name].field: value for name, value in weights.items() if TERMS[name].field}
    others = {name: value for name, value in weights.items() if not TERMS[name].field}
    return fields | ({"loss": others} if others else {})


def _losses():
    from fasd.student_train import losses

    return losses


@register_loss("ce", "cross-entropy on the label", alias="--lambda-ce", supervised=True)
def _ce(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().ce_loss(batch.outputs["logits"], batch.labels, batch.soft_labels)


@register_loss("kl", "tau^2 KL(p_T || p_S) on the teacher's logits", alias="--lambda-kl", targets=("logits",))
def _kl(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().kl_loss(batch.outputs["logits"], batch.targets["logits"], settings.tau, settings.kl_direction)


@register_loss("feat", "||normalize(g(f_S)) - f_T||^2 on the teacher's unit feature", alias="--lambda-feat",
               targets=("feature",), outputs=("projection",))
def _feat(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().feature_loss(batch.outputs["projection"], batch.targets["feature"])


@register_loss("triplet", "SSDG asymmetric triplet on the projection (paper A)", alias="--lambda-triplet",
               outputs=("projection",))
def _triplet(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().triplet_loss(batch.outputs["projection"], batch.labels, batch.domains, settings.margin)


@register_loss("head-aware", "HaTFAS head-aware loss on the CLS tokens at --layers", alias="--lambda-head-aware",
               targets=("layer_cls",), outputs=("layer_cls",))
def _head_aware(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().head_aware_loss(batch.outputs["layer_cls"], batch.targets["layer_cls"])


@register_loss("rs2", "RS2 alignment of the projection to the store's caption embeddings (paper B eq. 4-5, "
               "over-all min)", alias="--lambda-rs2", outputs=("projection",), texts=("captions", "caption_labels"))
def _rs2(batch: StepBatch, settings: LossSettings) -> torch.Tensor:
    return _losses().rs2_align_loss(batch.outputs["projection"], batch.labels, settings.texts["captions"],
                                    settings.texts["caption_labels"])
