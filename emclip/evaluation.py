"""Cross-domain evaluation: score a model per image and region, and run the DG protocols.

* :func:`evaluate_model` — one model on one data set: a tidy table, one row per
  (image, region), columns ``id, domain, region, dice, hd95, assd`` (:mod:`emclip.metrics`).
* :func:`run_protocol` — the experiment of a domain-generalisation paper: for every split of a
  protocol (``single-source``: train on one domain, test on the others; ``leave-one-out``:
  train on all but one), every method and every seed, train the model (or load its
  checkpoint when it exists), evaluate it on the test images of every domain, and gather one
  tidy table, one row per (method, seed, split, target domain, region). Targets the model
  trained on are kept too (``in_domain=True``): they give the in-domain vs out-of-domain gap
  of :func:`emclip.reports.domain_gap_table`.

The test set of a domain is the same for every split, method and seed (data seed 0), so
differences between methods are differences between models, not between test images — design
choice, not from the paper.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from emclip.metrics import METRIC_NAMES, SegmentationMetrics
from emclip.runtime import Profile, get_profile
from emclip.tasks import Task, get_task

RESULT_COLUMNS = ("task", "protocol", "split", "source_domains", "method", "seed", "target_domain",
                  "in_domain", "region", "n", *METRIC_NAMES)
TEST_DATA_SEED = 0


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def _as_loader(dataset_or_loader, batch_size: int):
    if isinstance(dataset_or_loader, torch.utils.data.DataLoader):
        return dataset_or_loader
    if isinstance(dataset_or_loader, torch.utils.data.Dataset):
        return torch.utils.data.DataLoader(dataset_or_loader, batch_size=batch_size, shuffle=False)
    raise TypeError("dataset_or_loader must be a torch Dataset of sample dicts or a DataLoader over them, "
                    f"got {type(dataset_or_loader).__name__}.")


def evaluate_model(model: torch.nn.Module, task: Task | str, dataset_or_loader, device="auto",
                   batch_size: int = 16, spacing=None, threshold: float = 0.5, one_empty: str = "diagonal",
                   progress: bool = False, amp: str | bool = "auto") -> pd.DataFrame:
    """Dice / HD95 / ASSD of ``model`` on every image and region of a data set.

    The model runs through :func:`emclip.engine.inference` (eval mode, inference mode, the kit's
    precision), as the training loop's validation does; its train/eval mode is restored.

    Args:
        model: images (B, 3, H, W) in [0, 1] -> logits (B, task.num_outputs, H, W).
        task: the task (or its name); regions come from ``task.predict_regions`` (prediction)
            and ``task.region_masks`` (ground truth).
        dataset_or_loader: a Dataset of sample dicts (``image``, ``mask``, ``domain``, ``id``)
            or a DataLoader over them (default collate).
        spacing: pixel size for the distances (``None``: pixels). A per-sample ``spacing``
            entry of the batch, when present, wins.
        threshold: sigmoid threshold of multilabel tasks.
        amp: precision (:func:`emclip.engine.precision.select_precision`).
    Returns:
        DataFrame with one row per (image, region): ``id, domain, region, dice, hd95, assd``.
    """
    from emclip.engine import run_batches

    task = get_task(task)
    loader = _as_loader(dataset_or_loader, batch_size)
    acc = SegmentationMetrics(task.region_names, spacing=spacing, one_empty=one_empty)

    def score(batch, logits):
        if not isinstance(batch, dict) or "mask" not in batch:
            raise TypeError("each batch must be a dict with 'image' (B, 3, H, W) and 'mask' (B, H, W); "
                            "use emclip.data.get_dataset / make_dataloader.")
        pred = task.predict_regions(logits, threshold).cpu()
        target = task.region_masks(task.check_mask(batch["mask"]).cpu())
        ids = [str(i) for i in batch.get("id", [])] or None
        domains = list(batch["domain"]) if "domain" in batch else None
        if "spacing" in batch:  # per-image spacing (real data): score the images one by one
            for b in range(len(pred)):
                acc.spacing = [float(s) for s in batch["spacing"][b]]
                acc.update(pred[b:b + 1], target[b:b + 1], ids=ids and ids[b:b + 1],
                           domains=domains and domains[b:b + 1])
            acc.spacing = spacing
        else:
            acc.update(pred, target, ids=ids, domains=domains)

    run_batches(model, loader, score, device, amp, progress="evaluate" if progress else None)
    return acc.to_frame()


def load_or_train(method: str, task: Task | str, train_domains: Sequence[str], profile=None, seed: int = 0,
                  source: str = "synthetic", root=None, checkpoint_path=None, progress: bool = False,
                  **model_overrides) -> tuple[torch.nn.Module, bool]:
    """The trained model: loaded from ``checkpoint_path`` when it holds a finished run, else trained.

    Training goes through :func:`emclip.engine.train_from_profile`, which writes the checkpoint
    and resumes an unfinished one (fewer steps done than it was started for). A finished
    checkpoint is used as it is, whatever step count it was trained for (e.g. notebook 04's).
    Returns ``(model, loaded)``, ``loaded`` True when nothing was trained.
    """
    from emclip import engine

    task = get_task(task)
    prof = _profile(profile)
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        from emclip.models import create_model

        model = create_model(method, task, profile=prof, **model_overrides)
        stored = engine.load_checkpoint(checkpoint_path, model)  # checks the model name and task too
        if int(stored.get("step", 0)) >= int(stored.get("meta", {}).get("steps") or prof.train_steps):
            return model.eval(), True
        del model  # unfinished run: train_from_profile resumes it
    result = engine.train_from_profile(method, task, list(train_domains), profile=prof, seed=seed, source=source,
                                       root=root, checkpoint_path=checkpoint_path, progress=progress,
                                       **model_overrides)
    return result.model, False


def find_checkpoint(directory, task: Task | str, method: str, train_domains: Sequence[str], profile=None,
                    seed: int = 0) -> Path:
    """Where the checkpoint of a run lives in ``directory`` (the file need not exist).

    Names follow :func:`emclip.engine.checkpoint_name`. The seeded name
    (``<task>_<method>_<domains>_<profile>_seed<seed>.pt``) is preferred; an existing un-seeded
    file (as a notebook may write) is used instead when its stored ``meta["seed"]`` equals ``seed``.
    """
    from emclip.engine import checkpoint_name, load_checkpoint

    task, prof, directory = get_task(task), _profile(profile), Path(directory)
    seeded = directory / checkpoint_name(task, method, list(train_domains), prof, seed)
    plain = directory / checkpoint_name(task, method, list(train_domains), prof)
    if not seeded.is_file() and plain.is_file():
        if int(load_checkpoint(plain).get("meta", {}).get("seed", -1)) == seed:
            return plain
    return seeded


def _test_sets(task: Task, domains: Sequence[str], prof, source: str, root) -> dict:
    from emclip.data import domain_datasets

    return {d: domain_datasets(task, [d], "test", prof, source=source, root=root, seed=TEST_DATA_SEED)
            for d in domains}


def summarise_images(per_image: pd.DataFrame, keys: dict) -> pd.DataFrame:
    """Per-image rows -> one row per (domain, region): metric means and ``n``, plus ``keys`` columns."""
    grouped = per_image.groupby(["domain", "region"], sort=False)
    out = grouped[list(METRIC_NAMES)].mean().join(grouped.size().rename("n")).reset_index()
    out = out.rename(columns={"domain": "target_domain"})
    for key, value in keys.items():
        out[key] = value
    return out[[c for c in RESULT_COLUMNS if c in out.columns]]


def _score_domains(model, task: Task, test_sets: dict, keys: dict, train_domains: Sequence[str], batch_size: int,
                   device) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one model on every test set: (per-domain table, per-image table), both with ``keys``."""
    tables, images = [], []
    for target, dataset in test_sets.items():
        per_image = evaluate_model(model, task, dataset, device=device, batch_size=batch_size)
        per_image["domain"] = target
        in_domain = target in train_domains
        tables.append(summarise_images(per_image, {**keys, "in_domain": in_domain}))
        images.append(per_image.assign(**keys, in_domain=in_domain))
    return pd.concat(tables, ignore_index=True), pd.concat(images, ignore_index=True)


def run_protocol(task: Task | str, protocol: str, models: Sequence[str], seeds: Sequence[int] | None = None,
                 profile=None, source: str = "synthetic", root=None, out_dir=None,
                 target_domains: Sequence[str] | None = None, progress: bool = True,
                 splits: Sequence[str] | None = None, checkpoint_dir=None, device="auto") -> pd.DataFrame:
    """Train (or load) every (split, method, seed) of a protocol and evaluate it on every domain.

    Args:
        task: ``"fundus"`` / ``"cardiac"`` or a Task.
        protocol: ``"single-source"`` or ``"leave-one-out"`` (:func:`emclip.data.get_protocol`).
        models: factory names (:func:`emclip.models.list_models`).
        seeds: training seeds (default: the profile's ``seeds``).
        profile: run profile (name or :class:`~emclip.runtime.Profile`; default ``$EMCLIP_PROFILE``).
        out_dir: where ``results.csv/.json`` (this table), ``per_image.csv/.json``, ``summary.md``
            and, unless ``checkpoint_dir`` is given, ``checkpoints/`` go. Written after every run,
            so an interrupted protocol keeps what it finished. ``None``: nothing written and no
            checkpoint reused.
        target_domains: domains to evaluate on (default: all of the task's).
        splits: names of the protocol's splits to run (default: all).
        checkpoint_dir: where checkpoints are looked for and written (default ``out_dir/checkpoints``);
            pass ``emclip.runlog.results_dir("checkpoints")`` to share notebook 04's (see
            :func:`find_checkpoint`).
    Returns:
        Tidy DataFrame, one row per (method, seed, split, target domain, region), columns
        ``task, protocol, split, source_domains, method, seed, target_domain, in_domain, region,
        n, dice, hd95, assd`` (metric means over the domain's test images).
    """
    from emclip import reports
    from emclip.data import get_protocol

    task = get_task(task)
    prof = _profile(profile)
    seeds = list(prof.seeds if seeds is None else seeds)
    models = list(models)
    if not models or not seeds:
        raise ValueError(f"run_protocol needs at least one model and one seed, got models={models}, seeds={seeds}.")
    all_splits = get_protocol(task, protocol)
    if splits is not None:
        unknown = sorted(set(splits) - {s.name for s in all_splits})
        if unknown:
            raise ValueError(f"unknown splits {unknown} for protocol {protocol!r}; valid: {[s.name for s in all_splits]}.")
        all_splits = [s for s in all_splits if s.name in set(splits)]
    targets = [task.check_domain(d) for d in (target_domains or task.domains)]
    out = Path(out_dir) if out_dir is not None else None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else (out / "checkpoints" if out else None)
    test_sets = _test_sets(task, targets, prof, source, root)
    grid = [(split, method, seed) for split in all_splits for method in models for seed in seeds]
    if progress:
        from tqdm.auto import tqdm

        grid = tqdm(grid, desc=f"{task.name} {protocol}")
    tables, images = [], []
    for split, method, seed in grid:
        if progress:
            grid.set_postfix_str(f"{split.name} {method} s{seed}")
        ckpt = None
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt = find_checkpoint(ckpt_dir, task, method, split.train_domains, prof, seed)
        model, _ = load_or_train(method, task, split.train_domains, prof, seed, source, root, ckpt)
        keys = {"task": task.name, "protocol": protocol, "split": split.name,
                "source_domains": "+".join(split.train_domains), "method": method, "seed": seed}
        table, per_image = _score_domains(model, task, test_sets, keys, split.train_domains, prof.batch_size, device)
        tables.append(table)
        images.append(per_image)
        del model
        if out is not None:
            _save(pd.concat(tables, ignore_index=True), pd.concat(images, ignore_index=True), out, reports)
    return pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]


def _save(table: pd.DataFrame, per_image: pd.DataFrame, out: Path, reports) -> None:
    table = table[list(RESULT_COLUMNS)]
    reports.save_frame(table, out, "results")
    reports.save_frame(per_image, out, "per_image")
    reports.write_report(table, out)


def _parse_checkpoint_name(path: Path) -> dict:
    """``train_domains`` and ``seed`` from a :func:`emclip.engine.checkpoint_name` file name, if it is one."""
    parts = path.stem.split("_")  # task_model_domains_profile[_seedN][_tag]
    if len(parts) not in (4, 5, 6):
        return {}
    out = {"train_domains": parts[2].split("+")}
    if len(parts) >= 5 and parts[4].startswith("seed") and parts[4][4:].isdigit():
        out["seed"] = int(parts[4][4:])
    return out


def evaluate_checkpoints(paths: Sequence[str | os.PathLike], task: Task | str, domains: Sequence[str] | None = None,
                         profile=None, source: str = "synthetic", root=None, device="auto") -> pd.DataFrame:
    """Evaluate saved checkpoints on the test images of ``domains`` (default: all).

    Each checkpoint is rebuilt with :func:`emclip.engine.load_model` (the model name and config
    stored in the file). Returns :func:`run_protocol`-style rows with ``method`` = the model name, ``split`` = the checkpoint's file stem, ``seed`` and training domains from the file's
    ``meta`` or its :func:`emclip.engine.checkpoint_name` (seed 0 and ``in_domain`` False when unknown).
    """
    from emclip import engine

    task = get_task(task)
    prof = _profile(profile)
    targets = [task.check_domain(d) for d in (domains or task.domains)]
    test_sets = _test_sets(task, targets, prof, source, root)
    tables = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist; train one with notebook 04, "
                                    "`emclip evaluate --protocol ...` or emclip.engine.train_from_profile.")
        stored = engine.load_checkpoint(path)  # the stored dict (config, task, meta); no model given
        if stored.get("task") not in (None, task.name):
            raise ValueError(f"checkpoint {path} was trained for task {stored['task']!r}, not {task.name!r}; "
                             f"pass --task {stored['task']}.")
        model = engine.load_model(path)
        meta = {**_parse_checkpoint_name(path), **stored.get("meta", {})}
        train_domains = list(meta.get("train_domains") or [])
        keys = {"task": task.name, "protocol": "checkpoint", "split": path.stem,
                "source_domains": "+".join(train_domains), "method": getattr(model, "name", path.stem),
                "seed": int(meta.get("seed", 0) or 0)}
        tables.append(_score_domains(model, task, test_sets, keys, train_domains, prof.batch_size, device)[0])
    return pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]
