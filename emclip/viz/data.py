"""Plots for the multi-centre data (notebook 01): domain grids with mask overlays, intensity /
colour histograms per domain, and the style table as a figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from emclip.tasks import get_task

# overlay colours per label value (index 0 = background, transparent)
LABEL_COLOURS = {
    "fundus": [(0, 0, 0), (0.2, 1.0, 0.3), (0.2, 0.6, 1.0)],
    "cardiac": [(0, 0, 0), (1.0, 0.2, 0.2), (0.2, 1.0, 0.3), (0.2, 0.6, 1.0)],
}


def overlay(image: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, task: str, alpha: float = 0.4):
    """Image (3, H, W) in [0, 1] and label map (H, W) -> RGB (H, W, 3) with labels tinted."""
    img = np.asarray(image, dtype=np.float32).transpose(1, 2, 0).copy()
    lab = np.asarray(mask)
    colours = np.asarray(LABEL_COLOURS[get_task(task).name], dtype=np.float32)
    tint = colours[lab]
    sel = lab > 0
    img[sel] = (1 - alpha) * img[sel] + alpha * tint[sel]
    return np.clip(img, 0, 1)


def _samples(task, n_per_domain, size, seed, source="synthetic", root=None, split="train"):
    from emclip.data import get_dataset

    spec = get_task(task)
    return {d: [get_dataset(spec.name, d, split, source, size, seed, root, n_per_domain)[i]
                for i in range(n_per_domain)] for d in spec.domains}


def plot_domain_grid(task: str, n_per_domain: int = 2, size: int = 128, seed: int = 0, samples: dict | None = None,
                     show_mask: bool = True, source: str = "synthetic", root=None):
    """One column per domain, ``n_per_domain`` rows; masks overlaid. Returns the Figure."""
    spec = get_task(task)
    samples = samples or _samples(task, n_per_domain, size, seed, source, root)
    rows = max(len(v) for v in samples.values())
    fig, axes = plt.subplots(rows, len(samples), figsize=(2.6 * len(samples), 2.6 * rows), squeeze=False)
    for col, (domain, items) in enumerate(samples.items()):
        for row in range(rows):
            ax = axes[row, col]
            ax.axis("off")
            if row >= len(items):
                continue
            s = items[row]
            ax.imshow(overlay(s["image"], s["mask"], task) if show_mask else s["image"].permute(1, 2, 0).numpy())
            if row == 0:
                ax.set_title(f"{domain}\n{spec.domain_names.get(domain, '')}", fontsize=9)
    fig.suptitle(f"{task}: {source} domains" + (" (masks overlaid)" if show_mask else ""), fontsize=11)
    fig.tight_layout()
    return fig


def plot_intensity_histograms(task: str, n_per_domain: int = 8, size: int = 64, seed: int = 0,
                              samples: dict | None = None, bins: int = 48):
    """Per-channel (fundus R, G, B; MRI grey) intensity histograms, one line per domain."""
    spec = get_task(task)
    samples = samples or _samples(task, n_per_domain, size, seed)
    channels = ("red", "green", "blue") if spec.name == "fundus" else ("grey",)
    fig, axes = plt.subplots(1, len(channels), figsize=(4 * len(channels), 3), squeeze=False)
    edges = np.linspace(0, 1, bins + 1)
    for domain, items in samples.items():
        stack = torch.stack([s["image"] for s in items]).numpy()
        for c, name in enumerate(channels):
            hist, _ = np.histogram(stack[:, c], bins=edges, density=True)
            axes[0, c].plot((edges[1:] + edges[:-1]) / 2, hist, label=domain)
            axes[0, c].set_title(f"{name} channel")
            axes[0, c].set_xlabel("intensity")
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_style_table(task: str):
    """The style table of ``task`` rendered as a matplotlib table (for static reports)."""
    from emclip.data.styles import style_table

    table = style_table(task).drop(columns=["name"])
    fig, ax = plt.subplots(figsize=(1.1 * (len(table.columns) + 1), 0.5 + 0.35 * len(table)))
    ax.axis("off")
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in table.to_numpy()]
    widget = ax.table(cellText=cells, rowLabels=list(table.index), colLabels=list(table.columns), loc="center")
    widget.auto_set_font_size(False)
    widget.set_fontsize(7)
    ax.set_title(f"{task} domain styles")
    return fig


def plot_shift_matrix(frame, region: str | None = None, ax=None):
    """Heat map of Dice (train domain x test domain) from :func:`emclip.data.shift.pixel_segmenter_shift`."""
    sub = frame if region is None else frame[frame["region"] == region]
    table = sub.pivot_table(index="train_domain", columns="test_domain", values="dice")
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.9 * table.shape[1], 0.8 + 0.6 * table.shape[0]))
    im = ax.imshow(table.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    ax.set_xlabel("test domain")
    ax.set_ylabel("train domain")
    ax.set_title(f"pixel-classifier Dice{'' if region is None else f' ({region})'}")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax.figure


def plot_retina_reference(size: int = 128, seed: int = 0):
    """``skimage.data.retina()`` (a real colour fundus photograph, full field of view, with a
    disc-centred crop of it) next to one synthetic fundus ROI per domain."""
    from skimage.data import retina
    from skimage.transform import resize

    from emclip.data import get_dataset

    real = retina()
    h, w = real.shape[:2]
    # the optic disc of this photograph lies left of centre; crop a square ROI around it
    cy, cx, half = int(0.455 * h), int(0.16 * w), int(0.11 * w)
    crop = resize(real[cy - half:cy + half, cx - half:cx + half], (size, size), anti_aliasing=True)
    domains = get_task("fundus").domains
    fig, axes = plt.subplots(1, 2 + len(domains), figsize=(2.6 * (2 + len(domains)), 2.9))
    axes[0].imshow(resize(real, (size, size), anti_aliasing=True))
    axes[0].set_title("skimage retina()\n(full field)", fontsize=9)
    axes[1].imshow(crop)
    axes[1].set_title("its disc region\n(ROI crop)", fontsize=9)
    for ax, domain in zip(axes[2:], domains):
        ax.imshow(get_dataset("fundus", domain, "train", size=size, seed=seed, n=1)[0]["image"].permute(1, 2, 0))
        ax.set_title(f"synthetic {domain}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_batch(batch: dict, task: str, max_items: int = 8):
    """One loader batch (image (B,3,H,W), mask (B,H,W), domain, id) with masks overlaid."""
    n = min(max_items, batch["image"].shape[0])
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.5), squeeze=False)
    for k in range(n):
        axes[0, k].imshow(overlay(batch["image"][k], batch["mask"][k], task))
        axes[0, k].set_title(batch["domain"][k], fontsize=8)
        axes[0, k].axis("off")
    fig.tight_layout()
    return fig


def sample_figure(task: str, domain: str, index: int = 0, size: int = 128, show_mask: bool = True, seed: int = 0,
                  split: str = "train", source: str = "synthetic", root=None):
    """One sample of ``get_dataset(task, domain, split, source, size, seed, root)`` (the domain browser of
    notebook 01): the image, with its label map tinted when ``show_mask``. Returns the Figure.

    The title names the domain (and its centre), the sample id and the labels present.
    """
    from emclip.data import get_dataset

    spec = get_task(task)
    if isinstance(index, bool) or int(index) != index or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}.")
    dataset = get_dataset(spec.name, domain, split, source, size, seed, root, int(index) + 1)
    if index >= len(dataset):
        raise ValueError(f"index {index} out of range: {domain} {split} has {len(dataset)} samples.")
    sample = dataset[int(index)]
    fig, ax = plt.subplots(figsize=(3.4, 3.7))
    ax.imshow(overlay(sample["image"], sample["mask"], spec.name) if show_mask
              else sample["image"].permute(1, 2, 0).numpy())
    ax.axis("off")
    labels = ", ".join(spec.label_names[v] for v in torch.unique(sample["mask"]).tolist() if v > 0) or "none"
    ax.set_title(f"{domain}: {spec.domain_names.get(domain, '')}\n{sample['id']}\nlabels: {labels}", fontsize=8)
    fig.tight_layout()
    return fig
