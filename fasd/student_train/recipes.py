"""Recipes: named training defaults (student, loss weights, optimiser, schedule). `fasd train --recipe NAME`;
every flag still overrides. ``vlmkd`` is fasd 0.1's behaviour and the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasd.registry import Registry
from fasd.student_train.loss_terms import TERMS


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
    augment: str = "fasd"  # the augmentation policy (fasd.training.augment.POLICIES): its flags' defaults

    def lr_for(self, batch_size: int) -> float:
        return self.lr * batch_size / self.batch_size if self.lr_scales else self.lr


RECIPES: Registry[Recipe] = Registry("--recipe", (__name__,))


def register_recipe(recipe: Recipe) -> Recipe:
    return RECIPES.add(recipe.name, recipe)


def recipe(name: str) -> Recipe:
    return RECIPES.get(name)


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
    layers=(4, 6, 8), layer_tap="block", augment="deit"))

register_recipe(Recipe(
    "mmda", "paper B: MMDA teacher (CLIP ViT on RGB, depth, IR) -> one MobileNetV3-Small per modality, 112 px; "
    "CE + KL + feature + RS2 alignment to the teacher's captions", student="mobilenetv3-small-mm",
    weights={"ce": 1.0, "kl": 1.0, "feat": 1.0, "rs2": 1.0}, tau=4.0, lr=1e-3, weight_decay=1e-4, batch_size=64,
    epochs=15, warmup_epochs=1))


def recipe_defaults(name: str) -> dict[str, object]:
    """Recipe ``name``'s defaults by `fasd train` flag (its augmentation policy's included), as --help shows them."""
    from fasd.training.augment import policy

    chosen = recipe(name)
    lr = f"{chosen.lr * 512 / chosen.batch_size:g}*batch/512" if chosen.lr_scales else f"{chosen.lr:g}"
    flags: dict[str, object] = {
        "--student": chosen.student, "--epochs": chosen.epochs, "--batch-size": chosen.batch_size, "--lr": lr,
        "--weight-decay": chosen.weight_decay, "--warmup-epochs": chosen.warmup_epochs, "--tau": chosen.tau,
        **{term.alias: chosen.weights.get(name, 0.0) for name, term in TERMS.all().items() if term.alias},
        "--augment": chosen.augment}
    if chosen.layers:
        flags["--layers"] = ",".join(map(str, chosen.layers))
    flags |= {f"--{name.replace('_', '-')}": value for name, value in policy(chosen.augment).defaults().items()}
    return flags


def describe(name: str) -> str:
    """One paragraph: recipe ``name``'s defaults as flags, and its augmentation policy."""
    from fasd.training.augment import policy

    flags = " ".join(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
                     for flag, value in recipe_defaults(name).items())
    return f"Recipe {name} defaults: {flags}. Augmentation policy {recipe(name).augment}: " \
           f"{policy(recipe(name).augment).help}."
