"""Reading and resizing 2-D images for the real-data loaders; every failure names the file.

Also the one rule for finding image files in a folder (:func:`list_image_files`), shared by the
loaders and ``emclip prepare`` so that both see the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emclip.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Pillow modes of 16- and 32-bit integer grey images (16-bit PNG / TIFF open as one of these).
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is an image extension, in any letter case
    (``g1.PNG`` counts; hidden files such as macOS ``._g1.png`` do not)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (see :func:`is_image_file`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def describe_folder(folder: Path, limit: int = 5) -> str:
    """What a folder holds, for error messages: ``"3 files: a.txt, b.csv, c"`` or ``"nothing"``."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not names:
        return "nothing"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"{len(names)} entries: {', '.join(names[:limit])}{more}"


def read_image(path: Path, mode: str) -> np.ndarray:
    """Read ``path`` with PIL converted to ``mode`` (``"RGB"`` or ``"L"``) -> uint8 array (H, W[, 3]).

    Raises DataError naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"Cannot read image file {path}: {err}. The file is damaged or not an image; "
            "download it again (or delete it together with its mask)."
        ) from err


def read_grey_levels(path: Path) -> np.ndarray:
    """A grey mask file -> uint8 (H, W) on the 8-bit scale (0..255), whatever its bit depth.

    8-bit, 1-bit, palette and RGB files are converted to grey by Pillow. 16-bit files (mode
    ``I;16``/``I``) whose values exceed 255 are on the 16-bit scale (an 8-bit level v is stored as
    v x 257) and are mapped back by x 255 / 65535; 16-bit files whose values all lie in 0..255
    hold 8-bit levels and are kept as they are. Pillow's own 16 -> 8 bit conversion clips
    (128 x 257 -> 255) and would turn DoFE's disc rim into background, hence this function.

    Raises DataError naming the file when it cannot be read or its values fit no scale
    (floating-point or values above 65535).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in WIDE_GREY_MODES and mode != "F":
                return np.asarray(img.convert("L"))
            values = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"Cannot read mask file {path}: {err}. The file is damaged or not an image; "
                        "download it again.") from err
    if mode == "F" or values.min() < 0 or values.max() > 65535:
        raise DataError(
            f"{path}: a {mode} mask with values {float(values.min()):g}..{float(values.max()):g} fits neither the "
            "8-bit (0..255) nor the 16-bit (0..65535) grey scale. Save the mask as an 8-bit grey PNG.")
    if values.max() > 255:
        return np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    return values.astype(np.uint8)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (H, W, C) or (H, W) float in [0, 1] and label map (H, W) -> tensors at (size, size).

    The image is resized bilinearly (with antialiasing when shrinking) and returned as
    float32 (3, size, size) (grey repeated); the mask by ``nearest-exact``, int64 (size, size).
    Both use the half-pixel convention (pixel centres at ``(i + 0.5) * scale``), so a mask edge
    stays within half an output pixel of the image edge; plain ``nearest`` samples at
    ``i * scale`` and shifts the mask by up to one pixel against the image.
    """
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    msk = torch.from_numpy(np.ascontiguousarray(mask)).long()
    if tuple(img.shape[-2:]) != (size, size):
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        msk = F.interpolate(msk[None, None].float(), size=(size, size), mode="nearest-exact")[0, 0].long()
    return img.clamp(0.0, 1.0).contiguous(), msk
