# %% [markdown]
# # 07 · Parameter sweeps with papermill
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - run a notebook over a grid of its parameters (K, T, ...) with papermill, in parallel processes
# - read the gathered table and plot a metric against K and T per domain
# - resume a sweep: finished runs are not repeated, failed runs are reported with their notebook
#
# **Expected runtime** — `cpu` profile: not measured (each sweep point trains in its own process) ·
# `ci` profile: ~1 min · `colab` profile on a Colab
# T4: not measured (no T4 was available; the profile is sized to stay within 10 minutes) · `gpu`: not measured

# %% [markdown]
# ## Parameters
#
# The next cell is tagged `parameters`: papermill (`-p name value`) and the `emclip sweep` command override
# it. `profile = None` reads `$EMCLIP_PROFILE`: `ci` (seconds), `cpu` (minutes on a laptop), `colab` (a class
# on a Colab T4 GPU), `gpu` (a larger model for longer) or `auto`, the default, which picks `colab` on a Colab
# GPU runtime, `gpu` elsewhere when CUDA is present, else `cpu`.

# %% tags=["parameters"]
profile = None  # None reads $EMCLIP_PROFILE; or "ci", "cpu", "colab", "gpu", "auto"
target = (
    "04_em_aggregation.ipynb"  # the notebook to sweep, looked up beside this one; "demo": a built-in EM demo
)
em_bases = None  # K values of the grid; None: sized by the profile (ci: [4, 8])
em_iters = None  # T values of the grid; None: [1, 3]
sweep_profile = "ci"  # the profile every run of the sweep uses ("ci": seconds per run)
jobs = None  # parallel runs; None: min(2, CPU cores)
fresh = True  # True: execute every point again on the first call; False: resume an earlier sweep
metric = None  # None: silhouette_after for notebook 04, fit for the demo

# %% [markdown]
# ## Set-up
#
# On Colab the next cell installs the kit from its repository, at the same ref as this notebook; elsewhere
# it does nothing (install the kit in a clone with `make install` or `pip install -e .`). On a Colab GPU
# runtime the `auto` profile picks `colab` (sized for a class on a T4). Checkpoints go to
# `$EMCLIP_RESULTS_DIR`: point it at Google Drive (the commented lines) and a later notebook reuses an
# earlier notebook's trained model from a fresh runtime, when its run record matches; otherwise it trains.

# %%
import importlib.util
import sys

if "google.colab" in sys.modules:  # Colab only; a clone uses `pip install -e .`
    if importlib.util.find_spec("emclip") is None:
        raise RuntimeError(
            "emclip is not installed, and this copy of the kit names no public repository to install "
            "it from. Instructor: push the kit to GitHub, run `python tools/set_home.py "
            "https://github.com/<you>/emclip --ref v0.1.0` in the clone, commit and push the "
            "tag: the badges and this cell then point there. Or build a wheel in the clone "
            "(`python -m build`), upload it here and `%pip install` it before this cell."
        )
    # import os
    # from google.colab import drive
    # drive.mount("/content/drive")
    # os.environ["EMCLIP_RESULTS_DIR"] = "/content/drive/MyDrive/emclip-results"

# %%
import matplotlib.pyplot as plt
import pandas as pd

import emclip
from emclip import runlog
from emclip.exercises import attempt
from emclip.exercises.sweep import check_best_params, example_table
from emclip.sweep import best_params, demo_notebook, find_notebook, run_sweep
from emclip.viz import sweep as vsw

emclip.print_config(profile)

# %% [markdown]
# ## One notebook, many runs
#
# Every kit notebook starts with a cell tagged `parameters`. [papermill](https://papermill.readthedocs.io)
# executes a notebook with new values injected right after that cell, so a notebook becomes a function of
# its parameters. A **sweep** runs it once per point of a grid, here K (`em_bases`) x T (`em_iters`) of the
# EM aggregation in notebook 04, and gathers what each run passed to `emclip.runlog.record(...)` into one
# table. The same from a terminal:
#
# ```bash
# emclip sweep notebooks/04_em_aggregation.ipynb -g em_bases=4,8 -g em_iters=1,3 --profile ci --jobs 2
# ```
#
# Each run gets its own folder (`em_bases=4__em_iters=1/`) with the executed notebook, `metrics.json` and
# `run.json` (status, parameters, error, time). Runs go to separate processes (`jobs`), each with its own
# kernel. A run that finished is never executed again, so an interrupted sweep resumes where it stopped and a
# wider grid only runs the new points. A failing run is reported with the path of its executed notebook
# (the traceback is in it), and the others carry on.

# %%
prof = emclip.get_profile(profile)
target_path = None if target == "demo" else find_notebook(target, ".")
if target_path is None:  # on Colab only this notebook is present
    target_path = demo_notebook(runlog.results_dir("sweeps") / "em_demo.ipynb")
    print(f"{target} is not beside this notebook: sweeping a small built-in EM demo instead")
is_demo = target_path.name == "em_demo.ipynb"
metric = metric or ("fit" if is_demo else "silhouette_after")
default_bases = {"ci": [4, 8], "gpu": [4, 8, 16, 32, 64]}.get(prof.name, [4, 8, 16])
grid = {"em_bases": list(em_bases or default_bases), "em_iters": list(em_iters or [1, 3])}
out = runlog.results_dir("sweeps") / target_path.stem
n_runs = len(grid["em_bases"]) * len(grid["em_iters"])
print(f"sweeping {target_path.name}: {grid} -> {n_runs} runs in {out} (profile {sweep_profile!r})")

# %% [markdown]
# ## Run the grid
#
# `run_sweep` shows a progress bar; `fresh=True` executes every point again (`force`), so the first call
# below always does real work.

# %%
first = run_sweep(target_path, grid, output=out, profile=sweep_profile, jobs=jobs, force=fresh)
print(f"executed {len(first.executed)}, skipped {len(first.skipped)}, failed {len(first.failed)}")
for failure in first.failed:
    print("FAILED", failure["params"], failure["error"], "->", failure["output"])
assert first.ok, "a run failed: open its executed notebook (path above) to see the traceback"
assert len(first.executed) + len(first.skipped) == n_runs

# %% [markdown]
# ## The gathered table
#
# One row per run: the parameters, the status, every recorded metric (a metric recorded per domain as a
# dict becomes one column per domain, `fit.domain1`, ...), the time, and the executed notebook. It is saved
# as `sweep.csv` in the sweep folder.

# %%
table = first.table
k_column = "K" if is_demo else "em_K"  # what the notebook itself says it used
assert len(table) == n_runs and (table["status"] == "ok").all()
assert (table[k_column] == table["em_bases"]).all(), "each run saw its own grid value"
assert table.filter(regex=f"^{metric}").notna().all().all()
shown = ["em_bases", "em_iters"] + [c for c in table.columns if c.startswith(metric)] + ["seconds"]
table[shown].round(3)

# %% [markdown]
# ## The metric against K and T
#
# One panel per domain when the notebook recorded the metric per domain, one line per T. The heatmap shows
# the mean over domains on the K x T grid.

# %%
fig = vsw.plot_metric_vs_k_t(table, metric)
plt.show()
fig = vsw.plot_metric_heatmap(table, metric, "em_bases", "em_iters")
plt.show()
best = best_params(table, metric, ["em_bases", "em_iters"])
print(f"best {metric}: {best}")

# %% [markdown]
# ## Call it again: nothing is repeated
#
# Same grid, same folder, no `force`: every run has a `run.json` that says `ok` for the same parameters,
# so nothing executes and the table is read back from disk.

# %%
second = run_sweep(target_path, grid, output=out, profile=sweep_profile, jobs=jobs)
print(f"executed {len(second.executed)}, skipped {len(second.skipped)}")
assert second.executed == [] and sorted(second.skipped) == sorted(first.table["run"])
pd.testing.assert_frame_equal(second.table, first.table)
runlog.record(
    sweep_target=target_path.name,
    sweep_runs=n_runs,
    sweep_repeated=len(second.executed),
    sweep_best_K=best["em_bases"],
    sweep_best_T=best["em_iters"],
    sweep_metric=metric,
)

# %%
for run_dir in sorted(p for p in out.iterdir() if p.is_dir())[:2]:
    print(run_dir.name, "->", sorted(p.name for p in run_dir.iterdir()))


# %% [markdown]
# ## Sweeping the training notebooks
#
# The same machinery runs the training notebooks over a grid; on a GPU, or on CPU with patience:
#
# ```bash
# # Dice against K and T per domain (notebook 05 records its validation Dice)
# emclip sweep notebooks/05_decoder_training.ipynb -g em_bases=8,16,32 -g em_iters=1,3 -g seed=0,1 --profile cpu
# # every held-out source domain of the cross-domain evaluation
# emclip sweep notebooks/06_cross_domain_evaluation.ipynb -g source_domain=domain1,domain2,domain3,domain4
# ```
#
# then `vsw.plot_metric_vs_k_t(emclip.sweep.gather("results/sweeps/05_decoder_training"), "decoder_val_dice")`.
# Every run writes its checkpoints under its own `results/` folder, so parallel runs never overwrite each
# other. `make run` (the main job) is the other use of the same code: it executes notebooks 00-07 once, in
# order, and writes `results/summary.md`.
#
# ## What this sweep shows
#
# The sweep above ran notebook 04 in the `ci` profile, with the CLIP weights that profile loads: its table is a
# measurement of the silhouette of *that* run against K and T, not of trained EM-CLIP models. For reference,
# EMANet (Li et al., ICCV 2019) trains with T = 3 iterations and K = 64 bases; the kit has not measured how
# EM-CLIP's cross-domain Dice depends on K and T (the sweep of notebook 05 above would).
#
# ## Exercises
#
# 1. **Pick the best setting.** Write `my_best(table, metric, params)` that returns the parameter values with
#    the best mean metric: drop failed runs, average the per-domain columns, then average over seeds.
#    `example_table()` shows the kind of table it gets, e.g. `example_table().head()`.
# 2. **Widen the grid.** Add `em_iters = [1, 3, 5]` in the parameters cell with `fresh = False` and run the
#    sweep cells again: only the new points execute (look at `first.executed`).
# 3. **A failing run.** Add `em_lam` to the grid with a value the EM code rejects (a negative one) and look
#    at how the failure is reported; then run the same grid with `emclip sweep` in a terminal.


# %%
example_table().head()


# %%
def my_best(table, metric, params):
    """table: a gathered sweep table, metric: e.g. "dice", params: e.g. ["em_bases", "em_iters"] -> {param: value}."""
    raise NotImplementedError  # your code here


attempt(check_best_params, my_best)
