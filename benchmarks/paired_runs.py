"""Paired single-source runs of EM-CLIP: one config change against the default, seed by seed.

Shared by ``bench_variants.py`` and ``bench_pretrained_vs_random.py``. A run trains EM-CLIP in the
``cpu`` profile on the task's first domain with some config overrides and scores the test split of
every domain; ``unseen`` is the mean Dice over the three other domains. Results go to a JSON file
keyed by run (resumable). Each run records the complete model config it trained; a stored run is
reused only while that config is still what the same overrides give (a changed default reruns it).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from emclip.engine import train_from_profile
from emclip.evaluation import evaluate_model
from emclip.evaluation.scoring import domain_test_set
from emclip.fileio import atomic_write_text
from emclip.models import get_model_config
from emclip.runtime import get_profile
from emclip.tasks import get_task


def model_config(profile, method: str = "emclip", **overrides) -> dict:
    """The complete config of ``method`` that ``overrides`` give in ``profile``, JSON round-tripped
    as run files store it (``augment``, a training argument, is not part of it)."""
    overrides = {k: v for k, v in overrides.items() if k != "augment"}
    return json.loads(json.dumps(get_model_config(method, profile=profile, **overrides)))


def measure(task_name: str, seed: int, profile, augment=None, **overrides) -> dict:
    """Train EM-CLIP on the task's first domain; the Dice per test domain and the unseen mean."""
    task = get_task(task_name)
    source = task.domains[0]
    start = time.perf_counter()
    result = train_from_profile("emclip", task, [source], profile=profile, seed=seed, progress=False,
                                augment=augment, **overrides)
    dice = {}
    for domain in task.domains:
        test = domain_test_set(task, domain, "synthetic", None, profile.image_size, profile.test_per_domain)
        dice[domain] = float(evaluate_model(result.model, task, test, device="cpu").dice.mean())
    unseen = statistics.mean(v for d, v in dice.items() if d != source)
    return {"per_domain": dice, "source": dice[source], "unseen": unseen,
            "seconds": round(time.perf_counter() - start, 1), "augment": augment,
            "model_config": json.loads(json.dumps(result.model.config))}


def start(threads: int, out: Path):
    """Set the torch thread count; the ``cpu`` profile and the :class:`RunStore` at ``out``."""
    torch.set_num_threads(threads)
    return get_profile("cpu"), RunStore(out)


class RunStore:
    """A JSON file of finished runs, written atomically after each new one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.runs = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get_or_run(self, key: str, run, config: dict | None = None) -> dict:
        """The stored run of ``key`` if it trained ``config`` (when given), else ``run()``, stored."""
        stale = key in self.runs and config is not None and self.runs[key].get("model_config") != config
        if key not in self.runs or stale:
            self.runs[key] = run()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.runs, indent=1))
        print(f"{key}: unseen {self.runs[key]['unseen']:.3f} ({self.runs[key]['seconds']} s)", flush=True)
        return self.runs[key]


def _spread(values: list[float]) -> str:
    return f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""


def paired_row(label: str, control: list[dict], treated: list[dict], extra: str = "") -> str:
    """A markdown row: control and treated unseen Dice (mean ± std), in-domain Dice, paired differences."""
    base, new = [a["unseen"] for a in control], [b["unseen"] for b in treated]
    diffs = [b - a for a, b in zip(base, new)]
    source = [b["source"] for b in treated]
    return (f"| {label} |{extra} {statistics.mean(base):.3f}{_spread(base)} | {statistics.mean(new):.3f}{_spread(new)} "
            f"| {statistics.mean(source):.3f} | {', '.join(f'{d:+.3f}' for d in diffs)} | "
            f"{statistics.mean(diffs):+.3f} ({sum(d > 0 for d in diffs)} of {len(diffs)} seeds higher) |")
