"""EM-CLIP: frozen CLIP image encoder -> EM aggregation -> text-guided pixel decoder.

Follows the paper's description (arXiv 2509.08570, abstract; see docs/architecture.md):
    * a CLIP foundation model encodes the image; its image tower stays frozen (optionally the
      last blocks train, ``encoder.trainable_last_blocks``);
    * EM aggregation (EMANet's EMAU, :class:`emclip.em.EMAggregation`) clusters the deepest
      features into K compact semantic centres and rebuilds the features from them;
    * a text-guided pixel decoder (:class:`emclip.decoder.TextGuidedDecoder`) matches pixels
      with the CLIP text embeddings of the class prompts.

Design choices, not from the paper:
    * the deepest CLIP level goes through a 1x1 conv "neck" to the decoder width before EM
      (EM on a 64-256 wide space instead of CLIP's 768 keeps it cheap);
    * EM uses GroupNorm (``em.norm``) because batches are small;
    * the class text embeddings are computed once at construction (prompt ensembling,
      :func:`emclip.clip.class_text_embeddings`) and stored as a buffer, so the text tower is
      not kept in memory and the checkpoint holds the exact embeddings used.

Shapes: ``forward(images (B, 3, H, W) in [0, 1])`` -> logits (B, R, H, W);
``forward_parts(images)`` also returns the encoder levels and the :class:`~emclip.em.EMOutput`.
"""

from __future__ import annotations

import torch
from torch import nn

from emclip.decoder import TextGuidedDecoder
from emclip.models.base import SegmentationModel
from emclip.tasks import Task, get_task


def build_clip_encoder(config: dict, task: Task, with_text: bool = True):
    """The frozen :class:`~emclip.clip.CLIPDenseEncoder` of ``config`` and the class embeddings.

    Returns ``(encoder, text)`` with ``text`` (R, embed_dim) L2-normalised or ``None``.
    """
    from emclip.clip import CLIPDenseEncoder, class_text_embeddings, load_clip

    bundle = load_clip(config["clip_model"], config.get("clip_pretrained"), device="cpu",
                       seed=int(config.get("clip_seed", 0)))
    enc_cfg = config.get("encoder", {})
    encoder = CLIPDenseEncoder(bundle, layers=enc_cfg.get("layers"), frozen=True,
                               trainable_last_blocks=int(enc_cfg.get("trainable_last_blocks", 0)))
    text = class_text_embeddings(bundle, task).detach().float().cpu().clone() if with_text else None
    config["clip_note"] = bundle.note
    return encoder, text


class EMCLIP(SegmentationModel):
    """EM-CLIP and its ablations (``em.enabled = false``; ``text = "learned"``).

    Config keys (see ``configs/emclip.json``): ``clip_model``, ``clip_pretrained``,
    ``encoder`` {layers, trainable_last_blocks}, ``em`` {enabled, momentum, norm}, ``em_bases``,
    ``em_iters``, ``em_lam``, ``text`` (``"clip"`` or ``"learned"``), ``decoder`` {channels,
    stem_channels, embed_dim, text_guidance}.
    """

    def __init__(self, task: Task | str, config: dict):
        super().__init__(task, config)
        task = get_task(task)
        text_mode = config.get("text", "clip")
        if text_mode not in ("clip", "learned"):
            raise ValueError(f"config 'text' must be 'clip' or 'learned', got {text_mode!r}.")
        self.encoder, text = build_clip_encoder(self.config, task, with_text=text_mode == "clip")
        self.size_divisor = self.encoder.input_multiple
        dec = dict(config.get("decoder", {}))
        channels = list(dec.get("channels", [64, 48, 32]))
        width = channels[0]
        self.neck = nn.Conv2d(self.encoder.out_channels[-1], width, 1)
        em_cfg = config.get("em", {})
        self.em = None
        if em_cfg.get("enabled", True):
            from emclip.em import EMAggregation

            self.em = EMAggregation(width, num_bases=int(config["em_bases"]), iters=int(config["em_iters"]),
                                    lam=float(config["em_lam"]), momentum=float(em_cfg.get("momentum", 0.9)),
                                    norm=em_cfg.get("norm", "group"))
        embed_dim = self.encoder.embed_dim
        if text is not None:
            self.register_buffer("text_embeddings", text)
            self.class_queries = None
        else:  # "EM-CLIP without text": learned class queries of the same shape
            self.text_embeddings = None
            self.class_queries = nn.Parameter(torch.randn(task.num_outputs, embed_dim) * embed_dim**-0.5)
        self.decoder = TextGuidedDecoder(
            in_channels=[*self.encoder.out_channels[:-1], width],
            text_dim=embed_dim,
            num_classes=task.num_outputs,
            reduction=self.encoder.reduction,
            channels=channels,
            stem_channels=dec.get("stem_channels", [16, 24]),
            embed_dim=int(dec.get("embed_dim", 32)),
            text_guidance=bool(dec.get("text_guidance", True)),
        )

    def class_embeddings(self) -> torch.Tensor:
        """(R, embed_dim): CLIP text embeddings (buffer) or learned queries (no-text ablation)."""
        return self.text_embeddings if self.class_queries is None else self.class_queries

    def forward_parts(self, images: torch.Tensor) -> dict:
        """The intermediate results of one forward pass (no padding; sides must fit the encoder).

        Returns a dict: ``features`` (list of (B, C_l, h, w)), ``deep`` (B, D, h, w) the deepest
        level after the neck and EM, ``em`` (:class:`~emclip.em.EMOutput` or ``None``) and
        ``logits`` (B, R, H, W).
        """
        self.check_input(images)
        feats = self.encoder(images)
        deep = self.neck(feats[-1].to(self.neck.weight.dtype))
        em_out = self.em(deep) if self.em is not None else None
        if em_out is not None:
            deep = em_out.features
        shallow = [f.to(deep.dtype) for f in feats[:-1]]
        logits = self.decoder([*shallow, deep], self.class_embeddings(), images)
        return {"features": feats, "deep": deep, "em": em_out, "logits": logits}

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(images)["logits"]
