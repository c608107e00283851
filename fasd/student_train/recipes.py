"""Recipes: named training defaults (student, loss weights, optimiser, schedule). `fasd train --recipe NAME`;
every flag still overrides. ``vlmkd`` is fasd 0.1's behaviour and the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasd.errors import FasdError


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    student: str
    weights: dict[str, float]  # loss term -> weight (fasd.student_train.losses.TERMS)
    tau: float
    lr: float  # peak AdamW learning rate at batch_size (scaled linearly with --batch-size when lr_scales)
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_epochs: int
    lr_scales: bool = False
    margin: float = 0.5
    max_draws: int = 60000
    layers: tuple[int, ...] = ()
    layer_tap: str = "block"

    def lr_for(self, batch_size: int) -> float:
        return self.lr * batch_size / self.batch_size if self.lr_scales else self.lr


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name} registered twice")
    RECIPES[recipe.name] = recipe
    return recipe


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise FasdError(f"unknown --recipe '{name}'; registered: {', '.join(RECIPES)}")
    return RECIPES[name]


def alpha_beta_weights(alpha: float, beta: float) -> dict[str, float]:
    """HaTFAS' total (1 − α)·CE + α·KL + β·head-aware as term weights (``--alpha``/``--beta``)."""
    return {"ce": 1.0 - alpha, "kl": alpha, "head-aware": beta}


register_recipe(Recipe(
    "vlmkd", "paper A: FLIP-MCL / CLIP ViT-B/16 -> MobileNetV3-Small 112 px; CE + KL + feature + SSDG triplet",
    student="mobilenetv3-small", weights={"ce": 1.0, "kl": 1.0, "feat": 1.0, "triplet": 0.5}, tau=4.0,
    lr=1e-3, weight_decay=1e-4, batch_size=64, epochs=15, warmup_epochs=1))

register_recipe(Recipe(
    "hatfas", "paper C: DeiT-Base -> DeiT-Tiny 224 px; (1 - alpha) CE + alpha tau^2 KL + beta head-aware on CLS "
    "tokens of layers 4,6,8", student="deit-tiny", weights=alpha_beta_weights(0.7, 1.0), tau=3.0,
    lr=5e-4 * 128 / 512, lr_scales=True, weight_decay=0.05, batch_size=128, epochs=300, warmup_epochs=5,
    layers=(4, 6, 8), layer_tap="block"))

register_recipe(Recipe(
    "mmda", "paper B: MMDA teacher (CLIP ViT on RGB, depth, IR) -> one MobileNetV3-Small per modality, 112 px; "
    "CE + KL + feature + RS2 alignment to the teacher's captions", student="mobilenetv3-small-mm",
    weights={"ce": 1.0, "kl": 1.0, "feat": 1.0, "rs2": 1.0}, tau=4.0, lr=1e-3, weight_decay=1e-4, batch_size=64,
    epochs=15, warmup_epochs=1))
