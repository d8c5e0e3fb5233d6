"""Feature cache for a frozen encoder: compute once per (image, augmentation), reuse across epochs.

With a frozen CLIP tower the features of an image never change, so training a decoder on top
needs the encoder's forward pass only once per distinct input. ``FeatureCache`` keys each sample
by its ``id`` (the data contract's sample id), an optional augmentation id and the input size;
it keeps the features in memory (on CPU) and, with ``root=...``, also on disk under a folder
named by a fingerprint of the encoder's weights and taps, so a changed encoder never reads
stale features. Design choice, not from the paper.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from emclip.fileio import atomic_write


class FeatureCache:
    """Cached ``encoder(images)`` (or another method, e.g. ``"dense_embeddings"``) per sample.

    Args:
        encoder: a frozen module (every parameter ``requires_grad=False``), e.g. ``CLIPDenseEncoder``.
        root: optional folder for an on-disk store (``.pt`` files, loaded with ``weights_only=True``).
        method: name of the encoder method to call (``"forward"`` by default).

    Call ``cache(images (B,3,H,W), ids: list[str], aug_ids=None)``: returns what the method returns
    (a tensor or a list of tensors, batch first) on ``images.device``. ``hits``/``misses`` count samples.
    """

    def __init__(self, encoder: torch.nn.Module, root: str | os.PathLike | None = None, method: str = "forward"):
        trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
        if trainable:
            raise ValueError(
                f"FeatureCache needs a frozen encoder, but {len(trainable)} parameters are trainable "
                f"(e.g. {trainable[0]}). Build it with frozen=True and trainable_last_blocks=0, or do not cache."
            )
        if not callable(getattr(encoder, method, None)):
            raise ValueError(f"encoder has no method {method!r}; use 'forward' or 'dense_embeddings'.")
        self.encoder, self.method = encoder, method
        self.root = Path(root) if root is not None else None
        self._memory: dict[str, list[torch.Tensor]] = {}
        self._single = None  # does the method return one tensor (True) or a list (False)?
        self._fingerprint = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        """Forget the in-memory features and the counters (the disk store stays)."""
        self._memory.clear()
        self.hits = self.misses = 0

    def fingerprint(self) -> str:
        """SHA1 over the encoder's weights, its settings (taps, grid, precision: ``extra_repr``) and
        the method (names the on-disk folder)."""
        if self._fingerprint is None:
            settings = f"{self.method}|{getattr(self.encoder, 'layers', '')}|{self.encoder.extra_repr()}"
            digest = hashlib.sha1(settings.encode())
            for name, tensor in self.encoder.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @staticmethod
    def key(sample_id: str, aug_id=None, size=None) -> str:
        size_text = "x".join(str(int(s)) for s in size) if size is not None else "any"
        return f"{sample_id}|aug={aug_id if aug_id is not None else 'none'}|{size_text}"

    def _path(self, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)
        return self.root / self.fingerprint() / f"{safe}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.pt"

    def _load(self, key: str):
        if self.root is None:
            return None
        path = self._path(key)
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def _save(self, key: str, feats: list[torch.Tensor]) -> None:
        with atomic_write(self._path(key)) as tmp:
            torch.save(feats, tmp)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, ids, aug_ids=None):
        ids = [str(i) for i in ids]
        if len(ids) != images.shape[0]:
            raise ValueError(f"Got {images.shape[0]} images but {len(ids)} ids; pass one id per image.")
        aug_ids = list(aug_ids) if aug_ids is not None else [None] * len(ids)
        if len(aug_ids) != len(ids):
            raise ValueError(f"Got {len(ids)} ids but {len(aug_ids)} aug_ids.")
        keys = [self.key(i, a, images.shape[-2:]) for i, a in zip(ids, aug_ids)]
        missing = []
        for index, key in enumerate(keys):
            if key not in self._memory:
                stored = self._load(key)
                if stored is None:
                    missing.append(index)
                    continue
                self._memory[key] = stored
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            out = getattr(self.encoder, self.method)(images[missing])
            self._single = isinstance(out, torch.Tensor)
            out = [out] if self._single else list(out)
            for row, index in enumerate(missing):
                feats = [level[row].detach().cpu().clone() for level in out]
                self._memory[keys[index]] = feats
                if self.root is not None:
                    self._save(keys[index], feats)
        if self._single is None:
            self._single = len(self._memory[keys[0]]) == 1 and self.method != "forward"
        levels = zip(*(self._memory[k] for k in keys))
        stacked = [torch.stack(level).to(images.device) for level in levels]
        return stacked[0] if self._single else stacked
