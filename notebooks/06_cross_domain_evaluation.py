# %% [markdown]
# # 06 · Cross-domain evaluation: does it work on a centre it never saw?
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - run the single-source domain-generalisation protocol: train on one centre, test on all
# - read Dice / HD95 / ASSD per domain and region, with the empty-mask conventions
# - print the tables DG papers print (mean ± std over seeds, in- vs out-of-domain gap)
# - compare EM-CLIP with baselines and ablations, and see the feature space before and after EM
#
# **Expected runtime** — **CPU (ci profile)**: < 1 min · **CPU (cpu profile)**: ~4 min (trains 4 models, reuses notebook 05's checkpoint) · **GPU (gpu profile)**: ~1 h (estimate)

# %% [markdown]
# ## Parameters
#
# The next cell is tagged `parameters`: papermill (`-p name value`) and the `emclip sweep` command override it. `profile = None` reads `$EMCLIP_PROFILE` (`ci`, `cpu`, `gpu` or `auto`, the default, which picks `gpu` when CUDA is present).

# %% tags=["parameters"]
profile = None  # None reads $EMCLIP_PROFILE (ci, cpu, gpu or auto)
task_name = "fundus"  # "fundus" or "cardiac"
source_domain = None  # the one training domain; None: the task's first domain
methods = None  # None: every factory model (ci: four, to stay fast)
seeds = None  # None: the profile's seeds
train_steps = None  # None: the profile's value (ci: 10, to stay fast)
data_source = "auto"  # "auto": real data when $EMCLIP_DATA_DIR holds it, else "synthetic"
tsne_images = None  # images per domain in the feature view; None: sized by the profile

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
import shutil

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import emclip
from emclip import reports, runlog
from emclip.data import domain_datasets, get_protocol
from emclip.data.checks import check_tree
from emclip.evaluation import find_checkpoint, load_or_train, run_protocol
from emclip.exercises.evaluation import check_dice
from emclip.metrics import compute_dice, compute_hd95
from emclip.models import list_models
from emclip.runtime import data_dir
from emclip.tasks import get_task
from emclip.viz import evaluation as vev
from emclip.viz.widgets import explore

emclip.print_config(profile)

# %% [markdown]
# ## The question
#
# A segmentation model trained on the images of one hospital meets, in practice, images from another
# scanner, another protocol, another population. **Domain generalisation** asks how well it does on a
# centre it has *never seen*. This notebook runs the experiment the EM-CLIP paper (and DoFE, and the M&Ms
# challenge before it) reports: train on one domain, test on every domain, and compare
#
# - **EM-CLIP** (frozen CLIP features -> EM aggregation -> text-guided decoder),
# - its **ablations** without EM aggregation (`emclip-no-em`) and without CLIP text embeddings (`emclip-no-text`),
# - **baselines**: a U-Net trained from scratch and a linear probe on frozen CLIP features (`clip-linear`).
#
# Scores per image and region: **Dice** (overlap, higher is better), **HD95** (95th-percentile boundary
# distance) and **ASSD** (mean boundary distance), both in pixels here (lower is better). An empty
# prediction of a present structure scores Dice 0 and the image diagonal as distance (see
# `emclip.metrics`).

# %%
prof = emclip.get_profile(profile)
if train_steps is not None:
    prof = prof.replace(train_steps=train_steps)
elif prof.name == "ci":
    prof = prof.replace(train_steps=10, eval_every=10)  # ci: seconds, not a meaningful training
task = get_task(task_name)
source = task.check_domain(source_domain or task.domains[0])
if methods is None:
    methods = (
        ["emclip", "emclip-no-em", "emclip-no-text", "clip-linear"] if prof.name == "ci" else list_models()
    )
seeds = list(seeds or prof.seeds)
root = data_dir()
if data_source == "auto":
    data_source = "real" if root is not None and check_tree(task.name, root).ok else "synthetic"
split = next(s for s in get_protocol(task, "single-source") if s.train_domains == (source,))
print(f"task {task.name}: train on {source} ({task.domain_names[source]}), test on {', '.join(task.domains)}")
print(
    f"data: {data_source}; methods: {methods}; seeds: {seeds}; {prof.train_steps} steps at {prof.image_size}px"
)

# %% [markdown]
# ## Train or load, then evaluate on every domain
#
# `run_protocol` does the experiment: for every method and seed it loads the checkpoint when one exists
# (notebook 05 writes EM-CLIP's to `results/checkpoints/`), otherwise trains with the profile's recipe
# (`emclip.engine.train_from_profile`), then scores the test images of **every** domain, the training
# domain included (that gives the in-domain reference). The tidy table has one row per
# (method, seed, target domain, region).

# %%
out_dir = runlog.results_dir(f"evaluation/06_{task.name}_{source}_{prof.name}")
own_ckpts = out_dir / "checkpoints"
own_ckpts.mkdir(parents=True, exist_ok=True)
reused = []
for method in methods:  # reuse notebook 05's checkpoints when they exist for this profile
    for seed in seeds:
        shared = find_checkpoint(runlog.results_dir("checkpoints"), task, method, [source], prof, seed)
        mine = find_checkpoint(own_ckpts, task, method, [source], prof, seed)
        if shared.is_file() and not mine.is_file():
            shutil.copy(shared, mine)
            reused.append(shared.name)
print("reusing notebook 05's checkpoints:", reused or "none")

results = run_protocol(
    task,
    "single-source",
    methods,
    seeds=seeds,
    profile=prof,
    source=data_source,
    root=root,
    out_dir=out_dir,
    splits=[split.name],
    checkpoint_dir=own_ckpts,
)
per_image = reports.load_frame(out_dir / "per_image.csv")
results.head(8)

# %%
cells = results.set_index(["method", "seed", "target_domain", "region"])
assert cells.index.is_unique
assert len(cells) == len(methods) * len(seeds) * len(task.domains) * len(task.region_names)
assert results.dice.between(0, 1).all() and (results.hd95 >= 0).all() and results.notna().all().all()
assert set(results[results.in_domain].target_domain) == {source}
print(f"{len(results)} cells filled; {len(per_image)} per-image rows; written to {out_dir}")

# %% [markdown]
# ## The tables a DG paper prints
#
# Rows are methods, columns target domains (the training domain is left out: a model is never scored on
# a centre it trained on). With several seeds each cell is mean ± std over seeds.

# %%
display(
    Markdown(
        "**Comparison on unseen domains (Dice)**\n\n"
        + reports.to_markdown(reports.comparison_table(results, "dice"), index_name="method")
    )
)
display(
    Markdown(
        "**Dice per unseen domain and region**\n\n"
        + reports.to_markdown(reports.summary_table(results, "dice"), index_name="method")
    )
)
display(
    Markdown(
        "**In-domain vs out-of-domain (Dice)**\n\n"
        + reports.to_markdown(reports.domain_gap_table(results, "dice"), index_name="method")
    )
)
display(
    Markdown(
        "**HD95 on unseen domains (pixels)**\n\n"
        + reports.to_markdown(reports.comparison_table(results, "hd95"), index_name="method")
    )
)

# %% [markdown]
# ## Figures
#
# The heatmap shows every domain, the training domain included, so the drop off the training domain is
# visible; the box plots show the spread over the test images, which a mean hides.

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 0.5 * len(methods) + 2.5))
vev.plot_dice_heatmap(results, "dice", domains="all", ax=axes[0])
axes[0].set_title(f"Dice, trained on {source} (all domains)")
vev.plot_domain_boxplots(per_image, "dice", ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Best and worst cases of EM-CLIP per domain
#
# Solid contours are the ground truth, dashed ones the prediction. The worst cases show *how* a model
# fails on a new domain: a missed structure, a leak into the background, a wrong scale.

# %%
focus = "emclip" if "emclip" in methods else methods[0]
model, loaded = load_or_train(
    focus,
    task,
    [source],
    prof,
    seeds[0],
    data_source,
    root,
    find_checkpoint(own_ckpts, task, focus, [source], prof, seeds[0]),
)
assert loaded  # run_protocol wrote it
test_sets = {d: domain_datasets(task, [d], "test", prof, source=data_source, root=root) for d in task.domains}
mine = per_image[(per_image.method == focus) & (per_image.seed == seeds[0])]
cases = vev.select_cases(mine, "dice", n=1)
fig = vev.plot_case_overlays(model, task, list(test_sets.values()), cases)
plt.show()

# %% [markdown]
# **Browse the cases** of every method: pick a method, a target domain and a rank (1 = its best image there by
# Dice, the last = its worst); the figure shows the contours and the image's Dice, HD95 and ASSD per region
# from the per-image table (needs a live kernel; the callback is the plain function
# `emclip.viz.evaluation.case_figure`). The figure above is the static version for EM-CLIP.

# %%
models = {
    m: model
    if m == focus
    else load_or_train(
        m,
        task,
        [source],
        prof,
        seeds[0],
        data_source,
        root,
        find_checkpoint(own_ckpts, task, m, [source], prof, seeds[0]),
    )[0]
    for m in methods
}


def browse_cases(method, domain, rank):
    rank = min(rank, len(test_sets[domain]))  # real domains differ in size: the slider's end is the worst
    vev.case_figure(per_image, models, test_sets, task, method, domain, rank - 1, seed=seeds[0])
    plt.show()


explore(
    browse_cases,
    method=widgets.Dropdown(options=list(methods), value=focus),
    domain=widgets.Dropdown(options=list(task.domains), value=task.domains[-1]),
    rank=widgets.IntSlider(value=1, min=1, max=max(len(ds) for ds in test_sets.values())),
)

# %% [markdown]
# ### Feature space: source vs target before and after EM aggregation
#
# EM-CLIP's claim is that aggregating the dispersed CLIP patch features into K compact centres makes them
# less dependent on the domain. The t-SNE below embeds pixel features of every domain, before the EM
# unit (the encoder's deepest features after the 1x1 neck) and after it (rebuilt from the K bases). The
# **silhouette score of the domain labels** puts a number on it: near 0 means the domains overlap, higher
# means they form separate clusters.

# %%
n_tsne = tsne_images or {"ci": 3, "cpu": 8}.get(prof.name, 16)
if getattr(model, "em", None) is not None:
    embedding, silhouette = vev.em_feature_embedding(
        model, test_sets, [source], n_images=n_tsne, pixels_per_image=24 if prof.name == "ci" else 48
    )
    fig = vev.plot_feature_tsne(embedding, silhouette)
    plt.show()
    assert set(embedding.stage) == {"before EM", "after EM"} and set(embedding.domain) == set(task.domains)
    print({k: round(v, 3) for k, v in silhouette.items()})
else:
    silhouette = {}
    print(f"{focus} has no EM unit: no before/after view")

# %% [markdown]
# ## What the numbers say
#
# The sentences below are computed from the table above (change the parameters and they change with it).
# A component "helps" when EM-CLIP beats the model without it by more than 0.01 Dice and more than the
# seed-to-seed spread; with one seed and a short training, read them as a description of *this* run, not
# as evidence.

# %%
head = reports.headline_numbers(results, "dice")
ref = "emclip" if "emclip" in head["out"] else head["best_method"]
lines = [
    f"- Trained on **{source}**, the best method on unseen domains is **{head['best_method']}** "
    f"(Dice {head['out'][head['best_method']]:.3f}); EM-CLIP scores {head['out'].get('emclip', float('nan')):.3f}.",
    f"- The hardest unseen domain is **{head['hardest_domain']}** ({task.domain_names[head['hardest_domain']]}), "
    f"the easiest **{head['easiest_domain']}** ({task.domain_names[head['easiest_domain']]}).",
]
if head["in"].get(ref) is not None:
    lines.append(
        f"- {ref} scores {head['in'][ref]:.3f} Dice on its training domain and {head['out'][ref]:.3f} "
        f"on unseen domains: a domain gap of {head['reference_gap']:+.3f}."
    )
if silhouette:
    change = silhouette["after EM"] - silhouette["before EM"]
    lines.append(
        f"- Domain silhouette of the features: {silhouette['before EM']:.3f} before EM, "
        f"{silhouette['after EM']:.3f} after ({'more mixed' if change < 0 else 'more separated'} "
        "domains after aggregation)."
    )
display(Markdown("\n".join(lines) + "\n" + reports.describe_effects(results, "dice")))

# %%
effects = reports.ablation_effects(results, "dice")
runlog.record(
    eval_task=task.name,
    eval_source=source,
    eval_profile=prof.name,
    eval_data=data_source,
    eval_ood_dice={m: round(v, 4) for m, v in head["out"].items()},
    eval_in_domain_dice={m: round(v, 4) for m, v in head["in"].items()},
    eval_best_method=head["best_method"],
    eval_hardest_domain=head["hardest_domain"],
    eval_emclip_gap=head["reference_gap"],
    eval_effects={f"{r.component} @ {r.target_domain}": round(r.effect, 4) for r in effects.itertuples()},
    eval_silhouette=silhouette,
)
assert head["best_method"] in methods and 0 <= head["out"][head["best_method"]] <= 1


# %% [markdown]
# ## Exercises
#
# 1. **Another source.** Set `source_domain` to the task's last domain (or `task_name = "cardiac"`) and run
#    again. Does the ranking of the methods hold, and is the hardest domain the same?
# 2. **Write Dice.** Complete `my_dice(pred, target)` below for bool masks (B, H, W): one value per image,
#    1 when both masks are empty. `check_dice` compares it with `emclip.metrics.compute_dice`.
# 3. **Leave-one-domain-out.** Call `run_protocol(task, "leave-one-out", ["emclip", "unet"], seeds=[0],
#    profile=prof, splits=[...])` for the split that holds out the hardest domain found above. Does training
#    on three centres close the gap that single-source training left?


# %%
def my_dice(pred, target):
    """pred, target: bool (B, H, W) -> one Dice per image. Replace the body with your own code."""
    return compute_dice(pred, target)  # <- the reference; write yours instead


check_dice(my_dice)
# HD95 in millimetres: pass the pixel size, e.g. compute_hd95(pred, target, spacing=(1.25, 1.25))

# %% [markdown]
# ## What to expect with real CLIP weights and real data
#
# With the offline tiny CLIP (random weights) the "CLIP" features carry no pre-trained knowledge, so the
# CLIP-based models compete with the U-Net on architecture alone and the text embeddings are random
# vectors: any benefit of text guidance here comes from the decoder design, not from language. With real
# weights (`clip_pretrained="auto"` in the `gpu` profile, or BiomedCLIP) and the real Fundus-DG / M&Ms
# data (`EMCLIP_DATA_DIR`), the paper reports that EM aggregation and text guidance each raise the Dice on
# unseen centres, most on the centres whose appearance differs most from the source (for fundus, the
# REFUGE domains for a Drishti-GS source; for M&Ms, the vendors absent from training). Real-data distances
# are in resized pixels here; multiply by the pixel size (or pass `spacing`) for millimetres.
