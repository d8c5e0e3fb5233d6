"""Figures of the cross-domain evaluation (notebook 06).

* :func:`plot_dice_heatmap` — method x target domain heatmap of a metric (seaborn).
* :func:`plot_domain_boxplots` — per-image score distributions per domain and method.
* :func:`select_cases` + :func:`plot_case_overlays` — the best and worst test images of each
  domain, with ground-truth and predicted contours; :func:`case_figure` (the case browser) shows
  any rank of :func:`rank_images`, with the image's metrics.
* :func:`em_feature_embedding` + :func:`plot_feature_tsne` — t-SNE (scikit-learn) of source vs
  target pixel features of an EM-CLIP model before and after its EM aggregation, with the
  silhouette score of the domain labels as a number to go with the picture.

Inputs are the tables of :mod:`emclip.evaluation` (``results``: one row per method, seed,
split, target domain and region; ``per_image``: one row per image and region).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from emclip.reports import AVG, summary_stats


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def heatmap_frame(results: pd.DataFrame, metric: str = "dice", region: str = AVG, domains: str = "out") -> pd.DataFrame:
    """Method x target domain means over seeds (the numbers :func:`plot_dice_heatmap` draws)."""
    mean = summary_stats(results, metric, domains)["mean"]
    regions = set(mean.columns.get_level_values("region"))
    if region not in regions:
        raise ValueError(f"region {region!r} not in the results; valid: {sorted(regions)}.")
    frame = mean.xs(region, axis=1, level="region")
    return frame[[c for c in frame.columns if c != AVG] + [AVG]]


def plot_dice_heatmap(results: pd.DataFrame, metric: str = "dice", region: str = AVG, domains: str = "out",
                      ax=None, cmap: str | None = None):
    """Heatmap, rows = method, columns = target domain (+ ``Avg``), cells = mean over seeds."""
    import seaborn as sns

    frame = heatmap_frame(results, metric, region, domains)
    ax = _axes(ax, (1.3 * frame.shape[1] + 2, 0.5 * frame.shape[0] + 1.5))
    lower_better = metric != "dice"
    sns.heatmap(frame.astype(float), annot=True, fmt=".2f", cmap=cmap or ("rocket" if lower_better else "viridis"),
                vmin=0 if not lower_better else None, vmax=1 if not lower_better else None, ax=ax,
                cbar_kws={"label": metric})
    where = {"out": "unseen domains", "in": "training domains", "all": "all domains"}[domains]
    ax.set(title=f"{metric} ({region}) on {where}", xlabel="target domain", ylabel="method")
    return ax


def plot_domain_boxplots(per_image: pd.DataFrame, metric: str = "dice", hue: str = "method", ax=None):
    """Box plots of the per-image ``metric`` (averaged over regions) per domain, one box per ``hue``."""
    import seaborn as sns

    keys = [c for c in ("method", "seed", "split", "domain", "id") if c in per_image.columns]
    scores = per_image.groupby(keys, sort=False)[metric].mean().reset_index()
    ax = _axes(ax, (8, 3.5))
    sns.boxplot(data=scores, x="domain", y=metric, hue=hue if hue in scores else None, ax=ax, fliersize=2)
    ax.set(title=f"per-image {metric} (mean over regions)", xlabel="test domain")
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), fontsize=8, title=hue)
    return ax


def select_cases(per_image: pd.DataFrame, metric: str = "dice", n: int = 1) -> pd.DataFrame:
    """The ``n`` best and ``n`` worst images of each domain by ``metric`` averaged over regions.

    Returns columns ``domain, id, score, case`` (``case`` is ``"best"`` or ``"worst"``); for
    distances (``hd95``, ``assd``) best means lowest.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    rows = []
    for _, ordered in rank_images(per_image, metric).groupby("domain", sort=False):
        rows.append(ordered.head(n).assign(case="best"))
        rows.append(ordered.iloc[::-1].head(n).assign(case="worst"))
    return pd.concat(rows, ignore_index=True)


def rank_images(per_image: pd.DataFrame, metric: str = "dice", domain: str | None = None) -> pd.DataFrame:
    """Images ranked best first within each domain by ``metric`` averaged over regions.

    Returns columns ``domain, id, score`` (one row per image; only ``domain``'s images when given;
    ties broken by id). For distances (``hd95``, ``assd``) best means lowest.
    """
    if domain is not None:
        if domain not in set(per_image["domain"]):
            raise ValueError(f"domain {domain!r} not in the table; valid: {sorted(set(per_image['domain']))}.")
        per_image = per_image[per_image["domain"] == domain]
    scores = per_image.groupby(["domain", "id"], sort=False)[metric].mean().rename("score").reset_index()
    order = {d: i for i, d in enumerate(dict.fromkeys(scores["domain"]))}
    scores = scores.assign(_order=scores["domain"].map(order))
    ordered = scores.sort_values(["_order", "score", "id"], ascending=[True, metric != "dice", True])
    return ordered.drop(columns="_order").reset_index(drop=True)


def case_figure(per_image: pd.DataFrame, models, datasets, task, method: str, domain: str, rank: int = 0,
                metric: str = "dice", seed: int | None = None, device="cpu"):
    """The case browser of notebook 06: the ``rank``-th best image (0 = best) of ``method`` on ``domain``.

    Args:
        per_image: the tidy per-image table of :func:`emclip.evaluation.run_protocol` (columns
            ``method, seed, domain, id, region, dice, hd95, assd``).
        models: ``{method: model}``; datasets: ``{domain: Dataset}`` (the test sets scored in ``per_image``).
        seed: which seed's rows; ``None``: the first seed of ``method`` in the table.
    Returns the Figure of :func:`plot_case_overlays` for that image, its metrics per region in the title.
    """
    methods = list(dict.fromkeys(per_image["method"]))
    if method not in methods:
        raise ValueError(f"method {method!r} not in the table; valid: {methods}.")
    rows = per_image[per_image["method"] == method]
    seed = rows["seed"].iloc[0] if seed is None else seed
    rows = rows[rows["seed"] == seed]
    ranked = rank_images(rows, metric, domain)
    if not 0 <= rank < len(ranked):
        raise ValueError(f"rank {rank} out of range: {method} on {domain} has {len(ranked)} images (0..{len(ranked) - 1}).")
    case = ranked.iloc[[rank]].assign(case=f"rank {rank + 1}/{len(ranked)}")
    data = datasets[domain] if isinstance(datasets, dict) else datasets
    fig = plot_case_overlays(models[method], task, data, case, device=device, max_cols=1)
    scores = rows[rows["id"] == case["id"].item()]
    lines = [f"{method}, rank {rank + 1} of {len(ranked)} by {metric}", "solid: ground truth, dashed: prediction"]
    lines += [f"{r.region}: Dice {r.dice:.3f}  HD95 {r.hd95:.1f}  ASSD {r.assd:.1f}" for r in scores.itertuples()]
    fig.set_size_inches(3.8, 3.0 + 0.2 * len(lines))
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout()
    return fig


def _sample_by_id(datasets, wanted: set[str]) -> dict:
    found = {}
    for dataset in datasets:
        for index in range(len(dataset)):
            sample = dataset[index]
            if str(sample["id"]) in wanted:
                found[str(sample["id"])] = sample
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"ids {sorted(missing)[:5]} not found in the given datasets; pass the test sets the "
                         "per-image table was computed on.")
    return found


def plot_case_overlays(model, task, datasets, cases: pd.DataFrame, device="cpu", max_cols: int = 4):
    """Image with ground truth (solid) and prediction (dashed) contours of each region, per case.

    Args:
        model: the evaluated model (run through :func:`emclip.engine.predict_logits`); task: its task.
        datasets: the test data set(s) that hold the cases' ids (one Dataset or a list).
        cases: output of :func:`select_cases`.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from emclip.engine import predict_logits
    from emclip.tasks import get_task

    task = get_task(task)
    datasets = datasets if isinstance(datasets, (list, tuple)) else [datasets]
    samples = _sample_by_id(datasets, set(map(str, cases["id"])))
    ncols = min(max_cols, len(cases))
    nrows = int(np.ceil(len(cases) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, (_, case) in zip(axes.flat, cases.iterrows()):
        sample = samples[str(case["id"])]
        pred = task.predict_regions(predict_logits(model, sample["image"][None], device))[0].numpy()
        target = task.region_masks(sample["mask"]).numpy()
        ax.imshow(sample["image"].permute(1, 2, 0).numpy())
        for r, name in enumerate(task.region_names):
            for mask, style in ((target[r], "solid"), (pred[r], "dashed")):
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[colours[r]], linestyles=style, linewidths=1.2)
            ax.plot([], [], color=colours[r], label=name)
        ax.set_title(f"{case['domain']} {case['case']}: {case['score']:.2f}", fontsize=9)
        ax.axis("off")
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("solid: ground truth, dashed: prediction", fontsize=9)
    fig.tight_layout()
    return fig


def em_features(model, images: torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """An EM-CLIP model's features at the input and the output of its EM unit, both (B, D, h, w).

    The model runs its own forward through :func:`emclip.engine.predict_logits`; a forward hook
    on ``model.em`` keeps what goes in ("before": the encoder's deepest level after the neck)
    and what comes out ("after": the EM unit's features, rebuilt from the K bases). Both float32
    on the CPU. ``device``: where the model runs (default: the images' device).
    """
    from emclip.engine import predict_logits

    unit = getattr(model, "em", None)
    if unit is None:
        raise ValueError(f"model {getattr(model, 'name', type(model).__name__)!r} has no 'em' unit: the EM "
                         "feature view needs an EM-CLIP model with EM enabled (create_model('emclip', ...)).")
    seen = {}

    def keep(module, inputs, output):
        seen["before"], seen["after"] = inputs[0].float().cpu(), output.features.float().cpu()

    handle = unit.register_forward_hook(keep)
    try:
        predict_logits(model, images, images.device if device is None else device)
    finally:
        handle.remove()
    return seen["before"], seen["after"]


def em_feature_embedding(model, datasets: dict, source_domains: Sequence[str], n_images: int = 8,
                         pixels_per_image: int = 48, seed: int = 0, device="cpu") -> tuple[pd.DataFrame, dict]:
    """t-SNE of pixel features of each domain, before and after EM aggregation.

    Args:
        datasets: ``{domain: Dataset}`` (e.g. the test sets); the first ``n_images`` of each are used.
        source_domains: the domains the model trained on (to label source vs target).
        pixels_per_image: feature pixels sampled at random (``seed``) per image.
    Returns:
        ``(embedding, silhouette)``: a DataFrame with columns ``x, y, domain, role`` (source /
        target) and ``stage`` (``before EM`` / ``after EM``), and the silhouette score of the
        domain labels in the original (L2-normalised) feature space per stage — higher means the
        domains sit further apart (a design choice of the kit, not from the paper).
    """
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    feats = {"before EM": [], "after EM": []}
    labels = []
    for domain, dataset in datasets.items():
        count = min(n_images, len(dataset))
        images = torch.stack([dataset[i]["image"] for i in range(count)]).to(device)
        before, after = em_features(model, images, device)
        flat = {k: v.flatten(2).transpose(1, 2).reshape(-1, v.shape[1]).cpu() for k, v in
                (("before EM", before), ("after EM", after))}
        per_image = before.shape[2] * before.shape[3]
        take = np.concatenate([i * per_image + rng.choice(per_image, min(pixels_per_image, per_image), replace=False)
                               for i in range(count)])
        for key in feats:
            feats[key].append(flat[key][take].numpy())
        labels += [domain] * len(take)
    labels = np.array(labels)
    frames, silhouette = [], {}
    for stage, chunks in feats.items():
        x = np.concatenate(chunks).astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-8
        silhouette[stage] = float(silhouette_score(x, labels)) if len(set(labels)) > 1 else float("nan")
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)
        frames.append(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "domain": labels, "stage": stage,
                                    "role": np.where(np.isin(labels, list(source_domains)), "source", "target")}))
    return pd.concat(frames, ignore_index=True), silhouette


def plot_feature_tsne(embedding: pd.DataFrame, silhouette: dict | None = None):
    """Two t-SNE panels (before / after EM), colour = domain, marker = source or target."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    stages = list(dict.fromkeys(embedding["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        sns.scatterplot(data=embedding[embedding.stage == stage], x="x", y="y", hue="domain", style="role",
                        s=10, ax=ax, legend=ax is axes[0, -1])
        title = stage if not silhouette else f"{stage} (domain silhouette {silhouette[stage]:.2f})"
        ax.set(title=title, xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize=7)
    fig.tight_layout()
    return fig
