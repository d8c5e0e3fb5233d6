"""Checkers for notebook 05's exercises: the two hand-written steps of the text-guided decoder.

- ``check_film(student_fn)``: ``student_fn(x, attn, values, gamma_beta_conv)`` with features
  x (B, C, h, w), attention over classes attn (B, R, h, w), class values (R, A) and the FiLM
  1x1 conv (A -> 2C) returns the modulated features (B, C, h, w): attended text
  ``u = sum_r attn_r v_r``, ``gamma, beta = conv(u)`` split in two halves,
  ``x * (1 + gamma) + beta``. Compared with :class:`emclip.decoder.blocks.TextGuidance`.
- ``check_cosine_logits(student_fn)``: ``student_fn(pixels (B, D, h, w), classes (R, D), scale,
  bias (R,))`` returns ``scale * cos(pixel, class) + bias`` (B, R, h, w). Compared with
  :class:`emclip.decoder.blocks.CosineClassifier`.

Both return a short message when right and raise ``AssertionError`` with a hint when wrong.
"""

from __future__ import annotations

import math

import torch

from emclip.decoder.blocks import CosineClassifier, TextGuidance

__all__ = ["check_cosine_logits", "check_film"]


def check_film(student_fn, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    for b, c, r, a, (h, w) in ((2, 6, 3, 4, (3, 5)), (1, 8, 2, 8, (4, 4))):
        guide = TextGuidance(c, text_dim=5, attn_dim=a)
        with torch.no_grad():
            guide.film.weight.copy_(torch.randn(guide.film.weight.shape, generator=g))
            guide.film.bias.copy_(torch.randn(guide.film.bias.shape, generator=g))
        x, text = torch.randn(b, c, h, w, generator=g), torch.randn(r, 5, generator=g)
        with torch.no_grad():
            attn, values = guide.attention(x, text), guide.value(text)
            expected = guide(x, text)
            got = torch.as_tensor(student_fn(x.clone(), attn.clone(), values.clone(), guide.film))
        case = f"B={b}, C={c}, R={r}, A={a}, {h}x{w}"
        assert got.shape == expected.shape, f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if not torch.allclose(got, expected, atol=1e-5):
            u = torch.einsum("brhw,ra->bahw", attn, values)
            gamma, beta = guide.film(u).chunk(2, dim=1)
            if torch.allclose(got, x * gamma + beta, atol=1e-5):
                raise AssertionError(f"{case}: use x * (1 + gamma) + beta, so that gamma = 0 keeps x unchanged.")
            raise AssertionError(f"{case}: wrong values. Sum the class values weighted by attn over R, apply the "
                                 "conv, split its 2C channels into gamma (first C) and beta (last C).")
    return "FiLM modulation: correct (matches emclip.decoder.blocks.TextGuidance)."


def check_cosine_logits(student_fn, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    for b, d, r, scale in ((2, 4, 3, 10.0), (1, 16, 2, 33.0)):
        head = CosineClassifier(r, init_scale=scale)
        bias = torch.randn(r, generator=g)
        with torch.no_grad():
            head.bias.copy_(bias)
        pixels = torch.randn(b, d, 3, 4, generator=g) * 5
        classes = torch.randn(r, d, generator=g) * 3
        with torch.no_grad():
            expected = head(pixels, classes)
            got = torch.as_tensor(student_fn(pixels.clone(), classes.clone(), scale, bias.clone()))
        case = f"B={b}, D={d}, R={r}, scale={scale}"
        assert got.shape == expected.shape, f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if not torch.allclose(got, expected, atol=1e-4):
            raw = torch.einsum("bdhw,rd->brhw", pixels, classes) * scale + bias.view(1, -1, 1, 1)
            hint = ("you used dot products: L2-normalise pixels over D (dim 1) and classes over D first."
                    if torch.allclose(got, raw, atol=1e-3) else
                    f"expected scale * cosine + bias (scale {scale}, not log-scale {math.log(scale):.2f}).")
            raise AssertionError(f"{case}: wrong values; {hint}")
    return "cosine logits: correct (matches emclip.decoder.blocks.CosineClassifier)."
