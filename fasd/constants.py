"""Project-wide constants: the single source of truth for labels, normalisation and prompts."""

from __future__ import annotations

# Label convention everywhere in fasd (ISO/IEC 30107-3: attack vs bona fide).
LABEL_SPOOF = 0
LABEL_LIVE = 1
CLASS_NAMES = ("spoof", "live")  # index == label

SPLITS = ("train", "val", "test")

# CLIP image normalisation (OpenAI CLIP / open_clip).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ImageNet normalisation (torchvision MobileNetV3 student).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Input normalisations by name (`--normalize`); each teacher kind declares its own default. Mean and std are
# fractions of the full pixel range; "none" leaves pixels as they are (a model that takes raw pixels, --teacher onnx).
NO_NORMALIZATION = "none"
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD),
                  NO_NORMALIZATION: ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}

TEACHER_INPUT_SIZE = 224
STUDENT_INPUT_SIZE = 112

# FLIP's prompt ensemble (FLIP repository), class order [spoof, live].
FLIP_SPOOF_PROMPTS = (
    "This is an example of a spoof face",
    "This is an example of an attack face",
    "This is not a real face",
    "This is how a spoof face looks like",
    "a photo of a spoof face",
    "a printout shown to be a spoof face",
)
FLIP_LIVE_PROMPTS = (
    "This is an example of a real face",
    "This is a bonafide face",
    "This is a real face",
    "This is how a real face looks like",
    "a photo of a real face",
    "This is not a spoof face",
)

# Frame modalities, in the order of a pack's per-frame ``modalities`` mask; depth and IR are stored as
# 3-channel uint8 images like RGB (the MMDG lists' convention), and an absent one reads as all zeros.
MODALITIES = ("rgb", "depth", "ir")
