"""Check a downloaded real-data tree (used by ``emclip prepare``): what is there, what is missing.

The checks use the loaders' own discovery functions (:func:`emclip.data.real_fundus.scan_fundus_folder`,
:func:`emclip.data.real_mms.scan_mms`), so ``prepare`` and the loaders agree on every file: a
tree reported complete loads, and each problem listed here is one the loader would raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emclip.data.splits import FUNDUS_VAL_EVERY, SPLITS, fundus_val_rule, mms_split_rule

# Images per DoFE folder (line counts of RAM-DSIR's list files).
FUNDUS_EXPECTED = {"domain1": (50, 51), "domain2": (99, 60), "domain3": (320, 80), "domain4": (320, 80)}


@dataclass
class TreeReport:
    """Result of a tree check: ``problems`` make it incomplete, ``notes`` are informative."""

    task: str
    root: Path
    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        head = f"{self.task} data under {self.root}: {'complete' if self.ok else 'INCOMPLETE'}"
        body = [f"  {key}: {value}" for key, value in self.counts.items()]
        body += [f"  MISSING/BAD: {p}" for p in self.problems] + [f"  note: {n}" for n in self.notes]
        return [head, *body]


def check_fundus_tree(root: Path) -> TreeReport:
    """Every ``DomainK/{train,test}/ROIs/{image,mask}``: present, with images, every image with a mask,
    and train folders large enough for the validation split."""
    from emclip.data.real_fundus import DOMAIN_DIRS, fundus_root, scan_fundus_folder

    report = TreeReport("fundus", fundus_root(root))
    for domain in DOMAIN_DIRS:
        for folder, expected in zip(("train", "test"), FUNDUS_EXPECTED[domain]):
            found = scan_fundus_folder(root, domain, folder)
            if found.missing:
                report.problems.append(f"folder {found.missing[0]}")
                continue
            report.counts[f"{domain}/{folder}"] = f"{found.images} images (DoFE has {expected})"
            if not found.images:
                report.problems.append(f"no images in {found.image_dir}")
            if found.orphans:
                report.problems.append(f"{len(found.orphans)} image(s) without mask in {found.mask_dir}, "
                                       f"e.g. {found.orphans[0].name}")
            if folder == "train" and 0 < found.images < FUNDUS_VAL_EVERY:
                report.problems.append(f"{domain}/train has {found.images} image(s): too few for a validation "
                                       f"split ({fundus_val_rule()}); need at least {FUNDUS_VAL_EVERY}")
            if 0 < found.images < expected:
                report.notes.append(f"{domain}/{folder}: {found.images} of DoFE's {expected} images")
    return report


def check_mms_tree(root: Path) -> TreeReport:
    """The vendor table, the ``<CODE>_sa.nii.gz`` volumes, and labelled subjects of every vendor in
    every split (the loader refuses an empty vendor/split)."""
    from emclip.data.real_mms import VENDORS, mms_root, scan_mms

    inventory = scan_mms(mms_root(root))
    report = TreeReport("cardiac", inventory.root)
    if inventory.table_error is not None:
        report.problems.append(str(inventory.table_error))
    if not inventory.subjects:
        report.problems.append(f"no <CODE>_sa.nii.gz volumes under {inventory.root}")
    unlisted = inventory.unlisted()
    if unlisted:
        report.notes.append(f"{len(unlisted)} subject(s) not in the vendor table (ignored), e.g. {unlisted[0]}")
    for vendor in VENDORS:
        by_split = {split: len(inventory.labelled(vendor, split)) for split in SPLITS}
        report.counts[f"vendor {vendor} labelled subjects"] = (
            f"{sum(by_split.values())} (" + " / ".join(f"{s} {n}" for s, n in by_split.items()) + ")")
        if not inventory.subjects or inventory.table_error is not None:
            continue
        empty = [split for split, n in by_split.items() if n == 0]
        if len(empty) == len(SPLITS):
            report.problems.append(f"no labelled subjects (with _sa_gt.nii.gz) of vendor {vendor}")
        elif empty:
            report.problems.append(f"vendor {vendor} has no labelled subject in split(s) {', '.join(empty)} "
                                   f"({mms_split_rule()}): add subjects")
    return report


def check_tree(task: str, root) -> TreeReport:
    """Check the real-data tree of ``task`` under ``root``."""
    from emclip.tasks import get_task

    name = get_task(task).name
    root = Path(root).expanduser()
    if not root.is_dir():
        report = TreeReport(name, root)
        report.problems.append(f"root folder {root} does not exist")
        return report
    return check_fundus_tree(root) if name == "fundus" else check_mms_tree(root)
