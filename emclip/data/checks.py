"""Check a downloaded real-data tree (used by ``emclip prepare``): what is there, what is missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emclip.data.imageio import IMAGE_EXTENSIONS

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
    from emclip.data.real_fundus import DOMAIN_DIRS, fundus_root

    report = TreeReport("fundus", root)
    base = fundus_root(root)
    for domain, folder in DOMAIN_DIRS.items():
        for split, expected in zip(("train", "test"), FUNDUS_EXPECTED[domain]):
            rois = base / folder / split / "ROIs"
            image_dir, mask_dir = rois / "image", rois / "mask"
            if not image_dir.is_dir() or not mask_dir.is_dir():
                report.problems.append(f"folder {image_dir if not image_dir.is_dir() else mask_dir}")
                continue
            images = [p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
            masks = {p.stem for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
            orphans = sorted(p.name for p in images if p.stem not in masks)
            report.counts[f"{domain}/{split}"] = f"{len(images)} images (DoFE has {expected})"
            if not images:
                report.problems.append(f"no images in {image_dir}")
            if orphans:
                report.problems.append(f"{len(orphans)} image(s) without mask in {mask_dir}, e.g. {orphans[0]}")
            if 0 < len(images) < expected:
                report.notes.append(f"{domain}/{split}: {len(images)} of DoFE's {expected} images")
    return report


def check_mms_tree(root: Path) -> TreeReport:
    from emclip.data.real_mms import find_subjects, read_vendor_table

    base = root / "MnM" if (root / "MnM").is_dir() else root
    report = TreeReport("cardiac", base)
    try:
        table = read_vendor_table(base)
    except (FileNotFoundError, ValueError) as err:
        report.problems.append(str(err))
        table = {}
    subjects = find_subjects(base) if base.is_dir() else {}
    if not subjects:
        report.problems.append(f"no <CODE>_sa.nii.gz volumes under {base}")
    labelled = {v: 0 for v in "ABCD"}
    for code, (_, gt) in subjects.items():
        vendor = table.get(code, {}).get("vendor")
        if table and vendor is None:
            report.notes.append(f"subject {code} is not in the vendor table")
        elif gt is not None and vendor in labelled:
            labelled[vendor] += 1
    for vendor, count in labelled.items():
        report.counts[f"vendor {vendor} labelled subjects"] = count
        if subjects and table and count == 0:
            report.problems.append(f"no labelled subjects (with _sa_gt.nii.gz) of vendor {vendor}")
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
