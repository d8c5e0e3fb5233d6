"""Multi-centre data: synthetic fundus / cardiac domains, Fundus-DG and M&Ms loaders, DG splits.

Entry points (docs/architecture.md)::

    get_dataset(task, domain, split="train", source="synthetic", size=128, seed=0, root=None, n=None)
    domain_datasets(task, domains, split, profile, source="synthetic", root=None, seed=0)
    make_dataloader(datasets_or_dataset, batch_size, shuffle, augment=False, seed=0, num_workers=0,
                    drop_last=False, device=None, rank=None, world_size=1)
    get_protocol(task, "single-source" | "leave-one-out") -> list[DomainSplit]

A sample is ``{"image": float32 (3, H, W) in [0, 1], "mask": int64 (H, W), "domain": str, "id": str}``.

The data pipeline: ``domain_datasets`` renders each synthetic split once into a uint8
:class:`TensorStore` (:func:`render_store` does it for any dataset); ``make_dataloader`` returns a
:class:`BatchLoader` whose workers stay alive across epochs and whose batches are converted and
augmented (:class:`Augment`, seeded per batch) on the training ``device``.
"""

from emclip.data.augment import Augment
from emclip.data.loaders import domain_datasets, get_dataset, make_dataloader
from emclip.data.pipeline import BatchLoader
from emclip.data.splits import PROTOCOLS, SOURCES, SPLITS, DomainSplit, get_protocol
from emclip.data.store import TensorStore, render_store
from emclip.data.styles import STYLES, DomainStyle, get_style, style_table
from emclip.data.synthetic import SyntheticDataset, render_sample

__all__ = [
    "PROTOCOLS",
    "SOURCES",
    "SPLITS",
    "STYLES",
    "Augment",
    "BatchLoader",
    "DomainSplit",
    "DomainStyle",
    "SyntheticDataset",
    "TensorStore",
    "domain_datasets",
    "get_dataset",
    "get_protocol",
    "get_style",
    "make_dataloader",
    "render_sample",
    "render_store",
    "style_table",
]
