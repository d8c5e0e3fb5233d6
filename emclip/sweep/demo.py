"""Notebook files for sweeps: a minimal papermill-ready notebook, the EM demo, finding a target."""

from __future__ import annotations

import os
from pathlib import Path

from emclip.fileio import atomic_write_text


def find_notebook(name: str, search: str | os.PathLike = ".") -> Path | None:
    """``name`` beside ``search`` or in a ``notebooks/`` folder next to it; ``None`` if absent (Colab)."""
    search = Path(search).resolve()
    for candidate in (search / name, search / "notebooks" / name, search.parent / "notebooks" / name):
        if candidate.is_file():
            return candidate
    return None


_DEMO_PARAMETERS = """profile = None  # None reads $EMCLIP_PROFILE
em_bases = None  # K; None: EM-CLIP's value in the profile
em_iters = None  # T; None: EM-CLIP's value in the profile
em_lam = 10.0  # lambda: unit-norm toy features need a sharp E-step (with 1 the bases collapse)
seed = 0"""

_DEMO_CODE = """import torch
import torch.nn.functional as F

import emclip
import emclip.runlog
from emclip.em import em_iterations
from emclip.models import get_model_config
from emclip.params import check_parameter

em_bases = check_parameter("em_bases", em_bases, int, minimum=1, optional=True)
em_iters = check_parameter("em_iters", em_iters, int, minimum=1, optional=True)
em_lam = check_parameter("em_lam", em_lam, float, minimum=0, optional=True)
seed = check_parameter("seed", seed, int, minimum=0)
em = get_model_config("emclip", emclip.get_profile(profile))["em"]  # the profile's EM-CLIP settings
K = em_bases if em_bases is not None else em["bases"]
T = em_iters if em_iters is not None else em["iters"]
lam = float(em_lam) if em_lam is not None else em["lam"]
g = torch.Generator().manual_seed(seed)
centres = F.normalize(torch.randn(16, 6, generator=g), dim=0)  # C=16 features, 6 true clusters
fit = {}
for i, noise in enumerate([0.2, 0.4, 0.6, 0.8]):  # four toy 'domains', noisier and noisier
    labels = torch.randint(0, 6, (512,), generator=g)
    x = F.normalize(centres[:, labels] + noise * torch.randn(16, 512, generator=g), dim=0)[None]
    mu0 = F.normalize(torch.randn(1, 16, K, generator=g), dim=1)
    mu, z = em_iterations(x, mu0, T, lam)
    fit[f"domain{i + 1}"] = (x[0].T @ mu[0]).max(dim=1).values.mean().item()  # mean best cosine
emclip.runlog.record(fit=fit, fit_mean=sum(fit.values()) / len(fit), K=K, T=T, lam=lam)
print(f"K={K} T={T} lam={lam}:", {k: round(v, 3) for k, v in fit.items()})"""


def make_notebook(path: str | os.PathLike, parameters: str, cells: list[str], title: str | None = None) -> Path:
    """Write a minimal papermill-ready notebook: an optional title, a code cell tagged
    ``parameters`` (``parameters``: its source), then one code cell per string of ``cells``."""
    import nbformat

    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook()
    nb.cells = ([nbformat.v4.new_markdown_cell(f"# {title}")] if title else []) + [params]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    return atomic_write_text(path, nbformat.writes(nb))


def demo_notebook(path: str | os.PathLike) -> Path:
    """Write a tiny sweepable notebook (seconds to run) and return its path.

    It runs EM (:func:`emclip.em.em_iterations`) on toy unit-norm features of four "domains" of
    growing noise and records ``fit`` per domain (mean cosine of each feature to its closest
    basis) for the parameters ``em_bases``, ``em_iters``, ``em_lam``, ``seed`` and ``profile``.
    Notebook 07 sweeps it where notebook 04 is not beside it (on Colab only one notebook is
    present); tests use it as a fixture.
    """
    return make_notebook(path, _DEMO_PARAMETERS, [_DEMO_CODE],
                         title="EM on toy features (a sweep demo written by emclip.sweep.demo_notebook)")
