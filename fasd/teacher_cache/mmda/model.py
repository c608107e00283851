"""The MMDA teacher module: a CLIP ViT's visual tower shared by RGB, depth and IR, MD2A fusion, U-DSA, RS2.

    tokens_m = ln_post(ViT(image_m))            m ∈ MODALITIES, one shared tower, (N, T, W) each
    X        = [tokens_rgb; tokens_depth; tokens_ir]                (N, 3T, W)
    X        = MD2A(X, partner)                  partner: a same-domain sample (md2a.partner_index)
    v_0      = mean of the present modalities' fused CLS tokens · proj   (N, E), CLIP's own projection
    [v′_0 … v′_D] = U-DSA(v_0)                   (--udsa-exit v0; v1: [v′_1 … v′_D])
    logits   = RS2Head(v′_0),  feature = unit(v′_0),  caption_cos = feature · unit(U-DSA(captions)_0)ᵀ

Decisions where the paper is silent:

* MD2A runs once, after the ViT's last block, over all three modalities' tokens (fusing modalities and the
  same-domain partner in one attention); the embedding is CLIP's projection of the mean fused CLS token,
  so text and image live in the same E-dim space (E = 512 for ViT-B/16, the paper's embedding size).
* A missing modality (``mask`` False) is fed as whatever image the caller has (fasd feeds the all-zero
  frame) and its tokens are excluded from MD2A's keys and from the CLS mean.
* Inference (``domains=None``): every sample is its own partner.
* The text tower is frozen: the captions are encoded once when the teacher is built and kept as the
  ``captions`` buffer (unit norm, spoof captions first), so caching reads exactly the trained embeddings.
* Captions through U-DSA (``caption_udsa``, the default; paper B Appendix B passes the caption inputs through
  U-DSA): depth i's RS2 compares v′_i with the i-th U-DSA output of the caption embeddings (unit), and the
  cached ``caption_cos`` and the store's text/captions are the exit's. ``--no-caption-udsa`` (fasd 0.2)
  compares every depth with the raw caption buffer.
* Checkpoints written before these two switches existed load as what they were trained with (exit v′_1, raw
  captions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from fasd.constants import MODALITIES
from fasd.errors import FasdError
from fasd.rs2_math import RS2_MIN_MODES
from fasd.state_fit import check_state_fits
from fasd.store_schema import layout
from fasd.teacher_cache.mmda.captions import flatten_captions
from fasd.teacher_cache.mmda.md2a import FUSIONS, partner_index
from fasd.teacher_cache.mmda.rs2 import RS2Head, rs2_losses
from fasd.teacher_cache.mmda.udsa import UDSA, UDSA_EXITS

CAPTION_COS = "caption_cos"
DEPTH_EMBEDDINGS = "depth_embeddings"


@dataclass(frozen=True)
class MMDASettings:
    """The module switches (``--no-md2a``, ``--no-rs2``, ``--udsa-depth``, ``--rs2-min``, ``--udsa-exit``,
    ``--caption-udsa``)."""

    md2a: bool = True
    rs2: bool = True
    udsa_depth: int = 7
    udsa_skip: bool = True
    rs2_min: str = "over-all"
    udsa_exit: str = "v0"
    caption_udsa: bool = True

    def __post_init__(self) -> None:
        if self.udsa_depth < 0:
            raise FasdError(f"--udsa-depth must be >= 0, got {self.udsa_depth}")
        if self.udsa_exit not in UDSA_EXITS:
            raise FasdError(f"--udsa-exit must be one of {', '.join(UDSA_EXITS)}, got '{self.udsa_exit}'")
        if self.rs2_min not in RS2_MIN_MODES:
            raise FasdError(f"unknown --rs2-min '{self.rs2_min}'; valid: {', '.join(RS2_MIN_MODES)}")


def clip_config(clip: open_clip.model.CLIP) -> dict:
    """The open_clip config dict that rebuilds ``clip``'s architecture (``open_clip.model.CLIP(**config)``)."""
    visual, text = clip.visual, clip.transformer
    width = visual.conv1.out_channels
    block = visual.transformer.resblocks[0]
    return {
        "embed_dim": int(visual.proj.shape[1]),
        "quick_gelu": isinstance(block.mlp.gelu, open_clip.transformer.QuickGELU),
        "vision_cfg": {"image_size": int(visual.image_size[0]), "layers": len(visual.transformer.resblocks),
                       "width": width, "patch_size": int(visual.conv1.kernel_size[0]),
                       "head_width": width // block.attn.num_heads,
                       "mlp_ratio": block.mlp.c_fc.out_features / width},
        "text_cfg": {"context_length": int(clip.context_length), "vocab_size": int(clip.vocab_size),
                     "width": text.width, "heads": text.resblocks[0].attn.num_heads,
                     "layers": len(text.resblocks)},
    }


class MMDATeacher(nn.Module):
    """``forward(images {modality: (N, 3, S, S) CLIP-normalised}, mask (N, 3) bool | None, domains (N,) | None)``
    -> {"logits" (N, 2) [spoof, live], "feature" (N, E) unit, "caption_cos" (N, 2K),
    "depth_embeddings" [(N, E)] × max(D, 1)}.

    Keeps gradients (fine-tuning trains this module); inference callers wrap it in ``torch.inference_mode()``.
    """

    def __init__(self, visual: nn.Module, config: dict, captions: dict[str, list[str]],
                 settings: MMDASettings = MMDASettings()) -> None:
        super().__init__()
        self.visual, self.config, self.settings = visual, config, settings
        self.caption_texts = {name: list(sentences) for name, sentences in captions.items()}
        sentences, labels = flatten_captions(captions)
        embed_dim = config["embed_dim"]
        width = config["vision_cfg"]["width"]
        self.input_size = int(config["vision_cfg"]["image_size"])
        self.register_buffer("captions", torch.zeros(len(sentences), embed_dim))
        self.register_buffer("caption_labels", torch.tensor(labels, dtype=torch.long))
        self.fusion = FUSIONS[settings.md2a](width, heads=width // config["vision_cfg"]["head_width"],
                                             lambda_layer=config["vision_cfg"]["layers"] + 1)
        self.udsa = UDSA(embed_dim, settings.udsa_depth, skip=settings.udsa_skip, exit=settings.udsa_exit)
        self.head = RS2Head(embed_dim)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, S, S) -> (M, T, W): the shared visual tower's final tokens, CLS first, after ln_post."""
        visual = self.visual
        return visual.ln_post(visual.transformer(visual._embeds(images)))

    def forward(self, images: dict[str, torch.Tensor], mask: torch.Tensor | None = None,
                domains: torch.Tensor | None = None) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        n = images[MODALITIES[0]].shape[0]
        device = images[MODALITIES[0]].device
        mask = torch.ones(n, len(MODALITIES), dtype=torch.bool, device=device) if mask is None else mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise FasdError("a frame has none of its modalities; every frame needs at least one of "
                            f"{', '.join(MODALITIES)}")
        tokens = self.tokens(torch.cat([images[m] for m in MODALITIES]))
        count, width = tokens.shape[1:]
        tokens = tokens.view(len(MODALITIES), n, count, width).transpose(0, 1).reshape(n, -1, width)
        partner = torch.arange(n, device=device) if domains is None else partner_index(domains.to(device))
        fused = self.fusion(tokens, partner, mask.repeat_interleave(count, dim=1))
        weights = mask.to(fused.dtype).unsqueeze(-1)
        pooled = (fused[:, ::count] * weights).sum(dim=1) / weights.sum(dim=1)  # CLS of each modality
        depths = self.udsa(pooled @ self.visual.proj)
        feature = F.normalize(depths[0].float(), dim=-1)
        with torch.autocast(device.type, enabled=False):  # cosines in float32 whatever autocast is active
            caption_cos = feature @ self.caption_depths()[0].t()
        return {layout.LOGITS: self.head(depths[0]).float(), layout.FEATURE: feature,
                CAPTION_COS: caption_cos, DEPTH_EMBEDDINGS: depths}

    def loss(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_RS2 = L_cls + L_align at every U-DSA depth (rs2.rs2_losses); {"cls", "align", "total"}."""
        return rs2_losses(self.head, outputs[DEPTH_EMBEDDINGS], labels, self.caption_depths(), self.caption_labels,
                          self.settings.rs2_min, self.settings.rs2)

    def caption_depths(self) -> list[torch.Tensor]:
        """The unit caption embeddings each U-DSA depth's RS2 compares with, exit first: the captions through the
        U-DSA (``caption_udsa``), or the raw buffer shared by every depth ([captions])."""
        if not self.settings.caption_udsa:
            return [self.captions]
        with torch.autocast(self.captions.device.type, enabled=False):
            return [F.normalize(c.float(), dim=-1) for c in self.udsa(self.captions)]

    def checkpoint(self) -> dict:
        """Everything ``load_mmda_teacher`` needs to rebuild this module exactly."""
        return {"format": "fasd-mmda", "clip": self.config, "settings": asdict(self.settings),
                "captions": self.caption_texts,
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}


@torch.no_grad()
def build_mmda_teacher(clip: open_clip.model.CLIP, captions: dict[str, list[str]],
                       settings: MMDASettings = MMDASettings()) -> MMDATeacher:
    """An MMDA teacher around ``clip``'s visual tower; the captions are encoded once by its text tower, and the
    classifier starts as the zero-shot classifier."""
    device = next(clip.parameters()).device
    teacher = MMDATeacher(clip.visual, clip_config(clip), captions, settings).to(device)
    sentences, _ = flatten_captions(captions)
    tokens = open_clip.tokenize(sentences, context_length=clip.context_length).to(device)
    teacher.captions.copy_(F.normalize(clip.encode_text(tokens).float(), dim=-1))
    teacher.head.init_zero_shot(teacher.captions, teacher.caption_labels, float(clip.logit_scale.exp()))
    return teacher


def teacher_from_checkpoint(checkpoint: dict) -> MMDATeacher:
    """Rebuild the module a ``MMDATeacher.checkpoint()`` dict describes (architecture, switches, captions, weights)."""
    clip = open_clip.model.CLIP(**checkpoint["clip"])
    legacy = {"udsa_exit": "v1", "caption_udsa": False}  # fasd 0.2's checkpoints: what they were trained with
    teacher = MMDATeacher(clip.visual, checkpoint["clip"], checkpoint["captions"],
                          MMDASettings(**(legacy | checkpoint["settings"])))
    check_state_fits(teacher, checkpoint["state_dict"], "the mmda checkpoint", "pass a checkpoint written by "
                     "`fasd teacher-finetune --method mmda`")
    return teacher.eval()
