"""M&Ms (Campello et al., TMI 2021; https://www.ub.edu/mnms/) short-axis cine MRI as 2-D slices.

Layout of the public release (the DGNet and MedSAM loaders read the same)::

    ROOT/<any .csv with columns "External code", "Vendor", "ED", "ES">   (the vendor table)
    ROOT/Training/Labeled/<CODE>/<CODE>_sa.nii.gz       4-D (H, W, Z, T) cine volume
    ROOT/Training/Labeled/<CODE>/<CODE>_sa_gt.nii.gz    4-D labels, non-zero only at ED and ES
    ROOT/Validation/<CODE>/...   ROOT/Testing/<CODE>/...  (same two files per subject)

``Vendor`` A..D = Siemens, Philips, GE, Canon; ``ED`` / ``ES`` are 0-based frame indices.
Subject codes, vendor codes and file-name endings are matched in any letter case (codes are
used in upper case, as the release writes them). :func:`scan_mms` is the one discovery rule
that the loader and ``emclip prepare`` share.

Samples: every slice of the ED and ES frames (labels 1 LV, 2 MYO, 3 RV). The ``train`` split
keeps the slices whose ground truth is not empty; ``val`` and ``test`` keep every slice, so that
false positives on slices without a structure count in the evaluation. Each frame volume is
scaled to [0, 1] by its 0.5 / 99.5 percentiles (design choice, not from the paper). Subjects
are split per vendor by :func:`emclip.data.splits.mms_split_of`. Read with nibabel.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from emclip.data.imageio import resize_pair
from emclip.data.splits import SPLITS, mms_split_of, mms_split_rule
from emclip.errors import DataError

CSV_COLUMNS = ("External code", "Vendor", "ED", "ES")
NIFTI_SUFFIXES = ("_sa.nii.gz", "_sa.nii")
VENDORS = ("A", "B", "C", "D")


def mms_root(root: Path) -> Path:
    """``ROOT/MnM`` when it exists, else ``ROOT`` (both layouts are accepted)."""
    return root / "MnM" if (root / "MnM").is_dir() else root


def find_vendor_table(root: Path) -> Path:
    """The vendor CSV directly under ``root`` (any name, ``.csv`` in any case), identified by its columns."""
    for path in sorted(p for p in Path(root).iterdir() if p.suffix.lower() == ".csv" and p.is_file()):
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = [col.strip() for col in next(csv.reader(handle), [])]
        if all(col in header for col in CSV_COLUMNS):
            return path
    raise FileNotFoundError(
        f"No M&Ms vendor table in {root}: expected a .csv with columns {', '.join(CSV_COLUMNS)} "
        "(e.g. '201014_M&Ms_Dataset_Information_-_opendataset.csv' from the M&Ms download). "
        "Copy it to the data root (see data/README.md)."
    )


def read_vendor_table(root: Path) -> dict[str, dict]:
    """{SUBJECT CODE: {"vendor": "A".."D", "ED": int, "ES": int}} from the vendor CSV (codes upper-cased)."""
    path = find_vendor_table(root)
    table = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        for line, row in enumerate(reader, start=2):
            try:
                table[row["External code"].strip().upper()] = {
                    "vendor": row["Vendor"].strip().upper(), "ED": int(row["ED"]), "ES": int(row["ES"])}
            except (AttributeError, TypeError, ValueError) as err:
                raise DataError(f"{path}, line {line}: cannot read the subject code, vendor or ED/ES frame "
                                f"numbers ({err}). Fix or remove that row.") from err
    return table


def _nifti_code(name: str) -> tuple[str, str] | None:
    """(CODE, suffix) when ``name`` is ``<CODE>_sa.nii(.gz)`` in any letter case, else None."""
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix) and not name.startswith("."):
            return name[: -len(suffix)].upper(), suffix
    return None


def find_subjects(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """{CODE: (image path, ground-truth path or None)} for every ``<CODE>_sa.nii(.gz)`` under root.

    Names are matched in any letter case; the ground truth is ``<CODE>_sa_gt.nii(.gz)`` in the
    same folder. A code found twice keeps its first file (``.nii.gz`` before ``.nii``, then path order).
    """
    found: dict[str, tuple[Path, Path | None, int]] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):  # data folders are often symlinked
        dirs.sort()
        lower = {name.lower(): name for name in files}
        for name in sorted(files):
            match = _nifti_code(name)
            if match is None:
                continue
            code, suffix = match
            gt_name = lower.get(f"{code}{suffix.replace('_sa', '_sa_gt')}".lower())
            rank = NIFTI_SUFFIXES.index(suffix)
            if code not in found or rank < found[code][2]:
                found[code] = (Path(folder) / name, Path(folder) / gt_name if gt_name else None, rank)
    return {code: (image, gt) for code, (image, gt, _) in sorted(found.items())}


@dataclass
class MMsInventory:
    """What an M&Ms tree holds (see :func:`scan_mms`): the vendor table and the subjects on disk.

    ``table_error``: the error reading the vendor table (then ``table`` is empty).
    """

    root: Path
    table: dict[str, dict] = field(default_factory=dict)
    subjects: dict[str, tuple[Path, Path | None]] = field(default_factory=dict)
    table_error: Exception | None = None

    def labelled(self, vendor: str, split: str | None = None) -> list[str]:
        """Codes of the subjects of ``vendor`` with ground truth on disk (in ``split`` if given), sorted."""
        return [code for code, (_, gt) in self.subjects.items()
                if gt is not None and self.table.get(code, {}).get("vendor") == vendor
                and (split is None or mms_split_of(code) == split)]

    def unlisted(self) -> list[str]:
        """Codes on disk that the vendor table does not list."""
        return [code for code in self.subjects if code not in self.table] if self.table else []

    def unlabelled(self) -> list[str]:
        """Codes on disk without a ``_sa_gt`` file (e.g. ``Training/Unlabeled``)."""
        return [code for code, (_, gt) in self.subjects.items() if gt is None]

    def describe(self) -> str:
        """One sentence of what was found, for error messages."""
        per_vendor = ", ".join(f"{v} {len(self.labelled(v))}" for v in VENDORS)
        other = sorted({info["vendor"] for info in self.table.values()} - set(VENDORS))
        return (f"Found {len(self.subjects)} <CODE>_sa.nii(.gz) volume(s): labelled subjects per vendor {per_vendor}; "
                f"{len(self.unlabelled())} without ground truth; {len(self.unlisted())} not in the vendor table"
                + (f"; the table also names vendor(s) {', '.join(other)}" if other else ""))


def scan_mms(root: Path) -> MMsInventory:
    """Read the vendor table and find the subjects under ``root`` (never raises for the content)."""
    inventory = MMsInventory(Path(root))
    try:
        inventory.table = read_vendor_table(inventory.root)
    except (FileNotFoundError, DataError) as err:
        inventory.table_error = err
    inventory.subjects = find_subjects(inventory.root)
    return inventory


def load_nifti(path: Path) -> np.ndarray:
    """The data array of a NIfTI file; DataError naming the file when nibabel cannot read it."""
    import nibabel as nib

    try:
        return np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # nibabel raises several types (ImageFileError, EOFError, zlib.error)
        raise DataError(f"Cannot read NIfTI file {path}: {err}. Download it again.") from err


def file_stamp(path: Path) -> tuple[int, int]:
    """(modification time in ns, size) of a file: part of the cache keys below, so that a file
    replaced on disk (downloaded again) is read again."""
    stat = Path(path).stat()
    return stat.st_mtime_ns, stat.st_size


def nifti_geometry(image_path: Path) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    """(array shape, (spacing along axis 0, axis 1, slice spacing) in mm) from a NIfTI header."""
    return _nifti_geometry(Path(image_path), file_stamp(image_path))


@lru_cache(maxsize=256)
def _nifti_geometry(image_path: Path, stamp: tuple[int, int]) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    import nibabel as nib

    try:
        image = nib.load(str(image_path))
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except Exception as err:
        raise DataError(f"Cannot read the NIfTI header of {image_path}: {err}. Download it again.") from err
    return tuple(image.shape), (zooms + (1.0, 1.0, 1.0))[:3]


def pixel_spacing(image_path: Path) -> tuple[float, float]:
    """In-plane spacing (mm) along the first two array axes of a NIfTI volume, from its header."""
    return nifti_geometry(image_path)[1][:2]


def _check_cine(image_path: Path, gt_path: Path, image_shape: tuple, gt_shape: tuple) -> None:
    """DataError unless both files are 4-D (H, W, Z, T) volumes of the same shape."""
    for path, shape in ((image_path, image_shape), (gt_path, gt_shape)):
        if len(shape) != 4:
            raise DataError(
                f"{path} is a {len(shape)}-D volume of shape {tuple(shape)}; M&Ms short-axis files are 4-D "
                "(H, W, Z, T) cine volumes with the ED and ES frames inside (ED/ES numbers from the vendor "
                "table). Use the <CODE>_sa.nii.gz / <CODE>_sa_gt.nii.gz files of the M&Ms release, not "
                "single-frame exports (such as <CODE>_sa_ED.nii.gz)."
            )
    if tuple(image_shape) != tuple(gt_shape):
        raise DataError(
            f"Shape mismatch: {image_path} has shape {tuple(image_shape)} but {gt_path} has {tuple(gt_shape)}; "
            "both must be the same 4-D (H, W, Z, T) cine volume. Re-download the subject."
        )


def load_frames(image_path: Path, gt_path: Path, ed: int, es: int) -> dict:
    """{phase: (image (H, W, Z) float32 in [0, 1], labels (H, W, Z) int64)} of one subject (cached)."""
    return _frames(Path(image_path), Path(gt_path), int(ed), int(es), file_stamp(image_path), file_stamp(gt_path))


@lru_cache(maxsize=4)
def _frames(image_path: Path, gt_path: Path, ed: int, es: int, *stamps) -> dict:
    volume, labels = load_nifti(image_path), load_nifti(gt_path)
    _check_cine(image_path, gt_path, volume.shape, labels.shape)
    out = {}
    for phase, frame in (("ED", ed), ("ES", es)):
        if not 0 <= frame < volume.shape[3]:
            raise DataError(f"{image_path}: {phase} frame {frame} from the vendor table is outside 0.."
                            f"{volume.shape[3] - 1}. Check the CSV row of this subject.")
        lab = np.rint(labels[..., frame]).astype(np.int64)
        if lab.min() < 0 or lab.max() > 3:
            raise DataError(f"{gt_path}: unexpected label values {np.unique(lab)[:8].tolist()} at {phase}; "
                            "M&Ms labels are 0 background, 1 LV, 2 MYO, 3 RV.")
        img = volume[..., frame].astype(np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        out[phase] = (np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0), lab)
    return out


def no_subjects_error(inventory: MMsInventory, vendor: str, split: str) -> DataError:
    """The DataError for an empty (vendor, split): what was looked for, where, and what was found."""
    by_split = ", ".join(f"{s} {len(inventory.labelled(vendor, s))}" for s in SPLITS)
    return DataError(
        f"No labelled M&Ms subjects of vendor {vendor} in split '{split}' under {inventory.root}. Looked for "
        f"<CODE>_sa.nii(.gz) with <CODE>_sa_gt.nii(.gz) beside it, listed as vendor {vendor} in the vendor table; "
        f"{mms_split_rule()}. {inventory.describe()}; vendor {vendor} by "
        f"split: {by_split}. Check the table's Vendor column and the file names (`emclip prepare --task cardiac`), "
        "add subjects, or use source='synthetic'."
    )


class MMsDataset(Dataset):
    """ED/ES slices of one M&Ms vendor and split; sample contract (docs/architecture.md).

    Besides ``image``, ``mask``, ``domain`` and ``id``, each sample carries ``volume`` (str,
    ``"<CODE>-ED"`` / ``"<CODE>-ES"``), ``slice`` (int, index along the volume's third axis),
    ``spacing`` (float32 (2,): pixel size in mm along rows and columns after the resize, from
    the NIfTI header) and ``slice_thickness`` (float32 scalar: the header's third voxel size,
    the distance between slices in mm), so that per-volume 3-D scores come out in mm.

    Raises DataError on construction when the vendor has no labelled subject in ``split``.
    """

    def __init__(self, root: Path, domain: str, split: str, size: int = 128):
        self.root, self.domain, self.split, self.size = Path(root), domain, split, int(size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"M&Ms root {self.root} does not exist. Set EMCLIP_DATA_DIR or root=.")
        inventory = scan_mms(self.root)
        if inventory.table_error is not None:
            raise inventory.table_error
        if not inventory.subjects:
            raise FileNotFoundError(f"No <CODE>_sa.nii.gz volumes under {self.root}; unpack the M&Ms "
                                    "Training/Validation/Testing folders there (see data/README.md).")
        codes = inventory.labelled(domain, split)
        if not codes:
            raise no_subjects_error(inventory, domain, split)
        self.keep_empty = split != "train"
        self.slices: list[tuple[str, str, int]] = []
        self.subjects = {}
        for code in codes:
            image, gt = inventory.subjects[code]
            info = inventory.table[code]
            self.subjects[code] = (image, gt, info["ED"], info["ES"])
            if self.keep_empty:  # every slice: the headers give the count (data read when indexed)
                shape = nifti_geometry(image)[0]
                _check_cine(image, gt, shape, nifti_geometry(gt)[0])
                self.slices += [(code, phase, z) for phase in ("ED", "ES") for z in range(shape[2])]
            else:
                for phase, (_, lab) in load_frames(image, gt, info["ED"], info["ES"]).items():
                    self.slices += [(code, phase, z) for z in range(lab.shape[2]) if lab[..., z].any()]

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict:
        code, phase, z = self.slices[index]
        image, gt, ed, es = self.subjects[code]
        img, lab = load_frames(image, gt, ed, es)[phase]
        timg, tmask = resize_pair(img[..., z], lab[..., z], self.size)
        # the slice was resized to size x size: each output pixel spans (original extent / size) mm
        rows_mm, cols_mm, between_slices = nifti_geometry(image)[1]
        spacing = torch.tensor([rows_mm * img.shape[0] / self.size, cols_mm * img.shape[1] / self.size],
                               dtype=torch.float32)
        return {"image": timg, "mask": tmask, "domain": self.domain, "id": f"mms-{code}-{phase}-z{z:02d}",
                "volume": f"{code}-{phase}", "slice": z, "spacing": spacing,
                "slice_thickness": torch.tensor(between_slices, dtype=torch.float32)}

    def __repr__(self) -> str:
        return (f"MMsDataset(root={str(self.root)!r}, domain={self.domain!r}, split={self.split!r}, "
                f"subjects={len(self.subjects)}, slices={len(self)})")
