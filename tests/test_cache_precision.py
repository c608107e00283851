"""The cache job's GPU data path, checked on CPU: the device-side resize gives PIL's bytes (so a store is the same
whichever side resized, and resumes bit-identically), frames of several sizes still batch, and bf16 autocast
targets agree with fp32 (cosine >= 0.9999)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.store_schema.store import open_store
from fasd.teacher_cache.job import CacheOptions, TeacherFrames, run_cache
from fasd.teacher_cache.preprocess import resize_batch, resize_uint8
from fasd.teacher_cache.registry import TeacherOptions, load_teacher
from fasd.views import ViewSettings
from helpers import interrupt_on_call

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape, size", [((64, 64), 224), ((269, 256), 224), ((512, 512), 224), ((237, 224), 112),
                                         ((20, 7), 224), ((224, 224), 224)])
@pytest.mark.parametrize("photo", [data.astronaut, data.chelsea])
def test_device_resize_is_pils_bytes(photo, shape, size):
    """PIL's bicubic (two 8-bit passes, fixed-point weights) and resize_batch, on real photos, up and down."""
    from PIL import Image

    frame = np.asarray(Image.fromarray(photo()).resize(shape[::-1], Image.BILINEAR))
    batch = torch.from_numpy(np.stack([frame, frame[::-1].copy()]))
    expected = np.stack([resize_uint8(frame, size), resize_uint8(frame[::-1].copy(), size)])
    np.testing.assert_array_equal(resize_batch(batch, size).numpy(), expected)


def _cache(config, checkpoint, store, **options):
    source = open_source(load_registry(config).dataset("alpha"))
    loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
    return run_cache(source, loaded, str(store), CacheOptions(batch_size=4, chunk_rows=8, progress=False,
                                                              **options))


def test_device_resize_store_equals_workers_and_resumes_bit_identically(tmp_path, synth_config,
                                                                        tiny_flip_checkpoint, monkeypatch):
    """64 px frames, a 224 px teacher: the resize happens. A device-resized job killed mid-chunk and resumed
    writes the bytes of one uninterrupted worker-resized job."""
    _cache(synth_config, tiny_flip_checkpoint, tmp_path / "workers.zarr", resize_on="workers")
    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    monkeypatch.setattr(loaded.module, "forward", interrupt_on_call(loaded.module.forward, 6))
    with pytest.raises(KeyboardInterrupt):
        run_cache(open_source(load_registry(synth_config).dataset("alpha")), loaded, str(tmp_path / "device.zarr"),
                  CacheOptions(batch_size=4, chunk_rows=8, progress=False, resize_on="device"))
    monkeypatch.undo()
    resumed = _cache(synth_config, tiny_flip_checkpoint, tmp_path / "device.zarr", resize_on="device")
    assert resumed.completed and 0 < resumed.chunks_written < resumed.chunks
    a, b = (open_store(str(tmp_path / name)).dataset("alpha") for name in ("workers.zarr", "device.zarr"))
    for name in ("feature", "logits", "frame_id", "done"):
        np.testing.assert_array_equal(a[name][:], b[name][:])


def test_frames_of_several_sizes_are_resized_in_the_worker(synth_config):
    source = open_source(load_registry(synth_config).dataset("alpha"))
    frames = TeacherFrames(source, np.arange(2), 224, ViewSettings(), resize=False)
    small, large = frames[0], frames[1]
    assert small[0].shape == (64, 64, 3)  # at its own size: the device resizes it
    large = (torch.from_numpy(np.array(resize_uint8(large[0].numpy(), 96))), *large[1:])
    pixels = frames.collate([small, large])[0]
    expected = np.stack([resize_uint8(small[0].numpy(), 224), resize_uint8(large[0].numpy(), 224)])
    np.testing.assert_array_equal(pixels.numpy(), expected)
    assert frames.collate([small, small])[0].shape == (2, 64, 64, 3)


def test_bf16_targets_agree_with_fp32(tmp_path, synth_config, tiny_flip_checkpoint):
    _cache(synth_config, tiny_flip_checkpoint, tmp_path / "fp32.zarr", precision="fp32")
    _cache(synth_config, tiny_flip_checkpoint, tmp_path / "bf16.zarr", precision="bf16")
    a, b = (open_store(str(tmp_path / f"{name}.zarr")).dataset("alpha") for name in ("fp32", "bf16"))
    full, half = (torch.from_numpy(group["feature"][:].astype(np.float32)) for group in (a, b))
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=1)
    assert not torch.equal(full, half), "bf16 autocast did not run"
    assert cosine.min() >= 0.9999, cosine.min()
    np.testing.assert_allclose(b["logits"][:], a["logits"][:], atol=0.05)
    with pytest.raises(FasdError, match="--precision fp8 is not supported; pass one of auto, fp32, bf16, fp16"):
        _cache(synth_config, tiny_flip_checkpoint, tmp_path / "x.zarr", precision="fp8")
