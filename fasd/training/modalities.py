"""Multimodal frames on the student side (the ``mobilenetv3-small-mm`` stream, scoring, ``--missing``).

A frame's RGB, depth and IR images go through ONE geometric augmentation (the same random resized crop and
flip, so the modalities stay registered); colour jitter touches RGB only (depth and IR intensities are
measurements, not colours). Every modality is ImageNet-normalised like the RGB student's input; an absent
modality is the all-zero frame (FrameSource.read_modalities), i.e. the constant −mean/std image.
A stream item's image is the stack (M, 3, S, S) in MODALITIES order; the student unstacks it.

``missing`` (``fasd evaluate --missing depth,ir``, Protocol 2) zeroes those modalities at test time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, MODALITIES, STUDENT_INPUT_SIZE
from fasd.data.source import FrameSource
from fasd.errors import FasdError, warn
from fasd.training.frames import BLANK_IMAGE, EvalFrames
from fasd.views import CROP_RATIO, CROP_SCALE, FLIP_PROBABILITY, JITTER

Frame = dict[str, np.ndarray]  # FrameSource.read_modalities: every modality (H, W, 3) uint8 and "mask"
ModalityTransform = Callable[[Frame], torch.Tensor]  # -> (M, 3, S, S) ImageNet-normalised
# An unreadable frame's stand-in (fasd.training.frames.read_or_blank): every modality blank, none present.
BLANK_FRAME: Frame = {**{name: BLANK_IMAGE for name in MODALITIES}, "mask": np.zeros(len(MODALITIES), dtype=bool)}


def check_missing(missing: tuple[str, ...]) -> tuple[str, ...]:
    """``--missing`` names modalities other than RGB (the student needs at least one input)."""
    unknown = [m for m in missing if m not in MODALITIES[1:]]
    if unknown or len(set(missing)) != len(missing):
        raise FasdError(f"--missing {','.join(missing)}: name distinct modalities among "
                        f"{', '.join(MODALITIES[1:])}")
    return tuple(missing)


def warn_absent_modalities(sources: list[FrameSource], wanted: tuple[str, ...], missing: tuple[str, ...] = (),
                           model: str = "student") -> None:
    """One warning per source that holds none of a multimodal ``model``'s ``wanted`` modalities beyond those
    deliberately ``missing``: the model would see zero images there, which is Protocol 2 only when asked for."""
    for source in sources:
        absent = [m for m in wanted if m not in source.modalities and m not in missing]
        if absent:
            warn(f"'{source.name}' holds no {', '.join(absent)}: the {'/'.join(wanted)} {model} sees "
                 f"{'it' if len(absent) == 1 else 'them'} as missing (zero images)")


def _normalise(images: list[torch.Tensor]) -> torch.Tensor:
    """uint8 (3, S, S) images -> (M, 3, S, S) float ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (torch.stack([image.as_subclass(torch.Tensor) for image in images]).float() / 255.0 - mean) / std


def _images(frame: Frame, missing: tuple[str, ...]) -> list[tv_tensors.Image]:
    return [tv_tensors.Image(torch.from_numpy(np.zeros_like(frame[m]) if m in missing else frame[m]).permute(2, 0, 1))
            for m in MODALITIES]


def modality_train_transform(size: int = STUDENT_INPUT_SIZE) -> ModalityTransform:
    """The RGB student's augmentation (fasd.training.transforms.train_transform): crop and flip shared by every
    modality (one call on all of them draws one set of parameters), colour jitter on RGB only."""
    geometric = v2.Compose([v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
                            v2.RandomHorizontalFlip(FLIP_PROBABILITY)])
    jitter = v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER)

    def transform(frame: Frame) -> torch.Tensor:
        rgb, *others = geometric(*_images(frame, ()))
        return _normalise([jitter(rgb), *others])
    return transform


def modality_eval_transform(size: int = STUDENT_INPUT_SIZE, missing: tuple[str, ...] = ()) -> ModalityTransform:
    """Plain resize of every modality; ``missing`` modalities are the all-zero frame."""
    resize = v2.Resize((size, size), antialias=True)

    def transform(frame: Frame) -> torch.Tensor:
        return _normalise([resize(image) for image in _images(frame, missing)])
    return transform


class ModalityEvalFrames(EvalFrames):
    """Item i -> ((M, 3, S, S) images, i, readable) for scoring one source's rows (a ModalityTransform)."""

    blank = BLANK_FRAME

    def read(self, row: int) -> Frame:
        return self.source.read_modalities(row)


def run_deployed(module: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A deployable on a stream batch: (N, 3, S, S) for one input, (N, M, 3, S, S) for one input per modality."""
    return module(*images.unbind(1)) if images.ndim == 5 else module(images)
