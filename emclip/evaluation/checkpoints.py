"""Score saved checkpoints, each with the data settings of its own run record."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emclip.errors import CheckpointError, EmclipError
from emclip.evaluation.scoring import RESULT_COLUMNS, domain_test_set, score_domains
from emclip.tasks import Task, get_task


def evaluate_checkpoints(paths: Sequence[str | os.PathLike], task: Task | str | None = None,
                         domains: Sequence[str] | None = None, source: str | None = None, root=None,
                         device="auto", say=None) -> pd.DataFrame:
    """Evaluate saved checkpoints on the test images of ``domains`` (default: all), each as recorded.

    Each checkpoint is rebuilt from its run record (:func:`emclip.engine.load_run`) and scored on
    test sets made with *its* data settings: image size and per-domain count from the record,
    source and root from the record unless ``source`` / ``root`` are given (to test a model on
    another data set); the current run profile plays no part. Rows as :func:`run_protocol`'s,
    ``method`` = the record's model name, ``split`` = the checkpoint's file stem (a label),
    ``seed`` and ``in_domain`` from the record.

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
                    cache[(d, *spec)] = domain_test_set(run_task, d, *spec)
            train_domains = list(data["train_domains"])
            keys = {"task": run_task.name, "protocol": "checkpoint", "split": path.stem,
                    "source_domains": "+".join(train_domains), "method": record["model"]["name"],
                    "seed": int(record["train"]["seed"])}
            sets = {d: cache[(d, *spec)] for d in targets}
            tables.append(score_domains(model, run_task, sets, keys, train_domains, 16, device)[0])
        except EmclipError as err:
            skipped.append({"path": str(path), "error": str(err)})
            say(f"skipped {path}: {err}")
    if not tables:
        raise CheckpointError("No checkpoint could be evaluated: " + "; ".join(f"{s['error']}" for s in skipped))
    table = pd.concat(tables, ignore_index=True)[list(RESULT_COLUMNS)]
    table.attrs["skipped"] = skipped
    return table
