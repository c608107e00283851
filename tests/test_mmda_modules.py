"""MMDA (paper B) modules: MD2A, RS2, U-DSA, captions, the MMDATeacher and its fine-tuning round trip.

Each module is checked against an independent computation: hand-worked numbers, a plain differential attention
written here, the recurrence composed by hand from the module's own MLPs, CLIP's own text tower.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

import fasd.student_train.losses as student_losses
from fasd.constants import FLIP_LIVE_PROMPTS, FLIP_SPOOF_PROMPTS, MODALITIES
from fasd.data.hdf5_pack import HDF5FrameSource, PackWriter
from fasd.errors import FasdError
from fasd.rs2_math import rs2_align_loss, rs2_distance
from fasd.teacher_cache.arch import TINY_ARCH, random_clip
from fasd.teacher_cache.mmda.captions import default_captions, flatten_captions, load_captions
from fasd.teacher_cache.mmda.finetune import ModalityFrames, finetune_mmda, load_mmda_teacher, modality_batch
from fasd.teacher_cache.mmda.md2a import MD2A, lambda_init, partner_index
from fasd.teacher_cache.mmda.model import CAPTION_COS, MMDASettings, build_mmda_teacher
from fasd.teacher_cache.mmda.rs2 import RS2Head, rs2_losses
from fasd.teacher_cache.mmda.udsa import UDSA

# A CLIP small enough for many CPU forwards: 64 px, patch 32 (4 patches + CLS), 2 blocks of width 64.
SMALL_CLIP = {"embed_dim": 32, "quick_gelu": True,
              "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def small_clip(seed: int = 0) -> open_clip.model.CLIP:
    torch.manual_seed(seed)
    return open_clip.model.CLIP(**SMALL_CLIP).eval()


# ---------------------------------------------------------------- MD2A

def test_partner_is_the_first_other_sample_of_the_same_domain():
    assert partner_index(torch.tensor([0, 1, 0, 2, 1, 0])).tolist() == [2, 4, 0, 3, 1, 0]
    assert partner_index(torch.tensor([7])).tolist() == [0]


def test_lambda_init_follows_differential_transformer():
    assert lambda_init(1) == pytest.approx(0.2)
    assert lambda_init(13) == pytest.approx(0.8 - 0.6 * math.exp(-3.6))


def test_md2a_matches_a_hand_computed_two_sample_example():
    md2a = MD2A(width=2, heads=1)
    with torch.no_grad():
        md2a.q.weight.copy_(torch.tensor([[1., 0], [0, 1], [0, 1], [1, 0]]))  # Q = x, Q′ = swap(x)
        md2a.k.weight.copy_(torch.tensor([[2., 0], [0, 2], [1, 0], [0, 1]]))  # K = 2x, K′ = x
        md2a.v.weight.copy_(torch.tensor([[1., 0], [0, 3]]))  # V = (x₀, 3·x₁)
        md2a.out.weight.copy_(torch.eye(2))
        md2a.lam.fill_(0.5)
    x = torch.tensor([[[1., 0]], [[0., 1]]])  # two samples of one token each, same domain
    partner = partner_index(torch.tensor([4, 4]))
    assert partner.tolist() == [1, 0]
    fused = md2a(x, partner)
    # Sample 0 sees [x0; x1]. Q·Kᵀ·s = (2, 0)/√2, Q′·K′ᵀ·s = (0, 1)/√2.
    a = math.exp(math.sqrt(2)) / (math.exp(math.sqrt(2)) + 1)
    b = 1 / (1 + math.exp(1 / math.sqrt(2)))
    w_self, w_other = a - 0.5 * b, (1 - a) - 0.5 * (1 - b)
    expected_0 = [1 + w_self * 1, 0 + w_other * 3]  # V rows: x0 -> (1, 0), x1 -> (0, 3)
    # Sample 1 sees [x1; x0]: the same weights on (own, partner), V rows: x1 -> (0, 3), x0 -> (1, 0).
    expected_1 = [0 + w_other * 1, 1 + w_self * 3]
    assert fused.reshape(-1).tolist() == pytest.approx(expected_0 + expected_1, abs=1e-6)


def differential_attention(x: torch.Tensor, md2a: MD2A, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Plain differential attention of each sample over its own tokens, written independently with einsum."""
    heads, width = md2a.heads, x.shape[-1]
    d = width // heads
    split = lambda t: t.reshape(*t.shape[:2], heads, d)  # noqa: E731
    q, q2 = (split(t) for t in (x @ md2a.q.weight.t()).split(width, dim=-1))
    k, k2 = (split(t) for t in (x @ md2a.k.weight.t()).split(width, dim=-1))
    v = split(x @ md2a.v.weight.t())
    s1 = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    s2 = torch.einsum("bihd,bjhd->bhij", q2, k2) / math.sqrt(d)
    if keep is not None:
        s1 = s1.masked_fill(~keep[:, None, None, :], float("-inf"))
        s2 = s2.masked_fill(~keep[:, None, None, :], float("-inf"))
    attention = s1.softmax(-1) - md2a.lam * s2.softmax(-1)
    out = torch.einsum("bhij,bjhd->bihd", attention, v).reshape(x.shape)
    return x + out @ md2a.out.weight.t() + md2a.out.bias


def test_md2a_with_each_sample_its_own_partner_is_plain_differential_attention():
    torch.manual_seed(0)
    md2a = MD2A(width=8, heads=2, lambda_layer=4)
    torch.nn.init.normal_(md2a.out.weight)
    x = torch.randn(3, 5, 8)
    expected = differential_attention(x, md2a)
    torch.testing.assert_close(md2a(x, torch.arange(3)), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(md2a(x, partner_index(torch.tensor([0, 1, 2]))), expected, atol=1e-5, rtol=1e-5)
    # A real partner changes the result.
    assert not torch.allclose(md2a(x, partner_index(torch.tensor([0, 0, 1]))), expected, atol=1e-3)


def test_md2a_key_mask_drops_the_masked_tokens_from_both_softmaxes():
    torch.manual_seed(1)
    md2a = MD2A(width=8, heads=2)
    torch.nn.init.normal_(md2a.out.weight)
    x = torch.randn(2, 6, 8)
    keep = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    torch.testing.assert_close(md2a(x, torch.arange(2), keep), differential_attention(x, md2a, keep),
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- RS2

def test_rs2_loss_on_a_hand_computed_example_both_readings():
    captions = torch.tensor([[1., 0], [0, 1]])  # one spoof caption, one live caption
    caption_labels = torch.tensor([0, 1])
    embedding = torch.tensor([[1., 1], [-1, 0]])  # a live sample at 45° to both, a spoof opposite the spoof caption
    labels = torch.tensor([1, 0])
    d_live = 0.5 * (1 - math.cos(math.pi / 4))
    # over-all: the spoof sample's nearest caption is the live one (cos 0): d = ½.
    over_all = rs2_distance(embedding, labels, captions, caption_labels, "over-all")
    assert over_all.tolist() == pytest.approx([d_live, 0.5])
    assert float(rs2_align_loss(embedding, labels, captions, caption_labels, "over-all")) == pytest.approx(
        -(math.log(1 - d_live) + math.log(0.5)) / 2, rel=1e-6)
    # own-class: the spoof sample only sees the spoof caption, at cos −1: d = 1 (clamped to 1 − 1e-6 in the log).
    own = rs2_distance(embedding, labels, captions, caption_labels, "own-class")
    assert own.tolist() == pytest.approx([d_live, 1.0])
    assert float(rs2_align_loss(embedding, labels, captions, caption_labels, "own-class")) == pytest.approx(
        -(math.log(1 - d_live) + math.log(1 - 1e-6)) / 2, rel=1e-5)


def test_rs2_distance_lies_in_zero_one_and_the_loss_stays_finite():
    torch.manual_seed(2)
    captions = torch.randn(6, 16)
    embedding = torch.cat([torch.randn(30, 16), captions[:2], -captions[2:4]])  # on and opposite captions
    labels = torch.randint(0, 2, (34,))
    caption_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    for mode in ("over-all", "own-class"):
        d = rs2_distance(embedding, labels, captions, caption_labels, mode)
        assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
        embedding.requires_grad_(True)
        loss = rs2_align_loss(embedding, labels, captions, caption_labels, mode)
        loss.backward()
        assert math.isfinite(float(loss.detach())) and bool(torch.isfinite(embedding.grad).all())
        embedding = embedding.detach()
    with pytest.raises(FasdError, match="rs2-min"):
        rs2_distance(embedding, labels, captions, caption_labels, "nearest")


def test_rs2_is_computed_in_float32_under_autocast():
    torch.manual_seed(4)
    embedding, captions = torch.randn(8, 64), torch.randn(6, 64)
    labels, caption_labels = torch.randint(0, 2, (8,)), torch.tensor([0, 0, 0, 1, 1, 1])
    expected = rs2_align_loss(embedding, labels, captions, caption_labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = rs2_align_loss(embedding, labels, captions, caption_labels)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(float(expected), rel=1e-6)


def test_the_student_loss_module_exports_the_same_rs2_function():
    assert student_losses.rs2_align_loss is rs2_align_loss


def test_rs2_classifier_loss_is_the_mean_over_visual_and_caption_embeddings():
    torch.manual_seed(6)
    head = RS2Head(4)
    depths = [torch.randn(3, 4), torch.randn(3, 4)]
    labels, captions, caption_labels = torch.tensor([0, 1, 1]), torch.randn(2, 4), torch.tensor([0, 1])

    def nll(e, y):  # −[y·log(1 − p_spoof) + (1 − y)·log p_spoof] of the shared head
        p_spoof = float(torch.softmax(head(e[None]).detach(), dim=1)[0, 0])
        return -(y * math.log(1 - p_spoof) + (1 - y) * math.log(p_spoof))

    terms = [nll(v[i], int(labels[i])) for v in depths for i in range(3)]
    terms += [nll(captions[k], int(caption_labels[k])) for k in range(2)]
    with torch.no_grad():
        parts = rs2_losses(head, depths, labels, captions, caption_labels, "over-all", rs2=True)
        plain = rs2_losses(head, depths, labels, captions, caption_labels, "over-all", rs2=False)
    assert float(parts["cls"]) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert float(plain["cls"]) == pytest.approx(sum(terms[:6]) / 6, rel=1e-5)
    expected_align = sum(float(rs2_align_loss(v, labels, captions, caption_labels)) for v in depths) / 2
    assert float(parts["align"]) == pytest.approx(expected_align, rel=1e-6)
    assert float(parts["total"]) == pytest.approx(float(parts["cls"]) + expected_align, rel=1e-6)
    assert float(plain["total"]) == float(plain["cls"])


# ---------------------------------------------------------------- U-DSA

def _randomise(module: torch.nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.3)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("exit", ["v0", "v1"])
def test_udsa_follows_the_u_shaped_recurrence(skip, exit):
    udsa = UDSA(width=6, depth=3, hidden=5, skip=skip, exit=exit)
    _randomise(udsa, 3)
    v0 = torch.randn(4, 6)
    adapt = [(lambda m: (lambda x, m=m: x + m(x)) if skip else m)(m) for m in udsa.adapt]
    remap = list(udsa.remap) if exit == "v0" else [None, *udsa.remap]  # remap[i] is Remap_i
    a1 = adapt[0](v0)
    a2 = adapt[1](a1)
    a3 = adapt[2](a2)
    u3 = a3  # the deepest layer has no Remap
    u2 = a2 + remap[2](u3)
    u1 = a1 + remap[1](u2)
    expected = (u1, u2, u3)
    if exit == "v0":  # paper B Fig. 6: v'0 = v0 + Remap_0(v'1), one Remap per layer
        expected = (v0 + remap[0](u1), *expected)
    assert len(udsa.remap) == (3 if exit == "v0" else 2)
    outputs = udsa(v0)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want)


def test_udsa_with_skips_starts_as_the_identity_and_depth_zero_is_the_identity():
    v0 = torch.randn(3, 8)
    for got in UDSA(8, depth=7)(v0):
        torch.testing.assert_close(got, v0)
    identity = UDSA(8, depth=0)
    assert [t is v0 for t in identity(v0)] == [True] and not list(identity.parameters())


# ---------------------------------------------------------------- captions

def test_captions_are_the_papers_24_plus_24_ending_with_flips_prompts(tmp_path):
    captions = default_captions()
    assert [len(captions["spoof"]), len(captions["live"])] == [24, 24]
    assert captions["spoof"][-6:] == list(FLIP_SPOOF_PROMPTS) and captions["live"][-6:] == list(FLIP_LIVE_PROMPTS)
    assert captions["spoof"][0] == "This is a photo of a spoof face"
    assert "This is a photo of an adversarial face mask" in captions["spoof"]
    assert captions["live"][17] == "This is a photo of a credible face"
    assert len(set(captions["spoof"] + captions["live"])) == 48
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"spoof": ["a fake face"], "live": ["a real face", "a true face"]}))
    assert flatten_captions(load_captions(path)) == (["a fake face", "a real face", "a true face"], [0, 1, 1])
    path.write_text(json.dumps({"spoof": ["a fake face"]}))
    with pytest.raises(FasdError, match="spoof"):
        load_captions(path)


# ---------------------------------------------------------------- the teacher

def _images(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, 3, size, size, generator=generator) for m in MODALITIES}


def test_teacher_outputs_and_zero_shot_start_against_clips_own_towers():
    clip = small_clip()
    reference = copy.deepcopy(clip)
    teacher = build_mmda_teacher(clip, default_captions(), MMDASettings(udsa_depth=3)).eval()
    images = _images(4, 64, 0)
    with torch.no_grad():
        out = teacher(images, domains=torch.tensor([0, 0, 1, 1]))
        sentences, labels = flatten_captions(default_captions())
        text = F.normalize(reference.encode_text(open_clip.tokenize(sentences)), dim=-1)
    assert out["logits"].shape == (4, 2) and out["feature"].shape == (4, 32) and out[CAPTION_COS].shape == (4, 48)
    assert len(out["depth_embeddings"]) == 4  # exit v'0 and depths 1-3
    torch.testing.assert_close(out["feature"].norm(dim=1), torch.ones(4))
    torch.testing.assert_close(out[CAPTION_COS], out["feature"] @ text.t(), atol=1e-5, rtol=1e-5)
    assert teacher.caption_labels.tolist() == labels == [0] * 24 + [1] * 24
    # Fresh MD2A / U-DSA are the identity, so the feature is CLIP's mean CLS embedding of the three modalities
    # and the classifier is CLIP's zero-shot classifier on the caption centroids.
    with torch.no_grad():
        clip_embedding = sum(reference.visual(images[m]) for m in MODALITIES) / 3
    torch.testing.assert_close(out["feature"], F.normalize(clip_embedding, dim=-1), atol=1e-5, rtol=1e-5)
    centroids = torch.stack([F.normalize(text[torch.tensor(labels) == c].mean(0), dim=0) for c in (0, 1)])
    torch.testing.assert_close(out["logits"], reference.logit_scale.exp() * out["feature"] @ centroids.t(),
                               atol=1e-4, rtol=1e-4)


def test_teacher_partner_rule_and_missing_modalities():
    teacher = build_mmda_teacher(small_clip(), default_captions(), MMDASettings(udsa_depth=2)).eval()
    _randomise(teacher.fusion, 5)
    images = _images(3, 64, 1)
    with torch.no_grad():
        alone = teacher(images)["logits"]  # inference: each sample its own partner
        torch.testing.assert_close(teacher(images, domains=torch.tensor([0, 1, 2]))["logits"], alone)
        assert not torch.allclose(teacher(images, domains=torch.tensor([0, 0, 0]))["logits"], alone, atol=1e-4)
        mask = torch.tensor([[True, True, False]] * 3)  # IR missing: its pixels must not matter
        other_ir = {**images, "ir": torch.randn(3, 3, 64, 64)}
        torch.testing.assert_close(teacher(images, mask)["logits"], teacher(other_ir, mask)["logits"])
        with pytest.raises(FasdError, match="none of its modalities"):
            teacher(images, torch.zeros(3, 3, dtype=torch.bool))


def test_teacher_on_the_shipped_tiny_clip():
    teacher = build_mmda_teacher(random_clip(TINY_ARCH), default_captions()).eval()
    with torch.no_grad():
        out = teacher(_images(2, 224, 2), domains=torch.tensor([0, 0]))
    assert out["logits"].shape == (2, 2) and out["feature"].shape == (2, 128)
    assert len(out["depth_embeddings"]) == 8  # exit v'0 and depths 1-7


@pytest.mark.parametrize("settings", [MMDASettings(md2a=False, rs2=False, udsa_depth=0),
                                      MMDASettings(rs2_min="own-class", udsa_depth=2)])
def test_every_switch_builds_and_trains(settings):
    teacher = build_mmda_teacher(small_clip(), default_captions(), settings)
    out = teacher(_images(4, 64, 3), domains=torch.tensor([0, 1, 0, 1]))
    parts = teacher.loss(out, torch.tensor([0, 1, 1, 0]))
    parts["total"].backward()
    assert (float(parts["align"].detach()) == 0.0) == (not settings.rs2)
    assert all(p.grad is not None for p in teacher.head.parameters())


# ---------------------------------------------------------------- fine-tuning

def _toy_pack(path, domain: int, frames: int = 16, size: int = 32) -> HDF5FrameSource:
    """Separable toy frames: live bright with a depth ramp, spoof dark with flat depth and bright IR."""
    rng = np.random.default_rng(domain)
    labels = np.arange(frames) % 2
    ramp = np.linspace(0, 255, size, dtype=np.float32)[None, :, None]
    rgb = np.where(labels[:, None, None, None] == 1, 200, 50) + rng.integers(0, 30, (frames, size, size, 3))
    depth = np.where(labels[:, None, None, None] == 1, ramp, 128.0) + domain * 10
    ir = np.where(labels[:, None, None, None] == 1, 60, 220) + rng.integers(0, 20, (frames, size, size, 3))
    as_u8 = lambda a: np.clip(np.broadcast_to(a, (frames, size, size, 3)), 0, 255).astype(np.uint8)  # noqa: E731
    with PackWriter(path, f"d{domain}", size, "toy", "none", modalities=MODALITIES) as writer:
        writer.append(as_u8(rgb), [f"f{domain}-{i}" for i in range(frames)], labels, ["train"] * frames,
                      [""] * frames, [""] * frames, depth=as_u8(depth), ir=as_u8(ir))
    return HDF5FrameSource(path, f"d{domain}")


def _fixed_batch(sources) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    items = [ModalityFrames(s, np.arange(8), 64, d, augment=False)[i] for d, s in enumerate(sources) for i in range(8)]
    pixels, mask, labels, domains, _ = (torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(5))
    return modality_batch(pixels, torch.device("cpu")), mask, labels, domains


def test_finetune_lowers_the_loss_and_the_checkpoint_reads_back_identically(tmp_path):
    sources = [_toy_pack(tmp_path / f"d{d}.h5", d) for d in range(2)]
    images, mask, labels, domains = _fixed_batch(sources)
    settings = MMDASettings(udsa_depth=2, rs2_min="over-all")
    clip = small_clip()
    before = build_mmda_teacher(copy.deepcopy(clip), default_captions(), settings).eval()
    teacher, summary = finetune_mmda(sources, tmp_path / "mmda.pt", clip=clip, settings=settings, epochs=4,
                                     batch_size=8, lr=1e-3, device="cpu", log=lambda _: None)
    after = load_mmda_teacher(tmp_path / "mmda.pt")
    with torch.no_grad():
        loss_before = float(before.loss(before(images, mask, domains), labels)["total"])
        loss_after = float(after.loss(after(images, mask, domains), labels)["total"])
        for key, value in teacher(images, mask).items():
            loaded = after(images, mask)[key]
            for got, expected in zip(loaded if isinstance(loaded, list) else [loaded],
                                     value if isinstance(value, list) else [value]):
                assert torch.equal(got, expected), key
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after, summary["history"])
    assert after.settings == settings and after.caption_texts == default_captions()
    assert summary["draws_per_epoch"] == 32 and len(summary["history"]) == 4


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(FasdError, match="does not exist"):
        load_mmda_teacher(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "flip.pt")
    with pytest.raises(FasdError, match="not an MMDA checkpoint"):
        load_mmda_teacher(tmp_path / "flip.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(FasdError, match="cannot read"):
        load_mmda_teacher(tmp_path / "junk.pt")
