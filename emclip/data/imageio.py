"""Reading and resizing 2-D images for the real-data loaders; every failure names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: Path, mode: str) -> np.ndarray:
    """Read ``path`` with PIL converted to ``mode`` (``"RGB"`` or ``"L"``) -> uint8 array.

    Raises RuntimeError naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise RuntimeError(
            f"Cannot read image file {path}: {err}. The file is damaged or not an image; "
            "download it again (or delete it together with its mask)."
        ) from err


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (H, W, C) or (H, W) float in [0, 1] and label map (H, W) -> tensors at (size, size).

    The image is resized bilinearly (with antialiasing when shrinking) and returned as
    float32 (3, size, size) (grey repeated); the mask by nearest neighbour, int64 (size, size).
    """
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    msk = torch.from_numpy(np.ascontiguousarray(mask)).long()
    if tuple(img.shape[-2:]) != (size, size):
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        msk = F.interpolate(msk[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
    return img.clamp(0.0, 1.0).contiguous(), msk
