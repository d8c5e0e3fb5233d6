"""Fundus-DG, the DoFE benchmark (Wang et al., TMI 2020; ``emma-sjwang/Dofe``) read from disk.

Layout (as in DoFE's preprocessed archive and RAM-DSIR's list files)::

    ROOT/Fundus/DomainK/{train,test}/ROIs/image/NAME.png
    ROOT/Fundus/DomainK/{train,test}/ROIs/mask/NAME.png     (``ROOT/DomainK/...`` works too)

K = 1 Drishti-GS, 2 RIM-ONE-r3, 3 REFUGE train (Zeiss), 4 REFUGE val (Canon). Masks are grey
PNGs: > 200 background, 51..200 disc rim, <= 50 cup (DoFE ``Normalize_tf``), decoded to the
labels 0 bg, 1 rim, 2 cup. Split ``val`` is every 10th image of the train folder (see
:mod:`emclip.data.splits`). Images are resized to ``size`` (bilinear), masks by nearest neighbour.
Unlike DoFE's loader, Domain4 is not centre-cropped before resizing (design choice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from emclip.data.imageio import IMAGE_EXTENSIONS, read_image, resize_pair
from emclip.data.splits import FUNDUS_VAL_EVERY

DOMAIN_DIRS = {"domain1": "Domain1", "domain2": "Domain2", "domain3": "Domain3", "domain4": "Domain4"}
MASK_LEVELS = (0, 128, 255)
MAX_OFF_LEVEL_FRACTION = 0.05


def fundus_root(root: Path) -> Path:
    """``ROOT/Fundus`` when it exists, else ``ROOT`` (both layouts are accepted)."""
    return root / "Fundus" if (root / "Fundus").is_dir() else root


def decode_fundus_mask(grey: np.ndarray, where: str = "mask") -> np.ndarray:
    """DoFE grey mask (H, W) uint8 -> label map (H, W) int64 (0 bg, 1 rim, 2 cup).

    Raises ValueError when the values do not look like a DoFE mask (more than 5 % of the pixels
    farther than 20 grey levels from 0 / 128 / 255, or an empty disc).
    """
    grey = np.asarray(grey)
    if grey.ndim != 2:
        raise ValueError(f"{where}: expected a grey (H, W) mask, got shape {grey.shape}.")
    dist = np.min(np.abs(grey.astype(np.int16)[..., None] - np.array(MASK_LEVELS)), axis=-1)
    off = float((dist > 20).mean())
    if off > MAX_OFF_LEVEL_FRACTION:
        values = np.unique(grey)
        raise ValueError(
            f"{where}: unexpected mask values ({off:.0%} of pixels are not near 0/128/255; values "
            f"{values[:8].tolist()}{'...' if len(values) > 8 else ''}). Fundus-DG masks are grey PNGs with "
            "255 background, 128 disc rim, 0 cup; check that this is the mask and not the image, "
            "and that it was saved losslessly (PNG, not JPEG)."
        )
    labels = np.zeros(grey.shape, dtype=np.int64)
    labels[(grey > 50) & (grey <= 200)] = 1
    labels[grey <= 50] = 2
    if not (labels > 0).any():
        raise ValueError(f"{where}: the mask has no optic disc (all pixels > 200). Check the file.")
    return labels


def _find_mask(mask_dir: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        candidate = mask_dir / f"{stem}{ext}"
        if candidate.exists():
            return candidate
    return None


def list_fundus_pairs(root: Path, domain: str, folder: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ``DomainK/<folder>/ROIs``, sorted; errors name what is missing."""
    base = fundus_root(root) / DOMAIN_DIRS[domain] / folder / "ROIs"
    image_dir, mask_dir = base / "image", base / "mask"
    for needed in (image_dir, mask_dir):
        if not needed.is_dir():
            raise FileNotFoundError(
                f"Missing folder {needed}. Fundus-DG must be laid out as "
                f"DomainK/{{train,test}}/ROIs/{{image,mask}} under {root} (see data/README.md; "
                "check it with `emclip prepare --task fundus --root DIR`)."
            )
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}. "
                                "Unpack the Fundus-DG archive there (see data/README.md).")
    pairs = []
    for image in images:
        mask = _find_mask(mask_dir, image.stem)
        if mask is None:
            raise FileNotFoundError(
                f"Image {image} has no mask: expected {mask_dir / (image.stem + '.png')}. "
                "Restore the mask from the archive or remove the image."
            )
        pairs.append((image, mask))
    return pairs


def fundus_split_pairs(root: Path, domain: str, split: str) -> list[tuple[Path, Path]]:
    """The pairs of a split: test = DoFE test folder; val = every 10th train image; train = the rest."""
    if split == "test":
        return list_fundus_pairs(root, domain, "test")
    pairs = list_fundus_pairs(root, domain, "train")
    is_val = [i % FUNDUS_VAL_EVERY == FUNDUS_VAL_EVERY - 1 for i in range(len(pairs))]
    return [p for p, v in zip(pairs, is_val) if v == (split == "val")]


def load_fundus_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair -> image (H, W, 3) float32 in [0, 1], labels (H, W) int64 (same H, W)."""
    image = read_image(image_path, "RGB").astype(np.float32) / 255.0
    grey = read_image(mask_path, "L")
    if image.shape[:2] != grey.shape:
        raise ValueError(
            f"Shape mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but its mask "
            f"{mask_path} is {grey.shape[1]}x{grey.shape[0]} (width x height). Use the mask that belongs "
            "to this image (same ROI crop)."
        )
    return image, decode_fundus_mask(grey, where=str(mask_path))


class FundusDGDataset(Dataset):
    """One domain and split of Fundus-DG; items follow the sample contract (docs/architecture.md)."""

    def __init__(self, root: Path, domain: str, split: str, size: int = 128):
        self.root, self.domain, self.split, self.size = Path(root), domain, split, int(size)
        self.pairs = fundus_split_pairs(self.root, domain, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.pairs[index]
        image, labels = load_fundus_pair(image_path, mask_path)
        img, msk = resize_pair(image, labels, self.size)
        return {"image": img, "mask": msk, "domain": self.domain,
                "id": f"fundus-{self.domain}-{image_path.parent.parent.parent.name}-{image_path.stem}"}

    def __repr__(self) -> str:
        return f"FundusDGDataset(root={str(self.root)!r}, domain={self.domain!r}, split={self.split!r}, n={len(self)})"
