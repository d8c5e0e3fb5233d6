"""Fundus-DG, the DoFE benchmark (Wang et al., TMI 2020; ``emma-sjwang/Dofe``) read from disk.

Layout (as in DoFE's preprocessed archive and RAM-DSIR's list files)::

    ROOT/Fundus/DomainK/{train,test}/ROIs/image/NAME.png
    ROOT/Fundus/DomainK/{train,test}/ROIs/mask/NAME.png     (``ROOT/DomainK/...`` works too)

K = 1 Drishti-GS, 2 RIM-ONE-r3, 3 REFUGE train (Zeiss), 4 REFUGE val (Canon). Images and masks
are paired by file stem; extensions are matched in any letter case (``g1.PNG`` pairs with
``g1.png``) by :func:`scan_fundus_folder`, the one discovery rule that the loader and
``emclip prepare`` share. Masks are grey: > 200 background, 51..200 disc rim, <= 50 cup on the
8-bit scale (DoFE ``Normalize_tf``), decoded to the labels 0 bg, 1 rim, 2 cup whatever the bit
depth of the file (:func:`emclip.data.imageio.read_grey_levels`). Split ``val`` is every 10th
image of the train folder (see :mod:`emclip.data.splits`). Images are resized to ``size``
(bilinear), masks by ``nearest-exact``. Unlike DoFE's loader, Domain4 is not centre-cropped
before resizing (design choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from emclip.data.imageio import (
    IMAGE_EXTENSIONS,
    describe_folder,
    list_image_files,
    read_grey_levels,
    read_image,
    resize_pair,
)
from emclip.data.splits import FUNDUS_VAL_EVERY, fundus_val_rule
from emclip.errors import DataError

DOMAIN_DIRS = {"domain1": "Domain1", "domain2": "Domain2", "domain3": "Domain3", "domain4": "Domain4"}
MASK_LEVELS = (0, 128, 255)
MAX_OFF_LEVEL_FRACTION = 0.05


def fundus_root(root: Path) -> Path:
    """``ROOT/Fundus`` when it exists, else ``ROOT`` (both layouts are accepted)."""
    return root / "Fundus" if (root / "Fundus").is_dir() else root


def decode_fundus_mask(grey: np.ndarray, where: str = "mask") -> np.ndarray:
    """DoFE grey mask (H, W) on the 8-bit scale -> label map (H, W) int64 (0 bg, 1 rim, 2 cup).

    Raises DataError when the values do not look like a DoFE mask (more than 5 % of the pixels
    farther than 20 grey levels from 0 / 128 / 255, values outside 0..255, or an empty disc).
    """
    grey = np.asarray(grey)
    if grey.ndim != 2:
        raise DataError(f"{where}: expected a grey (H, W) mask, got shape {grey.shape}.")
    if grey.size and (grey.min() < 0 or grey.max() > 255):
        raise DataError(f"{where}: mask values {grey.min()}..{grey.max()} are not on the 8-bit scale; read the "
                        "file with emclip.data.imageio.read_grey_levels, which rescales 16-bit masks.")
    dist = np.min(np.abs(grey.astype(np.int32)[..., None] - np.array(MASK_LEVELS)), axis=-1)
    off = float((dist > 20).mean())
    if off > MAX_OFF_LEVEL_FRACTION:
        values = np.unique(grey)
        raise DataError(
            f"{where}: unexpected mask values ({off:.0%} of pixels are not near 0/128/255; values "
            f"{values[:8].tolist()}{'...' if len(values) > 8 else ''}). Fundus-DG masks are grey PNGs with "
            "255 background, 128 disc rim, 0 cup; check that this is the mask and not the image, "
            "and that it was saved losslessly (PNG, not JPEG)."
        )
    labels = np.zeros(grey.shape, dtype=np.int64)
    labels[(grey > 50) & (grey <= 200)] = 1
    labels[grey <= 50] = 2
    if not (labels > 0).any():
        raise DataError(f"{where}: the mask has no optic disc (all pixels > 200). Check the file.")
    return labels


@dataclass
class FundusFolder:
    """What one ``DomainK/<folder>/ROIs`` holds (see :func:`scan_fundus_folder`).

    ``pairs``: (image, mask) paths sorted by image name; ``orphans``: images without a mask;
    ``missing``: the expected folders that do not exist (then nothing else is filled in).
    """

    domain: str
    folder: str
    image_dir: Path
    mask_dir: Path
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.pairs) + len(self.orphans)


def scan_fundus_folder(root: Path, domain: str, folder: str) -> FundusFolder:
    """Find the image/mask pairs of ``DomainK/<folder>/ROIs`` under ``root`` (never raises for content).

    Images are the visible files of ``image/`` with an image extension in any letter case; each
    is paired with the mask of the same stem in ``mask/`` (any image extension, any case; if
    several exist, the first in the order of ``IMAGE_EXTENSIONS`` wins).
    """
    base = fundus_root(Path(root)) / DOMAIN_DIRS[domain] / folder / "ROIs"
    found = FundusFolder(domain, folder, base / "image", base / "mask")
    found.missing = [d for d in (found.image_dir, found.mask_dir) if not d.is_dir()]
    if found.missing:
        return found
    rank = {ext: k for k, ext in enumerate(IMAGE_EXTENSIONS)}
    masks: dict[str, Path] = {}
    for mask in sorted(list_image_files(found.mask_dir), key=lambda p: rank[p.suffix.lower()]):
        masks.setdefault(mask.stem, mask)
    for image in list_image_files(found.image_dir):
        if image.stem in masks:
            found.pairs.append((image, masks[image.stem]))
        else:
            found.orphans.append(image)
    return found


def list_fundus_pairs(root: Path, domain: str, folder: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ``DomainK/<folder>/ROIs``, sorted; errors say what is missing.

    Raises FileNotFoundError for a missing folder, DataError for a folder without images or an
    image without its mask.
    """
    found = scan_fundus_folder(root, domain, folder)
    if found.missing:
        raise FileNotFoundError(
            f"Missing folder {found.missing[0]}. Fundus-DG must be laid out as "
            f"DomainK/{{train,test}}/ROIs/{{image,mask}} under {root} (see data/README.md; "
            "check it with `emclip prepare --task fundus --root DIR`)."
        )
    if not found.images:
        raise DataError(
            f"No {domain} {folder} images in {found.image_dir}: looked for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} (any letter case) and found {describe_folder(found.image_dir)}. "
            "Unpack the Fundus-DG archive there (see data/README.md)."
        )
    if found.orphans:
        image = found.orphans[0]
        raise DataError(
            f"Image {image} has no mask: expected {found.mask_dir / (image.stem + '.png')} (same stem, any image "
            f"extension) ({len(found.orphans)} of {found.images} images lack one). Restore the masks from the "
            "archive or remove those images; `emclip prepare --task fundus` lists them."
        )
    return found.pairs


def fundus_split_pairs(root: Path, domain: str, split: str) -> list[tuple[Path, Path]]:
    """The pairs of a split: test = DoFE test folder; val = every 10th train image; train = the rest.

    Raises DataError when the split is empty (a train folder of fewer than 10 images has no val
    image), stating the split rule.
    """
    if split == "test":
        return list_fundus_pairs(root, domain, "test")
    pairs = list_fundus_pairs(root, domain, "train")
    is_val = [i % FUNDUS_VAL_EVERY == FUNDUS_VAL_EVERY - 1 for i in range(len(pairs))]
    chosen = [p for p, v in zip(pairs, is_val) if v == (split == "val")]
    if not chosen:
        folder = fundus_root(Path(root)) / DOMAIN_DIRS[domain] / "train" / "ROIs" / "image"
        raise DataError(
            f"Fundus-DG {domain} has no {split} images: {fundus_val_rule()}, and {folder} holds "
            f"{len(pairs)} image(s); need at least {FUNDUS_VAL_EVERY} to train and validate. Add images "
            "(DoFE's train folders hold 50-320) or use source='synthetic'."
        )
    return chosen


def load_fundus_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair -> image (H, W, 3) float32 in [0, 1], labels (H, W) int64 (same H, W)."""
    image = read_image(image_path, "RGB").astype(np.float32) / 255.0
    grey = read_grey_levels(mask_path)
    if image.shape[:2] != grey.shape:
        raise DataError(
            f"Shape mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but its mask "
            f"{mask_path} is {grey.shape[1]}x{grey.shape[0]} (width x height). Use the mask that belongs "
            "to this image (same ROI crop)."
        )
    return image, decode_fundus_mask(grey, where=str(mask_path))


class FundusDGDataset(Dataset):
    """One domain and split of Fundus-DG; items follow the sample contract (docs/architecture.md).

    Raises on construction when the split is empty (DataError, saying why).
    """

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
