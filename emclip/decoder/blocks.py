"""Small building blocks of the text-guided pixel decoder.

Shapes: feature maps are (B, C, h, w); class (text) embeddings are (R, D), one row per class,
shared by every image of the batch, or (B, R, D) when they are adapted per image
(:class:`CentreTextMatching`).

Nothing here is from the EM-CLIP paper (its method section was not available): these are the
generic pieces a CLIPSeg / DenseCLIP / tqdm-style decoder is built from, written out by hand
because the cross-attention + FiLM step is what the lesson is about.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels``.

    design choice, not from the paper: GroupNorm instead of BatchNorm, so that the small
    batches of the CPU profiles and single-source DG training do not depend on batch
    statistics (and DDP needs no SyncBN).
    """
    groups = math.gcd(channels, 8)
    return nn.GroupNorm(groups, channels)


def _per_image(equation: str, table: torch.Tensor) -> str:
    """``equation`` for a shared (R, .) table, or with a batch index for a per-image (B, R, .) one."""
    if table.ndim == 2:
        return equation
    operands, out = equation.split("->")
    first, second = operands.split(",")
    return f"{first},b{second}->{out}"


class ConvNormAct(nn.Sequential):
    """Conv(k x k) -> GroupNorm -> GELU: (B, C_in, h, w) -> (B, C_out, h / stride, w / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            group_norm(out_channels),
            nn.GELU(),
        )


def local_contrast_normalise(image: torch.Tensor, window: int | None = None, eps: float = 0.05) -> torch.Tensor:
    """(B, C, H, W) -> same shape: each channel minus its local mean, over its local spread.

    ``x' = (x - m) / sqrt(v + eps**2)`` with ``m`` and ``v`` the mean and variance over a
    ``window`` x ``window`` box (default: about 1/8 of the shorter side, odd, at least 3; edges
    reflected). ``eps`` (in image units) keeps flat regions from amplifying noise. A gain and an
    offset per channel leave the output unchanged up to the eps term.
    """
    if window is None:
        window = max(3, (min(image.shape[-2:]) // 8) | 1)
    pad = window // 2
    def box(t):
        return F.avg_pool2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), window, stride=1)
    mean = box(image)
    centred = image - mean
    return centred / torch.sqrt(box(centred * centred) + eps**2)


class ConvStem(nn.Module):
    """A light convolutional stem on the input image: fine detail the 1/16 ViT grid loses.

    ``forward(image (B, 3, H, W))`` -> list of features, entry ``i`` of shape
    (B, channels[i], H / 2**(i+1), W / 2**(i+1)) (strides 2, 4, 8, ...).

    design choice, not from the paper (the paper's decoder is not described in detail): the
    stride-2 3x3 convolutions play the role of the high-resolution skip path of a U-Net.

    ``input_norm`` says what the stem sees: ``"centre"`` the image minus 0.5; ``"standardise"``
    each image and channel standardised over its pixels (an instance normalisation of the input,
    as IBN-Net uses against appearance shift), scaled to a spread of 0.25; ``"local"`` each
    channel standardised over a window of about 1/8 of the image side (local contrast
    normalisation, :func:`local_contrast_normalise`): gain, offset and a slowly varying
    illumination are removed, edges and texture stay, so the stem supplies *where* boundaries are
    and the encoder *what* they bound. The stem reads raw pixels, so with ``"centre"`` a scanner's
    colour and contrast reach the decoder past the frozen encoder; a design choice, not from the
    paper.
    """

    INPUT_NORMS = ("centre", "standardise", "local")

    def __init__(self, channels: tuple[int, ...] | list[int], in_channels: int = 3, input_norm: str = "centre"):
        super().__init__()
        if input_norm not in self.INPUT_NORMS:
            raise ValueError(f"input_norm={input_norm!r}; valid: {', '.join(self.INPUT_NORMS)}.")
        self.input_norm = input_norm
        stages, prev = [], in_channels
        for ch in channels:
            stages.append(nn.Sequential(ConvNormAct(prev, ch, 3, stride=2), ConvNormAct(ch, ch, 3)))
            prev = ch
        self.stages = nn.ModuleList(stages)
        self.channels = list(channels)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.input_norm == "standardise":
            mean = image.mean(dim=(2, 3), keepdim=True)
            std = image.std(dim=(2, 3), keepdim=True)
            x = (image - mean) / (std + 1e-3) * 0.25
        elif self.input_norm == "local":
            x = local_contrast_normalise(image) * 0.25
        else:
            x = image - 0.5  # centre [0, 1] images
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class TextGuidance(nn.Module):
    """Pixels attend to the class text embeddings; the attended text modulates them (FiLM).

    ``forward(x (B, C, h, w), text (R, D))`` -> (B, C, h, w):

    1. query ``q = W_q x`` per pixel (A channels), keys ``k = W_k t`` and values ``v = W_v t``
       per class (A channels);
    2. ``a = softmax_R(q . k / sqrt(A))`` (B, R, h, w) — which class each pixel looks like;
    3. attended text ``u = sum_r a_r v_r`` (B, A, h, w);
    4. FiLM: ``gamma, beta = W_f u``, ``x <- x * (1 + gamma) + beta``.

    Follows the paper's description (text embeddings guide the pixel features of the decoder);
    the exact form — single-head cross-attention, FiLM as in CLIPSeg, the zero-initialised
    FiLM projection so that training starts from the identity — is a design choice, not from
    the paper.
    """

    def __init__(self, channels: int, text_dim: int, attn_dim: int | None = None):
        super().__init__()
        attn_dim = attn_dim or min(channels, text_dim)
        self.query = nn.Conv2d(channels, attn_dim, 1)
        self.key = nn.Linear(text_dim, attn_dim)
        self.value = nn.Linear(text_dim, attn_dim)
        self.film = nn.Conv2d(attn_dim, 2 * channels, 1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.scale = attn_dim**-0.5

    def attention(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Attention of each pixel over the R classes: (B, R, h, w), sums to 1 over R.

        ``text`` (R, D) or (B, R, D)."""
        q = self.query(x)
        k = self.key(text)
        return torch.einsum(_per_image("bahw,ra->brhw", k), q, k).mul(self.scale).softmax(dim=1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), text (R, D) or (B, R, D) -> (B, C, h, w)."""
        attn = self.attention(x, text)
        values = self.value(text)
        attended = torch.einsum(_per_image("brhw,ra->bahw", values), attn, values)
        gamma, beta = self.film(attended).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class CosineClassifier(nn.Module):
    """Logits from the cosine similarity of pixel and class embeddings.

    ``forward(pixels (B, D, h, w), classes (R, D) or (B, R, D))`` -> (B, R, h, w) with
    ``logit_r = exp(s) * cos(pixel, class_r) + b_r``.

    Follows the paper's description (the region logit is the similarity of a pixel embedding
    and that region's text embedding); the learnable temperature ``s`` (CLIP's logit scale,
    clamped to <= 100) and the per-class bias ``b`` are design choices, not from the paper.
    """

    def __init__(self, num_classes: int, init_scale: float = 10.0, max_scale: float = 100.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.max_log_scale = math.log(max_scale)

    def forward(self, pixels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        pixels = F.normalize(pixels, dim=1)
        classes = F.normalize(classes, dim=-1)
        cos = torch.einsum(_per_image("bdhw,rd->brhw", classes), pixels, classes)
        scale = self.log_scale.clamp(max=self.max_log_scale).exp()
        return scale * cos + self.bias.view(1, -1, 1, 1)


class CentreTextMatching(nn.Module):
    """Each class finds its EM centres in the image, and its embedding moves towards them.

    ``forward(text (G, D), centres (B, C, K))`` -> per-image class embeddings (B, G, D):

    1. queries ``q = W_q t`` per class, keys ``k = W_k mu`` and values ``v = W_v mu`` per centre;
    2. ``s = softmax_K(q . k / sqrt(A))`` (B, G, K): which of this image's K centres belong to
       each class (its text-matched centres);
    3. ``t_g <- t_g + sum_k s_gk v_k``.

    The text acts as a fixed anchor that labels the image's own clusters, and the class
    embedding follows the clusters when a new scanner moves them. ``W_v`` starts at zero, so
    training starts from the untied model. Design choice, not from the paper (the abstract says
    the decoder uses compact semantic centres and text, not how they meet).
    """

    def __init__(self, centre_dim: int, text_dim: int, attn_dim: int | None = None):
        super().__init__()
        attn_dim = attn_dim or min(centre_dim, text_dim)
        self.query = nn.Linear(text_dim, attn_dim)
        self.key = nn.Linear(centre_dim, attn_dim)
        self.value = nn.Linear(centre_dim, text_dim)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        self.scale = attn_dim**-0.5

    def attention(self, text: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """(B, G, K): each class's attention over the image's centres, sums to 1 over K."""
        k = self.key(centres.transpose(1, 2))  # (B, K, A)
        return torch.einsum("ga,bka->bgk", self.query(text), k).mul(self.scale).softmax(dim=2)

    def forward(self, text: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        attn = self.attention(text, centres)
        matched = torch.einsum("bgk,bkd->bgd", attn, self.value(centres.transpose(1, 2)))
        return text.unsqueeze(0) + matched
