"""M&Ms (Campello et al., TMI 2021; https://www.ub.edu/mnms/) short-axis cine MRI as 2-D slices.

Layout of the public release (the DGNet and MedSAM loaders read the same)::

    ROOT/<any .csv with columns "External code", "Vendor", "ED", "ES">   (the vendor table)
    ROOT/Training/Labeled/<CODE>/<CODE>_sa.nii.gz       4-D (H, W, Z, T) cine volume
    ROOT/Training/Labeled/<CODE>/<CODE>_sa_gt.nii.gz    4-D labels, non-zero only at ED and ES
    ROOT/Validation/<CODE>/...   ROOT/Testing/<CODE>/...  (same two files per subject)

``Vendor`` A..D = Siemens, Philips, GE, Canon; ``ED`` / ``ES`` are 0-based frame indices.
Every slice of the ED and ES frames whose ground truth is not empty becomes one sample
(labels 1 LV, 2 MYO, 3 RV). Each frame volume is scaled to [0, 1] by its 0.5 / 99.5
percentiles (design choice, not from the paper). Subjects are split per vendor by
:func:`emclip.data.splits.mms_split_of`. Read with nibabel.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emclip.data.imageio import resize_pair
from emclip.data.splits import mms_split_of

CSV_COLUMNS = ("External code", "Vendor", "ED", "ES")
NIFTI_SUFFIXES = ("_sa.nii.gz", "_sa.nii")


def find_vendor_table(root: Path) -> Path:
    """The vendor CSV directly under ``root`` (any name), identified by its columns."""
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        if all(col in header for col in CSV_COLUMNS):
            return path
    raise FileNotFoundError(
        f"No M&Ms vendor table in {root}: expected a .csv with columns {', '.join(CSV_COLUMNS)} "
        "(e.g. '201014_M&Ms_Dataset_Information_-_opendataset.csv' from the M&Ms download). "
        "Copy it to the data root (see data/README.md)."
    )


def read_vendor_table(root: Path) -> dict[str, dict]:
    """{subject code: {"vendor": "A".."D", "ED": int, "ES": int}} from the vendor CSV."""
    path = find_vendor_table(root)
    table = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                table[row["External code"].strip()] = {"vendor": row["Vendor"].strip(), "ED": int(row["ED"]),
                                                        "ES": int(row["ES"])}
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {line}: cannot read ED/ES frame numbers ({err}). "
                                 "Fix or remove that row.") from err
    return table


def find_subjects(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """{code: (image path, ground-truth path or None)} for every ``<CODE>_sa.nii(.gz)`` under root."""
    found = {}
    for suffix in NIFTI_SUFFIXES:
        for image in sorted(root.rglob(f"*{suffix}")):
            code = image.name[: -len(suffix)]
            gt = image.with_name(f"{code}{suffix.replace('_sa', '_sa_gt')}")
            found.setdefault(code, (image, gt if gt.exists() else None))
    return found


def load_nifti(path: Path) -> np.ndarray:
    """The data array of a NIfTI file; RuntimeError naming the file when nibabel cannot read it."""
    import nibabel as nib

    try:
        return np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # nibabel raises several types (ImageFileError, EOFError, zlib.error)
        raise RuntimeError(f"Cannot read NIfTI file {path}: {err}. Download it again.") from err


@lru_cache(maxsize=256)
def pixel_spacing(image_path: Path) -> tuple[float, float]:
    """In-plane spacing (mm) along the first two array axes of a NIfTI volume, from its header."""
    import nibabel as nib

    try:
        zooms = nib.load(str(image_path)).header.get_zooms()
    except Exception as err:
        raise RuntimeError(f"Cannot read the NIfTI header of {image_path}: {err}. Download it again.") from err
    return float(zooms[0]), float(zooms[1])


@lru_cache(maxsize=4)
def _frames(image_path: Path, gt_path: Path, ed: int, es: int) -> dict:
    """{phase: (image (H, W, Z) float32 in [0, 1], labels (H, W, Z) int64)} of one subject."""
    volume, labels = load_nifti(image_path), load_nifti(gt_path)
    if volume.shape != labels.shape or volume.ndim != 4:
        raise ValueError(
            f"Shape mismatch: {image_path} has shape {volume.shape} but {gt_path} has {labels.shape}; "
            "both must be the same 4-D (H, W, Z, T) cine volume. Re-download the subject."
        )
    out = {}
    for phase, frame in (("ED", ed), ("ES", es)):
        if not 0 <= frame < volume.shape[3]:
            raise ValueError(f"{image_path}: {phase} frame {frame} from the vendor table is outside 0.."
                             f"{volume.shape[3] - 1}. Check the CSV row of this subject.")
        lab = np.rint(labels[..., frame]).astype(np.int64)
        if lab.min() < 0 or lab.max() > 3:
            raise ValueError(f"{gt_path}: unexpected label values {np.unique(lab)[:8].tolist()} at {phase}; "
                             "M&Ms labels are 0 background, 1 LV, 2 MYO, 3 RV.")
        img = volume[..., frame].astype(np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        out[phase] = (np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0), lab)
    return out


class MMsDataset(Dataset):
    """Labelled ED/ES slices of one M&Ms vendor and split; sample contract (docs/architecture.md).

    Each sample also carries ``spacing``: float32 (2,) pixel size in mm (rows, columns) after the
    resize, from the NIfTI header, so that HD95 / ASSD on real MRI come out in mm
    (:func:`emclip.evaluation.evaluate_model` uses it).
    """

    def __init__(self, root: Path, domain: str, split: str, size: int = 128):
        self.root, self.domain, self.split, self.size = Path(root), domain, split, int(size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"M&Ms root {self.root} does not exist. Set EMCLIP_DATA_DIR or root=.")
        table = read_vendor_table(self.root)
        subjects = find_subjects(self.root)
        if not subjects:
            raise FileNotFoundError(f"No <CODE>_sa.nii.gz volumes under {self.root}; unpack the M&Ms "
                                    "Training/Validation/Testing folders there (see data/README.md).")
        self.slices: list[tuple[str, str, int]] = []
        self.subjects = {}
        for code, (image, gt) in subjects.items():
            info = table.get(code)
            if info is None or info["vendor"] != domain or gt is None or mms_split_of(code) != split:
                continue
            self.subjects[code] = (image, gt, info["ED"], info["ES"])
            for phase, (_, lab) in _frames(image, gt, info["ED"], info["ES"]).items():
                self.slices += [(code, phase, z) for z in range(lab.shape[2]) if lab[..., z].any()]

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict:
        code, phase, z = self.slices[index]
        image, gt, ed, es = self.subjects[code]
        img, lab = _frames(image, gt, ed, es)[phase]
        timg, tmask = resize_pair(img[..., z], lab[..., z], self.size)
        # the slice was resized to size x size: each output pixel spans (original extent / size) mm
        rows_mm, cols_mm = pixel_spacing(image)
        spacing = torch.tensor([rows_mm * img.shape[0] / self.size, cols_mm * img.shape[1] / self.size],
                               dtype=torch.float32)
        return {"image": timg, "mask": tmask, "domain": self.domain, "id": f"mms-{code}-{phase}-z{z:02d}",
                "spacing": spacing}

    def __repr__(self) -> str:
        return (f"MMsDataset(root={str(self.root)!r}, domain={self.domain!r}, split={self.split!r}, "
                f"subjects={len(self.subjects)}, slices={len(self)})")
