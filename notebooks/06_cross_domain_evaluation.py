# %% [markdown]
# # 06 · Cross-domain evaluation: does it work on a centre it never saw?
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - test a paper's claim as a hypothesis: the claim, your prediction, the measurement, a plain reading
# - run the single-source domain-generalisation protocol: train on one centre, test on all
# - read Dice / HD95 / ASSD per domain and region, with the empty-mask conventions
# - print the tables DG papers print (mean ± std over seeds, in- vs out-of-domain gap)
# - compare EM-CLIP with its ablations, a randomly initialised encoder and a U-Net, and see the feature
#   space before and after EM
#
# **Expected runtime** — `cpu` profile: 3.6 min (measured on the kit's 2-core CPU machine as the CPU time of
# one thread, which depends little on the machine's load; it trains four models and reuses notebook 05's
# EM-CLIP when its run record matches) · `ci` profile: < 1 min · `colab` profile on a Colab
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
task_name = "fundus"  # "fundus" or "cardiac"
source_domain = None  # the one training domain; None: the task's first domain
methods = None  # None: EM-CLIP, its ablations, the random-encoder control and the U-Net
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

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

import emclip
from emclip import reports, runlog
from emclip.data import domain_datasets, get_protocol
from emclip.data.checks import check_tree
from emclip.evaluation import find_checkpoint, load_or_train, run_protocol
from emclip.exercises import attempt
from emclip.exercises.evaluation import check_dice
from emclip.models import create_model, list_models
from emclip.runtime import data_dir
from emclip.tasks import get_task
from emclip.viz import evaluation as vev
from emclip.viz import hypothesis
from emclip.viz.widgets import explore

emclip.print_config(profile)

# %% [markdown]
# ## The claim
#
# The EM-CLIP paper (Yu, Zhou et al., arXiv 2509.08570) is public only through its abstract, which claims that
# EM aggregation clusters the dispersed features into compact semantic centres, that a text-guided pixel decoder
# uses domain-invariant textual knowledge to guide the visual features, that the two together improve how well
# the model generalises to unseen domains, and that the method outperforms existing approaches on public
# cardiac and fundus domain-generalisation benchmarks.
#
# ## The hypothesis, in the kit's terms
#
# Train on **one** centre, test on every centre. On the centres never seen in training, EM-CLIP should score a
# higher Dice than
#
# 1. the same model **without EM aggregation** (`emclip-no-em`: a same-shape residual block instead of the EM
#    iterations),
# 2. the same model **without CLIP text** (`emclip-no-text`: learned class queries instead of the text
#    embeddings),
# 3. the same model on a **randomly initialised CLIP** (`emclip-random`): the foundation-model part of the
#    claim. Without pretrained knowledge there is nothing domain-invariant for EM and the text to carry;
# 4. a **U-Net** trained from scratch (`unet`), the usual baseline.
#
# **The protocol.** DoFE's Fundus-DG benchmark and the M&Ms challenge are multi-source: DoFE trains on three
# centres and tests on the fourth (leave-one-domain-out), and M&Ms trains on some vendors and tests on all four,
# including vendors absent from training. This notebook runs the **single-source** protocol instead (train on
# one centre, test on all four): one training run per method instead of four, so that it fits a class, and
# the widest gap between the training centre and the others. Leave-one-domain-out is exercise 3.
#
# **The scores**, per image and region: **Dice** (overlap, higher is better), **HD95** (95th-percentile boundary
# distance) and **ASSD** (mean boundary distance; lower is better). Distances are in pixels of the resized image
# for fundus, and in millimetres for cardiac MRI, from each slice's pixel spacing (real M&Ms: the scans'
# spacing; synthetic stacks: a nominal spacing, a design choice of the kit). An empty prediction of a present
# structure scores Dice 0 and the image diagonal as distance (see `emclip.metrics`).
#
# ## Your prediction, before any number
#
# For each comparison, will EM-CLIP's Dice on unseen domains be `"higher"`, `"lower"` or the `"same"` (within
# 0.01 or the seed-to-seed spread)? Think about the weights the encoder has in this run (printed below) and
# about what the 2-D toy of notebook 04 needed to work. Fill in the next cell; the reading further down
# compares your guesses with the measurement.

# %%
my_prediction = {
    "emclip-no-em": None,  # "higher", "lower" or "same"
    "emclip-no-text": None,
    "emclip-random": None,
    "unet": None,
}

# %%
prof = emclip.get_profile(profile)
if train_steps is not None:
    prof = prof.replace(train_steps=train_steps)
elif prof.name == "ci":
    prof = prof.replace(train_steps=10, eval_every=10)  # ci: seconds, not a meaningful training
task = get_task(task_name)
source = task.check_domain(source_domain or task.domains[0])
if methods is None:
    wanted = ["emclip", "emclip-no-em", "emclip-no-text", "emclip-random", "unet"]
    methods = [m for m in wanted if m in list_models()]
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
# `run_protocol` does the experiment: for every method and seed it loads the checkpoint of *the same run*
# when one exists (notebook 05 writes EM-CLIP's to `results/checkpoints/`; a checkpoint is reused only when
# its run record, model, data and training settings, equals the one requested), otherwise trains with the profile's recipe
# (`emclip.engine.train_from_profile`), then scores the test images of **every** domain, the training
# domain included (that gives the in-domain reference). The tidy table has one row per
# (method, seed, target domain, level, region). Cardiac MRI is scored per 3-D volume, as the M&Ms challenge
# does (the slices of a volume together, distances in mm when the data carries a spacing); its per-slice rows
# stay in `all_levels` as a secondary view. Fundus images are 2-D, so their only level is the image.

# %%
out_dir = runlog.results_dir(f"evaluation/06_{task.name}_{source}_{prof.name}")
own_ckpts = out_dir / "checkpoints"
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
    reuse_from=[runlog.results_dir("checkpoints")],  # notebook 05's EM-CLIP, when its run record matches
    other_run="keep",  # a checkpoint of another run (e.g. from before a kit update) is renamed, not lost
)
per_image = reports.load_frame(out_dir / "per_image.csv")
all_levels = results  # cardiac: rows per 3-D volume and per 2-D slice (column `level`)
results = reports.at_level(all_levels)  # the primary level: per volume for cardiac (as M&Ms scores), else per image
print("scored per", results.level.iloc[0], "| levels in the table:", sorted(all_levels.level.unique()))
results.head(8)

# %%
cells = results.set_index(["method", "seed", "target_domain", "region"])
assert cells.index.is_unique
assert len(cells) == len(methods) * len(seeds) * len(task.domains) * len(task.region_names)
assert results.dice.between(0, 1).all() and (results.hd95 >= 0).all() and results.notna().all().all()
assert set(results[results.in_domain].target_domain) == {source}
print(f"{len(results)} cells filled; {len(per_image)} per-image rows; written to {out_dir}")

# %% [markdown]
# ## The measured comparison
#
# Per seed, each model's Dice averaged over the unseen domains and regions; the difference EM-CLIP minus the
# other model is taken per seed (same seed, same test images) and averaged. "higher" or "lower" needs a
# difference larger than 0.01 Dice and than the seed-to-seed spread of the differences (a rule of thumb for
# few seeds, not a significance test).

# %%
comparison = hypothesis.compare(results, "dice")
display(comparison.drop(columns=["what"]).round(3))

# %% [markdown]
# ## A plain reading
#
# Every sentence below is written from the numbers above: change the parameters and it changes with them.

# %%
reference_config = create_model("emclip", task, profile=prof).config  # the run's EM-CLIP, as configured
caveats = [hypothesis.describe_encoder(reference_config)]
if prof.name == "ci":
    caveats.append(
        "The ci profile trains each model for a few seconds: these numbers check that the experiment "
        "runs end to end; they are not evidence for or against the claim."
    )
if data_source == "synthetic":
    caveats.append("The domains are the kit's synthetic centres, not the real Fundus-DG or M&Ms images.")
reading = hypothesis.plain_reading(comparison, "dice", prediction=my_prediction, caveats=caveats)
display(Markdown(reading))

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
        f"**HD95 on unseen domains ({'mm' if task.name == 'cardiac' else 'pixels'})**\n\n"
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
# ## More from the same numbers
#
# Computed from the tables above, per unseen domain: where each component helps or hurts, the hardest domain,
# and what EM did to the domain silhouette of the features. The same rule as the reading (0.01 Dice and the
# seed-to-seed spread); with one seed and a short training, a description of *this* run, not evidence.

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
    eval_claims={r.other: r.verdict for r in comparison.itertuples()},
)
assert head["best_method"] in methods and 0 <= head["out"][head["best_method"]] <= 1


# %% [markdown]
# ## Exercises
#
# 1. **Another source.** Set `source_domain` to the task's last domain (or `task_name = "cardiac"`) and run
#    again. Does the reading change? Is the hardest domain the same?
# 2. **Write Dice.** Write `my_dice(pred, target)` for bool masks (B, H, W): one value per image, 1 when both
#    masks are empty; `attempt(check_dice, my_dice)` compares it with `emclip.metrics.compute_dice`.
# 3. **Leave-one-domain-out.** Call `run_protocol(task, "leave-one-out", ["emclip", "unet"], seeds=[0],
#    profile=prof, splits=[...])` for the split that holds out the hardest domain found above. Does training
#    on three centres close the gap that single-source training left?
# 4. **Your own hypothesis.** Pick one sentence of the reading and say what run would make it evidence (more
#    seeds, more steps, real data, real weights) and roughly what it would cost on your machine.


# %%
def my_dice(pred, target):
    """pred, target: bool (B, H, W) -> one Dice per image (B,)."""
    raise NotImplementedError  # your code here


attempt(check_dice, my_dice)
