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

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from emclip.engine.recipe import load_or_train  # noqa: F401  (notebook 06 imports it from here)
from emclip.engine.train import check_output
from emclip.errors import CheckpointError, EmclipError
from emclip.fileio import atomic_write
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


def find_checkpoint(directory, task: Task | str, method: str, train_domains: Sequence[str], profile=None,
                    seed: int = 0) -> Path:
    """Where the checkpoint of a run lives in ``directory`` (the file need not exist).

    Names follow :func:`emclip.engine.checkpoint_name` (labels for people; what a file holds is
    read from its run record). The seeded name (``<task>_<method>_<domains>_<profile>_seed<seed>.pt``)
    is preferred; an existing un-seeded file (as a notebook may write) is used instead when its
    record's training seed equals ``seed``.
    """
    from emclip.engine import checkpoint_name, read_record

    task, prof, directory = get_task(task), _profile(profile), Path(directory)
    seeded = directory / checkpoint_name(task, method, list(train_domains), prof, seed)
    plain = directory / checkpoint_name(task, method, list(train_domains), prof)
    if not seeded.is_file() and plain.is_file():
        with contextlib.suppress(CheckpointError):
            if read_record(plain)[0]["train"]["seed"] == seed:
                return plain
    return seeded


def adopt_checkpoint(run, target: Path, sources: Sequence, say=print) -> Path | None:
    """Copy into ``target`` a checkpoint of the same run found in one of ``sources`` (folders).

    ``run`` is a :class:`emclip.engine.recipe.PreparedRun`; a candidate (found with
    :func:`find_checkpoint`) is copied only when its record equals ``run.record()``; ``say``
    reports why another one was not. Returns the adopted source path, or ``None``.
    """
    from emclip.engine import read_record, record_differences

    requested = run.record()
    domains = requested["data"]["train_domains"]
    for folder in sources:
        candidate = find_checkpoint(folder, run.task, requested["model"]["name"], domains, run.profile,
                                    requested["train"]["seed"])
        if not candidate.is_file() or candidate.resolve() == Path(target).resolve():
            continue
        try:
            diffs = record_differences(read_record(candidate)[0], requested)
        except CheckpointError as err:
            say(f"not reusing {candidate}: {err}")
            continue
        if diffs:
            say(f"not reusing {candidate}: another run ({diffs[0]}{' ...' if len(diffs) > 1 else ''})")
            continue
        with atomic_write(target) as tmp:
            shutil.copyfile(candidate, tmp)
        return candidate
    return None


def _test_set(task: Task, domain: str, source: str, root, image_size: int, per_domain: int):
    """The test split of one domain (synthetic: ``per_domain`` images of data seed 0; real: all)."""
    from emclip.data import get_dataset

    return get_dataset(task, domain, "test", source, image_size, TEST_DATA_SEED, root,
                       per_domain if source == "synthetic" else None)


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
                 splits: Sequence[str] | None = None, checkpoint_dir=None, device="auto",
                 reuse_from: Sequence | None = None, overwrite: bool = False) -> pd.DataFrame:
    """Train (or reuse) every (split, method, seed) of a protocol and evaluate it on every domain.

    Args:
        task: ``"fundus"`` / ``"cardiac"`` or a Task.
        protocol: ``"single-source"`` or ``"leave-one-out"`` (:func:`emclip.data.get_protocol`).
        models: factory names (:func:`emclip.models.list_models`).
        seeds: training seeds (default: the profile's ``seeds``).
        profile: run profile (name or :class:`~emclip.runtime.Profile`; default ``$EMCLIP_PROFILE``).
        out_dir: where ``results.csv/.json`` (this table), ``per_image.csv/.json``, ``summary.md``
            and, unless ``checkpoint_dir`` is given, ``checkpoints/`` go. Checked before any
            work, written after every run, so an interrupted protocol keeps what it finished.
            ``None``: nothing written and no checkpoint reused.
        target_domains: domains to evaluate on (default: all of the task's).
        splits: names of the protocol's splits to run (default: all).
        checkpoint_dir: where checkpoints are looked for and written (default ``out_dir/checkpoints``).
            A checkpoint there is reused only when its run record equals the requested run
            (:func:`emclip.engine.load_or_train`); one of another run raises
            :class:`~emclip.errors.RunMismatchError` unless ``overwrite=True``.
        reuse_from: further folders (e.g. ``emclip.runlog.results_dir("checkpoints")``, where
            notebook 05 saves) whose checkpoint of the same run, if any, is copied into
            ``checkpoint_dir`` instead of training (:func:`adopt_checkpoint`).
    Returns:
        Tidy DataFrame, one row per (method, seed, split, target domain, region), columns
        ``task, protocol, split, source_domains, method, seed, target_domain, in_domain, region,
        n, dice, hd95, assd`` (metric means over the domain's test images).
    """
    from emclip import reports
    from emclip.data import get_protocol
    from emclip.engine import prepare_run

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
    for folder in (out, ckpt_dir):
        if folder is not None:
            check_output(folder, "dir")
    test_sets = {d: _test_set(task, d, source, root, prof.image_size, prof.test_per_domain) for d in targets}
    grid = [(split, method, seed) for split in all_splits for method in models for seed in seeds]
    if progress:
        from tqdm.auto import tqdm

        grid = tqdm(grid, desc=f"{task.name} {protocol}")
    say = (grid.write if progress else lambda *a: None)
    tables, images = [], []
    for split, method, seed in grid:
        if progress:
            grid.set_postfix_str(f"{split.name} {method} s{seed}")
        run = prepare_run(method, task, split.train_domains, prof, seed, source, root)
        ckpt = None
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt = find_checkpoint(ckpt_dir, task, method, split.train_domains, prof, seed)
            if not ckpt.is_file() and reuse_from:
                adopt_checkpoint(run, ckpt, reuse_from, say)
        model = run.train(ckpt, resume=True, overwrite=overwrite, progress=False, device=device).model
        keys = {"task": task.name, "protocol": protocol, "split": split.name,
                "source_domains": "+".join(split.train_domains), "method": method, "seed": seed}
        table, per_image = _score_domains(model, task, test_sets, keys, split.train_domains, prof.batch_size, device)
        tables.append(table)
        images.append(per_image)
        del model, run
        if out is not None:
            _save(pd.concat(tables, ignore_index=True), pd.concat(images, ignore_index=True), out, reports)
    return pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]


def _save(table: pd.DataFrame, per_image: pd.DataFrame, out: Path, reports) -> None:
    table = table[list(RESULT_COLUMNS)]
    reports.save_frame(table, out, "results")
    reports.save_frame(per_image, out, "per_image")
    reports.write_report(table, out)


def evaluate_checkpoints(paths: Sequence[str | os.PathLike], task: Task | str | None = None,
                         domains: Sequence[str] | None = None, profile=None, source: str | None = None,
                         root=None, device="auto", say=None) -> pd.DataFrame:
    """Evaluate saved checkpoints on the test images of ``domains`` (default: all), each as recorded.

    Each checkpoint is rebuilt from its run record (:func:`emclip.engine.load_run`) and scored on
    test sets made with *its* data settings: image size and per-domain count from the record,
    source and root from the record unless ``source`` / ``root`` are given (to test a model on
    another data set). ``profile`` is not used for sizes (kept so that callers that pass it keep
    working). Rows as :func:`run_protocol`'s, ``method`` = the record's model name, ``split`` =
    the checkpoint's file stem (a label), ``seed`` and ``in_domain`` from the record.

    A checkpoint that cannot be evaluated (unreadable, another task, data not found) is skipped
    with a one-line message (``say``, default: stderr); the others are kept. The returned table's
    ``attrs["skipped"]`` lists ``{"path", "error"}`` for each skipped file (the CLI exits non-zero
    then, and :func:`emclip.reports.markdown_report` lists them). When none can be evaluated,
    :class:`~emclip.errors.CheckpointError` names every file and its problem.
    """
    from emclip import engine

    task = get_task(task) if task is not None else None
    say = say or (lambda text: print(text, file=sys.stderr))
    cache, tables, skipped = {}, [], []
    for path in map(Path, paths):
        try:
            model, record = engine.load_run(path, device="cpu")
            run_task = get_task(record["task"])
            if task is not None and run_task.name != task.name:
                raise CheckpointError(f"{path} was trained for task {run_task.name!r}, not {task.name!r}; pass "
                                      f"--task {run_task.name}.")
            data = record["data"]
            if "image_size" not in data:
                raise CheckpointError(f"{path} does not record its data sizes (it was trained with train() on the "
                                      "caller's own loaders): score it with emclip.evaluation.evaluate_model on that data.")
            spec = (source or data["source"], root if root is not None else data["root"], data["image_size"],
                    data["test_per_domain"])
            targets = [run_task.check_domain(d) for d in (domains or run_task.domains)]
            for d in targets:
                if (d, *spec) not in cache:
                    cache[(d, *spec)] = _test_set(run_task, d, *spec)
            train_domains = list(data["train_domains"])
            keys = {"task": run_task.name, "protocol": "checkpoint", "split": path.stem,
                    "source_domains": "+".join(train_domains), "method": record["model"]["name"],
                    "seed": int(record["train"]["seed"])}
            sets = {d: cache[(d, *spec)] for d in targets}
            tables.append(_score_domains(model, run_task, sets, keys, train_domains, 16, device)[0])
        except EmclipError as err:
            skipped.append({"path": str(path), "error": str(err)})
            say(f"skipped {path}: {err}")
    if not tables:
        raise CheckpointError("No checkpoint could be evaluated: " + "; ".join(f"{s['error']}" for s in skipped))
    table = pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]
    table.attrs["skipped"] = skipped
    return table
