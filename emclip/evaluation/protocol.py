"""The domain-generalisation experiment: train (or reuse) every run of a protocol, score it on every domain.

:func:`run_protocol` is the experiment of a domain-generalisation paper: for every split of a
protocol (``single-source``: train on one domain, test on the others; ``leave-one-out``: train on
all but one), every method and every seed, train the model (or reuse its checkpoint when that
holds the same run), score it on the test images of every domain, and gather one tidy table.
Targets the model trained on are kept too (``in_domain=True``): they give the in-domain vs
out-of-domain gap of :func:`emclip.reports.domain_gap_table`.

The test set of a domain is the same for every split, method and seed (data seed 0), so
differences between methods are differences between models, not between test images — design
choice, not from the paper.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emclip.errors import CheckpointError
from emclip.evaluation.scoring import RESULT_COLUMNS, domain_test_set, score_domains
from emclip.fileio import atomic_write, check_output_path
from emclip.runtime import Profile, get_profile
from emclip.tasks import Task, get_task


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


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


def run_differences(path: Path, requested: dict) -> list[str]:
    """How the run of the checkpoint at ``path`` differs from the ``requested`` record (CheckpointError
    for an unreadable file)."""
    from emclip.engine import read_record, record_differences

    return record_differences(read_record(path)[0], requested)


def holds_run(path: Path, run) -> bool:
    """Whether the checkpoint at ``path`` holds ``run`` (a PreparedRun): readable, with an equal record."""
    try:
        return not run_differences(path, run.record())
    except CheckpointError:
        return False


def adopt_checkpoint(run, target: Path, sources: Sequence, say=print) -> Path | None:
    """Copy into ``target`` a checkpoint of the same run found in one of ``sources`` (folders).

    ``run`` is a :class:`emclip.engine.recipe.PreparedRun`; a candidate (found with
    :func:`find_checkpoint`) is copied only when its record equals ``run.record()``; ``say``
    reports why another one was not. Returns the adopted source path, or ``None``.
    """
    requested = run.record()
    domains = requested["data"]["train_domains"]
    for folder in sources:
        candidate = find_checkpoint(folder, run.task, requested["model"]["name"], domains, run.profile,
                                    requested["train"]["seed"])
        if not candidate.is_file() or candidate.resolve() == Path(target).resolve():
            continue
        try:
            diffs = run_differences(candidate, requested)
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


def run_protocol(task: Task | str, protocol: str, models: Sequence[str], seeds: Sequence[int] | None = None,
                 profile=None, source: str = "synthetic", root=None, out_dir=None,
                 target_domains: Sequence[str] | None = None, progress: bool = True,
                 splits: Sequence[str] | None = None, checkpoint_dir=None, device="auto",
                 reuse_from: Sequence | None = None, overwrite: bool = False,
                 other_run: str = "error") -> pd.DataFrame:
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
            :class:`~emclip.errors.RunMismatchError` unless ``overwrite=True``, or is renamed to
            ``<name>.other-run-<n>.pt`` with ``other_run="keep"`` (:func:`emclip.engine.train`).
        reuse_from: further folders (e.g. ``emclip.runlog.results_dir("checkpoints")``, where
            notebook 05 saves) whose checkpoint of the same run, if any, is copied into
            ``checkpoint_dir`` instead of training (:func:`adopt_checkpoint`).
    Returns:
        Tidy DataFrame, one row per (method, seed, split, target domain, level, region), columns
        :data:`RESULT_COLUMNS`: ``n`` cases, the mean Dice / HD95 / ASSD, the median HD95 / ASSD
        and the miss rate over the domain's test cases. ``level`` is ``"image"`` (2-D images;
        cardiac slices) or ``"volume"`` (cardiac: the 3-D volumes the slices form, the primary
        cardiac number; :func:`emclip.reports.primary_level`). Also written to ``out_dir``:
        ``per_image`` and, for volumes, ``per_volume`` tables (one row per case and region).
    """
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
            check_output_path(folder, "dir")
    test_sets = {d: domain_test_set(task, d, source, root, prof.image_size, prof.test_per_domain) for d in targets}
    grid = [(split, method, seed) for split in all_splits for method in models for seed in seeds]
    if progress:
        from tqdm.auto import tqdm

        grid = tqdm(grid, desc=f"{task.name} {protocol}")
    say = (grid.write if progress else lambda *a: None)
    tables, images, volumes = [], [], []
    for split, method, seed in grid:
        if progress:
            grid.set_postfix_str(f"{split.name} {method} s{seed}")
        run = prepare_run(method, task, split.train_domains, prof, seed, source, root)
        ckpt = None
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt = find_checkpoint(ckpt_dir, task, method, split.train_domains, prof, seed)
            if ckpt.is_file() and other_run == "keep" and not overwrite and not holds_run(ckpt, run):
                from emclip.engine import set_aside

                print(f"{ckpt.name} held another run; kept it as {set_aside(ckpt).name}")
            if not ckpt.is_file() and reuse_from:
                adopt_checkpoint(run, ckpt, reuse_from, say)
        model = run.train(ckpt, resume=True, overwrite=overwrite, progress=False, device=device,
                          other_run=other_run).model
        keys = {"task": task.name, "protocol": protocol, "split": split.name,
                "source_domains": "+".join(split.train_domains), "method": method, "seed": seed}
        table, per_image, per_volume = score_domains(model, task, test_sets, keys, split.train_domains,
                                                     prof.batch_size, device)
        tables.append(table)
        images.append(per_image)
        volumes += [per_volume] if per_volume is not None else []
        del model, run
        if out is not None:
            _save(tables, images, volumes, out)
    return pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]


def _save(tables: list, images: list, volumes: list, out: Path) -> None:
    from emclip import reports

    table = pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]
    reports.save_frame(table, out, "results")
    reports.save_frame(pd.concat(images, ignore_index=True), out, "per_image")
    if volumes:
        reports.save_frame(pd.concat(volumes, ignore_index=True), out, "per_volume")
    reports.write_report(table, out)


