"""RS2's caption sets (MMDA Appendix A, Table 6): K = 24 per class, and ``--captions FILE``."""

from __future__ import annotations

from pathlib import Path

from fasd.constants import CLASS_NAMES, FLIP_LIVE_PROMPTS, FLIP_SPOOF_PROMPTS
from fasd.teacher_cache.prompts import load_prompts

_TEMPLATE = "This is a photo of {} face"
_SPOOF_WORDS = (
    "a spoof", "an attack", "a fake", "a non-real", "a counterfeit", "a printed spoof", "an adversarial patch",
    "a wearable adversarial sticker", "a printed adversarial image", "a physical impersonation attack",
    "an adversarial perturbation", "an adversarial makeup", "a facial attribute modification",
    "a physical-world printed attack", "a synthetic image", "a semantic adversarial attack",
)
_SPOOF_EXTRA = ("This is a photo of an adversarial face image", "This is a photo of an adversarial face mask")
_LIVE_WORDS = (
    "a real", "an authentic", "a vital", "a biometric", "a genuine", "an alive", "a real-time", "a vivacious",
    "a veritable", "a valid", "an actual", "an existent", "a true", "a legitimate", "a natural", "an unfeigned",
    "an unimpeachable", "a credible",
)

MMDA_SPOOF_CAPTIONS = tuple(_TEMPLATE.format(w) for w in _SPOOF_WORDS) + _SPOOF_EXTRA + FLIP_SPOOF_PROMPTS
MMDA_LIVE_CAPTIONS = tuple(_TEMPLATE.format(w) for w in _LIVE_WORDS) + FLIP_LIVE_PROMPTS


def default_captions() -> dict[str, list[str]]:
    return {"spoof": list(MMDA_SPOOF_CAPTIONS), "live": list(MMDA_LIVE_CAPTIONS)}


def load_captions(path: str | Path | None) -> dict[str, list[str]]:
    """The paper's 24 + 24 captions, or a JSON file ``{"spoof": [...], "live": [...]}`` (one-line errors)."""
    return default_captions() if path is None else load_prompts(path, "--captions")


def flatten_captions(captions: dict[str, list[str]]) -> tuple[list[str], list[int]]:
    """Sentences in class order (spoof first, then live) and their labels (the index in CLASS_NAMES)."""
    sentences, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        sentences += captions[name]
        labels += [label] * len(captions[name])
    return sentences, labels
