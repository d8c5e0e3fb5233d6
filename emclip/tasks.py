"""The two segmentation tasks: what is segmented, how it is labelled, which domains exist.

Fundus optic disc / cup (the DoFE Fundus-DG benchmark):
    label map 0 background, 1 disc rim, 2 cup. Regions ``disc`` (labels 1, 2) and ``cup``
    (label 2). Mode ``multilabel``: the model predicts R = 2 sigmoid channels ``[disc, cup]``,
    the disc channel includes the cup (as DoFE's ``to_multilabel``).
Cardiac short-axis cine MRI (M&Ms):
    label map 0 background, 1 LV, 2 MYO, 3 RV. Mode ``multiclass``: the model predicts
    R = 4 softmax channels ``[background, LV, MYO, RV]``.

Text: ``task.prompts()`` gives the class prompts of the logit channels (background first when
multiclass); ``task.guidance_prompts()`` those of background + every region in both modes, the
classes the decoder's text guidance attends to (so that a fundus background pixel has a class of
its own to attend to, although fundus logits are disc and cup only).

Shapes: a label map is (H, W) or (B, H, W) int64; region masks are (R, H, W) or (B, R, H, W)
bool, R = ``len(task.regions)``; logits are (B, C, H, W), C = ``task.num_outputs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MULTILABEL = "multilabel"  # independent sigmoid per region; regions may overlap (disc contains cup)
MULTICLASS = "multiclass"  # softmax over background + regions; regions are disjoint


@dataclass(frozen=True)
class Region:
    """One evaluated region: its name, the label values it covers and its text descriptions."""

    name: str
    labels: tuple[int, ...]
    descriptions: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """A segmentation task. See the module docstring for the label conventions."""

    name: str
    mode: str
    label_names: dict[int, str]
    regions: tuple[Region, ...]
    domains: tuple[str, ...]
    domain_names: dict[str, str]
    templates: tuple[str, ...]
    background_descriptions: tuple[str, ...]
    modality: str

    # ----- sizes -------------------------------------------------------------------------
    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    @property
    def num_labels(self) -> int:
        """Number of values in the label map (background included)."""
        return len(self.label_names)

    @property
    def num_outputs(self) -> int:
        """Channels of the model's logits: R (multilabel) or R + 1 (multiclass, background first)."""
        return len(self.regions) + (1 if self.mode == MULTICLASS else 0)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The name of each logit channel, in order."""
        names = self.region_names
        return ("background", *names) if self.mode == MULTICLASS else names

    # ----- text prompts ------------------------------------------------------------------
    def class_descriptions(self) -> list[tuple[str, ...]]:
        """For each logit channel, the descriptions of its class (background first if multiclass)."""
        descs = [r.descriptions for r in self.regions]
        return [self.background_descriptions, *descs] if self.mode == MULTICLASS else descs

    def _fill(self, descriptions: list[tuple[str, ...]]) -> list[list[str]]:
        return [[t.format(d) for t in self.templates for d in descs] for descs in descriptions]

    def prompts(self) -> list[list[str]]:
        """For each logit channel, every template filled with every description.

        CLIP's prompt ensembling averages the text embeddings of these sentences per class.
        """
        return self._fill(self.class_descriptions())

    @property
    def guidance_names(self) -> tuple[str, ...]:
        """The classes text guidance attends to: ``("background", *region_names)`` in both modes."""
        return ("background", *self.region_names)

    def guidance_prompts(self) -> list[list[str]]:
        """Prompts of :attr:`guidance_names` (equal to :meth:`prompts` for a multiclass task)."""
        return self._fill([self.background_descriptions, *[r.descriptions for r in self.regions]])

    @property
    def output_rows(self) -> list[int]:
        """Where each logit channel sits among :attr:`guidance_names` (multilabel: 1..R, multiclass: 0..R)."""
        first = 1 if self.mode == MULTILABEL else 0
        return list(range(first, first + self.num_outputs))

    # ----- label conversions -------------------------------------------------------------
    def check_domain(self, domain: str) -> str:
        if domain not in self.domains:
            raise ValueError(
                f"Unknown domain {domain!r} for task {self.name!r}. Valid domains: {', '.join(self.domains)}."
            )
        return domain

    def check_mask(self, mask: torch.Tensor, where: str = "mask") -> torch.Tensor:
        """Raise a clear error if ``mask`` holds values that are not labels of this task."""
        if mask.dtype.is_floating_point:
            raise TypeError(f"{where}: a label map must be an integer tensor, got {mask.dtype}.")
        if mask.numel():
            lo, hi = int(mask.min()), int(mask.max())
            if lo < 0 or hi >= self.num_labels:
                raise ValueError(
                    f"{where}: label values must lie in 0..{self.num_labels - 1} for task {self.name!r} "
                    f"({self.label_names}), found min {lo}, max {hi}. Check the task or the mask decoding."
                )
        return mask

    def region_masks(self, label_map: torch.Tensor) -> torch.Tensor:
        """Label map (..., H, W) -> bool region masks (..., R, H, W)."""
        return torch.stack([torch.isin(label_map, torch.tensor(r.labels, device=label_map.device))
                            for r in self.regions], dim=-3)

    def targets(self, label_map: torch.Tensor) -> torch.Tensor:
        """The training target for the logits: float (B, R, H, W) for multilabel, the label map for multiclass."""
        return self.region_masks(label_map).float() if self.mode == MULTILABEL else label_map.long()

    def predict_regions(self, logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Logits (B, C, H, W) -> bool region masks (B, R, H, W)."""
        if logits.ndim != 4 or logits.shape[1] != self.num_outputs:
            raise ValueError(
                f"Expected logits of shape (B, {self.num_outputs}, H, W) for task {self.name!r}, "
                f"got {tuple(logits.shape)}."
            )
        if self.mode == MULTILABEL:
            return torch.sigmoid(logits) > threshold
        return self.region_masks(logits.argmax(dim=1))

    def predict_labels(self, logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Logits (B, C, H, W) -> label map (B, H, W) int64."""
        if self.mode == MULTICLASS:
            self.predict_regions(logits)  # shape check
            return logits.argmax(dim=1)
        regions = self.predict_regions(logits, threshold)
        labels = torch.zeros(regions.shape[0], *regions.shape[2:], dtype=torch.long, device=logits.device)
        # paint from the outermost region inwards: disc (1, 2) first, then cup (2)
        for index, region in enumerate(self.regions):
            labels[regions[:, index]] = min(region.labels)
        return labels


FUNDUS = Task(
    name="fundus",
    mode=MULTILABEL,
    label_names={0: "background", 1: "disc rim", 2: "cup"},
    regions=(
        Region("disc", (1, 2), ("optic disc", "optic nerve head")),
        Region("cup", (2,), ("optic cup", "pale central cup of the optic disc")),
    ),
    domains=("domain1", "domain2", "domain3", "domain4"),
    domain_names={
        "domain1": "Drishti-GS",
        "domain2": "RIM-ONE-r3",
        "domain3": "REFUGE train (Zeiss)",
        "domain4": "REFUGE val (Canon)",
    },
    templates=("a fundus photograph of the {}.", "a retinal image showing the {}.", "the {} in a colour fundus image."),
    background_descriptions=("retina", "retinal background"),
    modality="colour fundus photograph (optic-disc-centred ROI)",
)

CARDIAC = Task(
    name="cardiac",
    mode=MULTICLASS,
    label_names={0: "background", 1: "LV", 2: "MYO", 3: "RV"},
    regions=(
        Region("LV", (1,), ("left ventricle", "left ventricular blood pool")),
        Region("MYO", (2,), ("myocardium", "left ventricular myocardium")),
        Region("RV", (3,), ("right ventricle", "right ventricular blood pool")),
    ),
    domains=("A", "B", "C", "D"),
    domain_names={"A": "Siemens", "B": "Philips", "C": "GE", "D": "Canon"},
    templates=("a cardiac MRI showing the {}.", "a short-axis cine MR image of the {}.", "the {} in a heart MRI slice."),
    background_descriptions=("background", "surrounding tissue"),
    modality="short-axis cine cardiac MRI (grey, repeated to 3 channels)",
)

TASKS: dict[str, Task] = {"fundus": FUNDUS, "cardiac": CARDIAC}


def list_tasks() -> list[str]:
    return list(TASKS)


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (``"fundus"`` or ``"cardiac"``); a Task passes through."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower()
    if key not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Valid tasks: {', '.join(TASKS)}.")
    return TASKS[key]
