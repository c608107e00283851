"""Real teacher checkpoints: FLIP's numpy-1.x pickles, OpenAI's TorchScript archive, one-line mismatches."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from fasd.errors import FasdError
from fasd.teacher_cache.arch import TINY_ARCH, openai_state_dict, random_clip
from fasd.teacher_cache.checkpoint import check_state_fits, clip_state_dict, is_torchscript, read_checkpoint


class _Numpy1Pickler(pickle._Pickler):
    """Pickles numpy objects by the names numpy 1.x wrote (``numpy.core.multiarray.scalar``), whatever
    numpy is installed: the GLOBAL opcodes of a file saved under numpy 1.21."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        if module.startswith("numpy._core"):
            self.write(pickle.GLOBAL + f"numpy.core{module[len('numpy._core'):]}\n{obj.__qualname__}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


class _Numpy1PickleModule:
    Pickler = _Numpy1Pickler
    Unpickler = pickle.Unpickler
    __name__ = "numpy1_pickle"


def _flip_save_checkpoint(state: dict[str, torch.Tensor], path) -> None:
    """What FLIP's utils.save_checkpoint writes (fp32 weights, numpy float64 metrics), under numpy 1.x."""
    valid_args = [np.float64(0.31), np.float64(96.5), np.float64(0.042), np.float64(0.05), np.float64(0.99),
                  np.float64(0.57)]
    payload = {"epoch": 12, "state_dict": {f"model.{k}": v for k, v in state.items()},
               "valid_arg": valid_args, "best_model_EER": np.round(np.float64(0.0421234), 5),
               "best_model_ACER": np.float64(0.05), "best_model_ACC": np.float64(96.5),
               "threshold": np.float64(0.57)}
    torch.save(payload, path, pickle_module=_Numpy1PickleModule, pickle_protocol=2)


@pytest.fixture(scope="module")
def clip_model():
    return random_clip(TINY_ARCH, seed=3)


def test_numpy1_flip_checkpoint_loads_without_trust(tmp_path, clip_model):
    state = openai_state_dict(clip_model)
    path = tmp_path / "flip_mcl.pth.tar"
    _flip_save_checkpoint(state, path)
    with zipfile.ZipFile(path) as archive:
        data = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    assert b"numpy.core.multiarray\nscalar" in data and b"numpy._core" not in data  # faithful to numpy 1.21
    raw = read_checkpoint(path)
    assert raw["best_model_EER"] == pytest.approx(0.04212) and isinstance(raw["threshold"], np.floating)
    assert raw["valid_arg"][2] == pytest.approx(0.042)
    loaded = clip_state_dict(raw, path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_numpy2_names_and_dtypes_load(tmp_path):
    path = tmp_path / "np2.pt"
    torch.save({"eer": np.float64(0.1), "step": np.int64(3), "flag": np.bool_(True), "half": np.float16(1.5),
                "dtype": np.dtype("float32"), "array": np.arange(4, dtype=np.int32)}, path)
    raw = read_checkpoint(path)
    assert raw["eer"] == 0.1 and raw["step"] == 3 and raw["dtype"] == np.float32
    np.testing.assert_array_equal(raw["array"], np.arange(4))


def test_code_in_pickle_still_needs_trust(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": nn.Linear(2, 2)}, path)
    with pytest.raises(FasdError, match="--trust-checkpoint"):
        read_checkpoint(path)
    assert isinstance(read_checkpoint(path, trust=True)["x"], nn.Linear)


class _OpenAIArchive(nn.Module):
    """Laid out like OpenAI's jit ``ViT-B-16.pt``: CLIP's modules at top level plus the three int buffers
    that OpenAI's ``build_model`` deletes."""

    def __init__(self, clip):
        super().__init__()
        for name in ("visual", "transformer", "token_embedding", "ln_final"):
            setattr(self, name, getattr(clip, name))
        for name in ("positional_embedding", "text_projection", "logit_scale"):
            setattr(self, name, getattr(clip, name))
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.register_buffer("input_resolution", torch.tensor(clip.visual.image_size[0]))
        self.register_buffer("context_length", torch.tensor(clip.context_length))
        self.register_buffer("vocab_size", torch.tensor(clip.vocab_size))

    def forward(self, image):
        return self.visual(image)


def test_openai_torchscript_archive_loads_directly(tmp_path, clip_model):
    archive = _OpenAIArchive(clip_model).eval()
    size = clip_model.visual.image_size[0]
    traced = torch.jit.trace(archive, torch.randn(1, 3, size, size), check_trace=False)
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(traced, str(path))
    assert is_torchscript(path)
    state = clip_state_dict(read_checkpoint(path), path)
    original = openai_state_dict(clip_model)
    assert state.keys() == original.keys()  # input_resolution, context_length, vocab_size dropped
    assert all(torch.equal(state[k], original[k]) for k in original)
    not_script = tmp_path / "plain.pt"
    torch.save(original, not_script)
    assert not is_torchscript(not_script)


def test_garbage_files_are_one_line(tmp_path):
    cases = {"empty.pt": b"", "text.pt": b"hello", "zip.pt": None}
    for name, content in cases.items():
        path = tmp_path / name
        if content is None:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("readme.txt", "not a checkpoint")
        else:
            path.write_bytes(content)
        with pytest.raises(FasdError) as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(FasdError, match="directory"):
        read_checkpoint(tmp_path)


def test_check_state_fits_names_the_first_mismatch():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    good = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    check_state_fits(model, good, "ckpt.pt", "use a checkpoint of this architecture")
    assert all(torch.equal(model.state_dict()[k], good[k]) for k in good)  # loaded strictly

    def message(state):
        with pytest.raises(FasdError) as info:
            check_state_fits(model, state, "ckpt.pt", "hint")
        text = str(info.value)
        assert "\n" not in text and text.startswith("ckpt.pt does not fit the model: ") and text.endswith("; hint")
        return text

    partial = {k: v for k, v in good.items() if k != "0.bias"}
    assert "missing key '0.bias'" in message(partial)
    assert "unexpected key 'extra.weight'" in message({**good, "extra.weight": torch.zeros(1)})
    wrong = {**good, "1.weight": torch.zeros(3, 4)}
    assert "'1.weight' has shape (3, 4), the model expects (2, 4)" in message(wrong)


def _flip_math(model, images: list[np.ndarray], mean, std) -> np.ndarray:
    """FLIP's evaluation logits, computed independently of fasd: torchvision's bicubic resize to the model's
    input, ToTensor, Normalize(mean, std); encode_image; per-class mean of the raw text embeddings of FLIP's
    prompts, normalised; exp(logit_scale)·cosine in the order [spoof, live]."""
    import open_clip
    from PIL import Image
    from torchvision import transforms

    from fasd.constants import FLIP_LIVE_PROMPTS, FLIP_SPOOF_PROMPTS

    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    transform = transforms.Compose([transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
                                    transforms.ToTensor(), transforms.Normalize(mean, std)])
    tokenizer = open_clip.get_tokenizer(TINY_ARCH)
    with torch.no_grad():
        feats = model.encode_image(torch.stack([transform(Image.fromarray(image)) for image in images]))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        centroids = []
        for prompts in (FLIP_SPOOF_PROMPTS, FLIP_LIVE_PROMPTS):
            text = model.encode_text(tokenizer(list(prompts))).mean(dim=0)
            centroids.append(text / text.norm())
        return (model.logit_scale.exp() * feats @ torch.stack(centroids).t()).numpy()


def test_numpy1_flip_checkpoint_caches_flip_math_on_imagenet_input(tmp_path, clip_model, synth_config):
    """Issue #12's acceptance: FLIP's own save_checkpoint under numpy 1.x caches without --trust-checkpoint and
    the stored logits are FLIP's math on ImageNet-normalised frames (not on CLIP-normalised ones)."""
    from typer.testing import CliRunner

    from fasd.cli import app
    from fasd.config import load_registry
    from fasd.constants import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
    from fasd.data.open_source import open_source
    from fasd.store_schema.store import open_store, read_strings

    checkpoint = tmp_path / "flip_mcl.pth.tar"
    _flip_save_checkpoint(openai_state_dict(clip_model), checkpoint)
    store = tmp_path / "flip.zarr"
    result = CliRunner().invoke(app, ["cache-teacher", "--teacher", "flip-mcl", "--checkpoint", str(checkpoint),
                                      "--dataset", "alpha", "--splits", "test", "--config", str(synth_config),
                                      "--store", str(store)])
    assert result.exit_code == 0, result.output
    group = open_store(str(store)).dataset("alpha")
    frame_ids = read_strings(group["frame_id"])[:8]
    source = open_source(load_registry(synth_config).dataset("alpha"))
    images = [source.read_image(int(np.flatnonzero(source.table.frame_id == f)[0])) for f in frame_ids]
    cached = group["logits"][:8].astype(np.float64)
    imagenet = _flip_math(clip_model, images, IMAGENET_MEAN, IMAGENET_STD)
    clip = _flip_math(clip_model, images, CLIP_MEAN, CLIP_STD)
    np.testing.assert_allclose(cached, imagenet, atol=1e-4)
    assert np.abs(cached - clip).max() > 20 * 1e-4  # the test tells the two normalisations apart
