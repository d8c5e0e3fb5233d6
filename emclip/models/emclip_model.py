"""EM-CLIP: frozen CLIP image encoder -> EM aggregation -> text-guided pixel decoder.

Follows the paper's description (arXiv 2509.08570, abstract; see docs/architecture.md):
    * a CLIP foundation model encodes the image; its image tower stays frozen (optionally the
      last blocks train, ``encoder.trainable_last_blocks``);
    * EM aggregation (EMANet's EMAU, :class:`emclip.em.EMAggregation`) clusters the deepest
      features into K compact semantic centres and rebuilds the features from them;
    * a text-guided pixel decoder (:class:`emclip.decoder.TextGuidedDecoder`) matches pixels
      with the CLIP text embeddings of the class prompts.

Design choices, not from the paper (each a key of the model config, ``configs/emclip.json``):
    * the deepest CLIP level goes through a 1x1 conv "neck" to the decoder width before EM
      (EM on a 48-256 wide space instead of CLIP's 768 keeps it cheap);
    * ``em``: K bases, T iterations, lambda, momentum, the norm after the EM unit (GroupNorm by
      default because batches are small), ``input_norm`` (L2 before EM, so lambda is a vMF
      concentration) and ``backprop`` (``"last"``: the last EM round carries gradient;
      ``"none"``: EMANet exactly). With ``enabled = false`` (the -EM ablation) a same-shape
      residual block (:class:`emclip.em.ResidualBlock`) replaces the EM unit, so the ablation
      removes the EM iterations and nothing else;
    * ``text``: ``source`` (CLIP text embeddings, or learned queries for the -text ablation),
      ``projection`` of the text to the decoder width (``mlp``, ``linear``, ``fixed``),
      ``background`` (guidance also attends to a background prompt), ``tie_centres`` (the class
      embeddings are matched to the image's EM centres, :class:`emclip.decoder.CentreTextMatching`);
    * the class text embeddings are computed once at construction (prompt ensembling) and stored
      as a buffer, so the text tower is not kept in memory and the checkpoint holds them.

Shapes: ``forward(images (B, 3, H, W) in [0, 1])`` -> logits (B, R, H, W);
``forward_parts(images)`` also returns the encoder levels and the :class:`~emclip.em.EMOutput`.
"""

from __future__ import annotations

import torch
from torch import nn

from emclip.decoder import TextGuidedDecoder
from emclip.em import EMAggregation, ResidualBlock
from emclip.models.base import SegmentationModel
from emclip.models.clip_tower import build_clip_encoder, class_text
from emclip.tasks import Task, get_task


class EMCLIP(SegmentationModel):
    """EM-CLIP and its ablations; every setting comes from ``config`` (see the module docstring).

    Attributes:
        encoder: the frozen :class:`~emclip.clip.CLIPDenseEncoder`.
        neck: 1x1 conv, deepest CLIP level -> decoder width C.
        em: the :class:`~emclip.em.EMAggregation` unit, or ``None`` (-EM ablation).
        residual: the same-shape :class:`~emclip.em.ResidualBlock` of the -EM ablation, else ``None``.
        text_embeddings: buffer (G, E) of CLIP class embeddings, or ``None`` (-text ablation,
            ``class_queries`` (G, E) learned instead); G = regions + background when
            ``text.background`` or multiclass, else the logit channels.
        clip_note: one line saying which CLIP weights run.
    """

    def __init__(self, task: Task | str, config: dict):
        super().__init__(task, config)
        task = get_task(task)
        em_cfg, text_cfg, dec = config["em"], config["text"], config["decoder"]
        self.encoder, bundle = build_clip_encoder(config)
        self.clip_note = bundle.note
        self.size_divisor = self.encoder.input_multiple
        width = dec["channels"][0]
        self.neck = nn.Conv2d(self.encoder.out_channels[-1], width, 1)
        self.em, self.residual = None, None
        if em_cfg["enabled"]:
            self.em = EMAggregation(width, num_bases=em_cfg["bases"], iters=em_cfg["iters"], lam=em_cfg["lam"],
                                    momentum=em_cfg["momentum"], eval_iters=em_cfg["eval_iters"],
                                    norm=em_cfg["norm"], input_norm=em_cfg["input_norm"],
                                    backprop_last_step=em_cfg["backprop"] == "last")
        else:
            self.residual = ResidualBlock(width, norm=em_cfg["norm"], input_norm=em_cfg["input_norm"])
        background = text_cfg["background"]
        rows = task.output_rows if background else list(range(task.num_outputs))
        embed_dim = self.encoder.embed_dim
        if text_cfg["source"] == "clip":
            self.register_buffer("text_embeddings", class_text(bundle, task, background))
            self.class_queries = None
        else:  # "EM-CLIP without text": learned class queries of the same shape
            self.text_embeddings = None
            count = len(task.guidance_names) if background else task.num_outputs
            self.class_queries = nn.Parameter(torch.randn(count, embed_dim) * embed_dim**-0.5)
        self.decoder = TextGuidedDecoder(
            in_channels=[*self.encoder.out_channels[:-1], width],
            text_dim=embed_dim,
            num_classes=len(self.class_embeddings()),
            reduction=self.encoder.reduction,
            channels=dec["channels"],
            stem_channels=dec["stem_channels"],
            stem_input=dec["stem_input"],
            embed_dim=dec["embed_dim"],
            text_guidance=dec["text_guidance"],
            text_projection=text_cfg["projection"],
            class_rows=rows,
            centre_dim=width if text_cfg["tie_centres"] else None,
        )

    def class_embeddings(self) -> torch.Tensor:
        """(G, E): CLIP text embeddings (buffer) or learned queries (no-text ablation)."""
        return self.text_embeddings if self.class_queries is None else self.class_queries

    def forward_parts(self, images: torch.Tensor) -> dict:
        """The intermediate results of one forward pass (no padding; sides must fit the encoder).

        Returns a dict: ``features`` (list of (B, C_l, h, w)), ``deep`` (B, D, h, w) the deepest
        level after the neck and EM (or the residual block), ``em`` (:class:`~emclip.em.EMOutput`
        or ``None``) and ``logits`` (B, R, H, W).
        """
        self.check_input(images)
        feats = self.encoder(images)
        deep = self.neck(feats[-1].to(self.neck.weight.dtype))
        em_out = self.em(deep) if self.em is not None else None
        deep = em_out.features if em_out is not None else self.residual(deep).features
        shallow = [f.to(deep.dtype) for f in feats[:-1]]
        centres = em_out.bases if self.decoder.match is not None else None
        logits = self.decoder([*shallow, deep], self.class_embeddings(), images, centres=centres)
        return {"features": feats, "deep": deep, "em": em_out, "logits": logits}

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(images)["logits"]
