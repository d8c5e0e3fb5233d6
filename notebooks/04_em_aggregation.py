# %% [markdown]
# # 04 · EM aggregation: compact semantic centres from CLIP features
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - derive EMANet's E- and M-steps as EM for a von Mises-Fisher mixture on the unit sphere
# - run EM on CLIP patch features and read the responsibility maps of the K bases
# - see how the inverse temperature lambda, K and T change them
# - measure feature compactness before and after aggregation, per domain
# - compare the time and memory of EM attention with non-local attention as N grows
#
# **Expected runtime** — **CPU (ci profile)**: < 1 min · **CPU (cpu profile)**: ~1 min · **GPU**: ~1 min

# %% [markdown]
# ## Parameters
#
# The next cell is tagged `parameters`: papermill (`-p name value`) and the `emclip sweep` command override it. `profile = None` reads `$EMCLIP_PROFILE` (`ci`, `cpu`, `gpu` or `auto`, the default, which picks `gpu` when CUDA is present).

# %% tags=["parameters"]
profile = None  # None reads $EMCLIP_PROFILE (ci, cpu, gpu or auto)
seed = 0
task_name = "fundus"  # "fundus" or "cardiac"
em_bases = None  # K; None: the profile's value
em_iters = None  # T; None: the profile's value
em_lam = None  # lambda of the E-step on raw features; None: the profile's value
toy_lam = 8.0  # concentration of the E-step in the unit-circle example
map_lam = 20.0  # concentration for the responsibility maps (centred, unit-norm features)
cost_ns = None  # token counts of the cost comparison; None: sized by the profile

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
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

import emclip
from emclip import runlog
from emclip.attention_cost import attention_cost
from emclip.clip import CLIPDenseEncoder, load_clip
from emclip.compactness import feature_compactness, flatten_dense
from emclip.data import get_dataset
from emclip.em import (
    EMAggregation,
    em_history,
    em_iterations,
    em_objective,
    init_bases,
    low_rank_reconstruction,
)
from emclip.exercises.em import check_em_iterations
from emclip.tasks import get_task
from emclip.viz import em as vem
from emclip.viz.widgets import explore

emclip.print_config(profile)

# %% [markdown]
# ## Why aggregate?
#
# CLIP's patch features are *dispersed*: the same structure (an optic cup, a ventricle) gives somewhat
# different features in every image, and the spread grows when the scanner or the hospital changes.
# EM-CLIP's first idea, borrowed from **EMANet** (Li et al., ICCV 2019), is to describe the N patch features
# of an image by a few (K) **bases** found by Expectation-Maximization, and to rebuild every pixel from them:
# pixels that belong together end up sharing one compact semantic centre, and the centres are what the
# text embeddings of the class names are matched against (notebook 05).
#
# One EM round, for features $x_n$ (columns of $X \in \mathbb{R}^{C\times N}$) and bases
# $\mu_k$ (columns of $M \in \mathbb{R}^{C\times K}$):
#
# * **E-step** $z_{nk} = \dfrac{\exp(\lambda\, x_n^\top \mu_k)}{\sum_j \exp(\lambda\, x_n^\top \mu_j)}$, the
#   responsibility of basis $k$ for pixel $n$;
# * **M-step** $\mu_k = \dfrac{\sum_n z_{nk} x_n}{\sum_n z_{nk}}$, then $\mu_k \leftarrow \mu_k / \lVert\mu_k\rVert$.
#
# After $T$ rounds the features are rebuilt as $\hat X = M Z^\top$, a rank-$K$ reconstruction. The cost is
# $O(NKT)$ instead of the $O(N^2)$ of non-local attention.

# %%
prof = emclip.get_profile(profile)
K = int(em_bases if em_bases is not None else prof.em_bases)
T = int(em_iters if em_iters is not None else prof.em_iters)
lam = float(em_lam if em_lam is not None else prof.em_lam)
emclip.seed_everything(seed)
task = get_task(task_name)
print(f"profile {prof.name!r}: K = {K} bases, T = {T} iterations, lambda = {lam}, task {task.name}")

# %% [markdown]
# ## 1. EM from scratch on the unit circle
#
# Put the features on the unit sphere (here the unit circle, C = 2). A **von Mises-Fisher** distribution of mean
# direction $\mu_k$ and concentration $\kappa$ has density $\propto \exp(\kappa\, \mu_k^\top x)$. For a mixture of K of
# them with equal weights, Bayes' rule gives the posterior of component $k$ for point $x_n$ as
# $\mathrm{softmax}_k(\kappa\, x_n^\top \mu_k)$: **the E-step above, with $\lambda = \kappa$**. The maximum-likelihood mean
# direction of a component is its responsibility-weighted sum of points, normalised to unit length: **the M-step**.
# So EMANet's unit runs EM for a vMF mixture (with fixed, equal weights and a fixed concentration), and each round
# cannot decrease that mixture's likelihood.
#
# Three clusters of points on the circle, and three random initial bases (EMANet's initialisation: Gaussian, then
# L2-normalised):

# %%
points, point_labels = vem.circle_data(n_per_cluster=60, centres_deg=(20, 140, 250), kappa=12.0, seed=seed)
x_toy = points.T.unsqueeze(0)  # (B=1, C=2, N)
mu0 = init_bases(2, 3, torch.Generator().manual_seed(seed))  # (1, C=2, K=3)
print("x", tuple(x_toy.shape), "mu", tuple(mu0.shape))

# %% [markdown]
# One round, written out with plain tensor operations (the package's `emclip.em.em_iterations` does the same,
# batched, in float32 whatever the input dtype):

# %%
logits = toy_lam * x_toy.transpose(1, 2) @ mu0  # (1, N, K): lambda * x_n . mu_k
z_toy = torch.softmax(logits, dim=2)  # E-step: each row sums to 1 over the K bases
weights = z_toy / (1e-6 + z_toy.sum(dim=1, keepdim=True))  # normalise each basis's column over the N points
mu1 = x_toy @ weights  # M-step: responsibility-weighted mean, (1, C, K)
mu1 = mu1 / (1e-6 + mu1.norm(dim=1, keepdim=True))  # back onto the unit circle

ref_mu, ref_z = em_iterations(x_toy, mu0, iters=1, lam=toy_lam)
assert torch.allclose(mu1, ref_mu, atol=1e-5) and torch.allclose(z_toy, ref_z, atol=1e-5)
print("one round by hand == emclip.em.em_iterations(x, mu, 1, lam)")

# %% [markdown]
# Now one iteration at a time: colour = most responsible basis, faded where that responsibility is low.

# %%
toy_history = em_history(x_toy, mu0, iters=5, lam=toy_lam)
fig = vem.plot_circle_em(points, mu0[0], toy_history, lam=toy_lam)
plt.show()
objective = [em_objective(x_toy, mu0, toy_lam).item()] + [
    em_objective(x_toy, m, toy_lam).item() for m, _ in toy_history
]
print("vMF mixture log-likelihood (+ const) per iteration:", [round(v, 2) for v in objective])
assert all(b >= a - 1e-4 for a, b in zip(objective, objective[1:])), "EM must not decrease the likelihood"

# %% [markdown]
# The likelihood rises at every round, as EM guarantees. $\lambda$ is the concentration: small $\lambda$ gives soft,
# almost uniform responsibilities (the bases drift towards the global mean); large $\lambda$ gives hard assignments
# (spherical k-means). Compare:

# %%
for lam_demo in (1.0, toy_lam, 50.0):
    hist = em_history(x_toy, mu0, iters=3, lam=lam_demo)
    sharp = hist[-1][1].max(dim=2).values.mean().item()
    print(f"lambda = {lam_demo:5.1f}: mean max responsibility after 3 rounds = {sharp:.2f}")
fig = vem.plot_circle_em(points, mu0[0], em_history(x_toy, mu0, iters=3, lam=1.0), lam=1.0)
plt.show()

# %% [markdown]
# ## 2. EM on CLIP patch features
#
# Dense features come from `emclip.clip.CLIPDenseEncoder` (the deepest tapped block) on synthetic images of
# the task's domains. **Which weights?** The next cell prints it: offline the kit uses a *tiny, randomly
# initialised* CLIP, whose features carry only low-level image statistics (colour, texture, position), so
# expect weak semantics here; with real CLIP weights (`gpu` profile with a network or a cache) the same cells
# show anatomy-aligned bases.

# %%
bundle = load_clip(prof.clip_model, pretrained=prof.clip_pretrained)
print(bundle.note if getattr(bundle, "note", None) else f"CLIP {bundle.name} ({bundle.pretrained})")
print("random weights:", bundle.is_random)
device = emclip.get_device("auto")
encoder = CLIPDenseEncoder(bundle).to(device)
n_images = min(prof.test_per_domain, 16)


def domain_batch(domain):
    ds = get_dataset(task, domain, split="test", size=prof.image_size, seed=seed, n=n_images)
    samples = [ds[i] for i in range(len(ds))]
    images = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["mask"] for s in samples])
    with torch.no_grad():
        feats = encoder(images.to(device))[-1].float().cpu()  # (B, C, h, w)
    return images, masks, feats


images, masks, feats = domain_batch(task.domains[0])
print(
    "images",
    tuple(images.shape),
    "-> features",
    tuple(feats.shape),
    f"(1 feature per {encoder.reduction} px)",
)

# %% [markdown]
# ### Responsibility maps, iteration by iteration
#
# Each column is one basis, each row one EM iteration; dark = the basis is responsible for that patch. For
# these maps the features are centred (the image's mean feature removed) and L2-normalised, so that
# `map_lam` is the vMF concentration of section 1 (a design choice of the lesson; see
# `emclip.viz.em.em_on_feature_map`).

# %%
fig = vem.responsibility_figure(feats[0], K=min(K, 8), T=T, lam=map_lam, seed=seed, image=images[0])
plt.show()

# %% [markdown]
# **Explore** K, T, $\lambda$ and the seed of the initial bases (needs a live kernel; the callback is the plain
# function `emclip.viz.em.responsibility_figure`). The static grid below shows the same figures for readers
# without a kernel: the hard assignment $\arg\max_k z_{nk}$ for a few $(\lambda, K)$ pairs.

# %%
import ipywidgets as widgets


def explore_responsibilities(K_bases, T_iters, log10_lam, init_seed):
    vem.responsibility_figure(
        feats[0], K=K_bases, T=T_iters, lam=10**log10_lam, seed=init_seed, image=images[0]
    )
    plt.show()


explore(
    explore_responsibilities,
    K_bases=widgets.IntSlider(value=min(K, 8), min=2, max=12),
    T_iters=widgets.IntSlider(value=T, min=1, max=6),
    log10_lam=widgets.FloatSlider(value=round(math.log10(map_lam), 1), min=0.0, max=2.5, step=0.1),
    init_seed=widgets.IntSlider(value=seed, min=0, max=9),
)

# %%
fig = vem.parameter_grid_figure(feats[0], lams=(1.0, map_lam, 100.0), Ks=(2, 4, 8), T=T, seed=seed)
plt.show()

# %% [markdown]
# ### The module: EMANet's EM attention unit
#
# `emclip.em.EMAggregation` wraps the iterations as EMANet does: a 1x1 conv in, T rounds started from a
# **buffer** of bases (not a learned parameter), the reconstruction $MZ^\top$, ReLU, a 1x1 conv out with
# normalisation, a residual connection. During training the buffer follows a moving average of the batch's
# final bases (momentum 0.9); in eval mode it does not move, and the number of rounds may differ (`eval_iters`).

# %%
torch.manual_seed(seed)
unit = EMAggregation(feats.shape[1], num_bases=K, iters=T, lam=lam, eval_iters=T + 2)
before = unit.mu.clone()
unit.eval()
out = unit(feats)
assert torch.equal(unit.mu, before), "eval mode must not move the bases"
unit.train()
out = unit(feats)
moved = (unit.mu - before).norm().item()
print(
    "features",
    tuple(out.features.shape),
    "bases",
    tuple(out.bases.shape),
    "responsibilities",
    tuple(out.responsibilities.shape),
)
print(f"bases buffer moved by {moved:.4f} after one training forward (0 in eval mode)")
assert moved > 0

# %% [markdown]
# ### Compactness before and after aggregation, per domain
#
# For every domain, the raw patch features and their EM reconstruction $\hat X = MZ^\top$ (EMANet's core with the
# run's K, T, $\lambda$ on the raw features, no learned convs) are scored against the ground-truth labels brought to
# the feature grid by majority vote: mean cosine distance to the class centroid (lower = compact), between/within
# scatter ratio and cosine silhouette (higher = better separated).

# %%
rows = []
for domain in task.domains:
    _, dom_masks, dom_feats = domain_batch(domain)
    b, c, h, w = dom_feats.shape
    mu_fit, z_fit = em_iterations(
        dom_feats.reshape(b, c, h * w), init_bases(c, K, torch.Generator().manual_seed(seed)), T, lam
    )
    recon = low_rank_reconstruction(mu_fit, z_fit).reshape(b, c, h, w)
    for stage, values in (("raw features", dom_feats), ("EM reconstruction", recon)):
        flat, labels = flatten_dense(values, dom_masks)
        rows.append({"domain": domain, "stage": stage, **feature_compactness(flat, labels, seed=seed)})
compactness = pd.DataFrame(rows)
display(compactness.round(3))
fig = vem.plot_compactness(compactness)
plt.show()

# %%
mean_by_stage = compactness.groupby("stage")[
    ["centroid_cosine_distance", "between_within", "silhouette"]
].mean()
raw, rec = mean_by_stage.loc["raw features"], mean_by_stage.loc["EM reconstruction"]
assert compactness.drop(columns=["domain", "stage"]).notna().all().all()
assert rec["centroid_cosine_distance"] < raw["centroid_cosine_distance"], (
    "the rank-K reconstruction should be more compact"
)
runlog.record(
    compactness_before=raw["centroid_cosine_distance"],
    compactness_after=rec["centroid_cosine_distance"],
    between_within_before=raw["between_within"],
    between_within_after=rec["between_within"],
    silhouette_before=raw["silhouette"],
    silhouette_after=rec["silhouette"],
    em_K=K,
    em_T=T,
    em_lam=lam,
)
mean_by_stage.round(3)

# %% [markdown]
# **Reading the numbers.** The reconstruction is always far more *compact* (every pixel is a convex combination of K
# unit bases). Whether it is also better *separated* (between/within, silhouette) depends on whether the bases
# follow the classes: with random tiny CLIP weights and $\lambda = 1$ on raw features the responsibilities are soft,
# so the reconstruction pulls all classes together and separation can drop. In EM-CLIP a learned 1x1 conv in front
# of the unit (and real CLIP features) shape the features so that the bases align with anatomy; notebook 05 trains it.

# %% [markdown]
# ## 3. The cost: EM attention against non-local attention
#
# Non-local attention (Wang et al. 2018) compares every token with every other: an N x N matrix. EM attention
# keeps N x K responsibilities. `emclip.attention_cost.attention_cost` times one inference forward of each block and
# gives the theoretical size of the attention map (on CUDA it also measures the peak memory; the benchmark
# `benchmarks/bench_em.py` measures CPU memory in subprocesses and goes to N = 16k).

# %%
if cost_ns is not None:
    ns = tuple(cost_ns)
elif prof.name == "ci":
    ns = (256, 512, 1024)
elif device.type == "cuda":
    ns = (1024, 2048, 4096, 8192, 16384)
else:
    ns = (1024, 2048, 4096)
channels, cost_bases = (128, K) if prof.name == "ci" else (512, 64)  # EMANet's head: C = 512, K = 64
cost = attention_cost(
    ns,
    channels=channels,
    num_bases=cost_bases,
    iters=T,
    device=device,
    repeats=1 if prof.name == "ci" else 3,
    seed=seed,
)
display(cost.round(3))
fig = vem.plot_attention_cost(cost)
plt.show()

# %%
largest = cost[cost["N"] == max(ns)].set_index("method")
speedup = largest.loc["nonlocal", "time_ms"] / largest.loc["em", "time_ms"]
memory_ratio = largest.loc["nonlocal", "attn_MiB"] / largest.loc["em", "attn_MiB"]
print(f"N = {max(ns)}: non-local / EM time = {speedup:.1f}x, attention-map memory = {memory_ratio:.0f}x")
assert memory_ratio == max(ns) / cost_bases  # N x N against N x K
runlog.record(cost_N=max(ns), cost_speedup=speedup, cost_memory_ratio=memory_ratio)


# %% [markdown]
# Wall times on a shared or busy machine are noisy (the table keeps the best of the repeats), so the notebook
# checks only the memory ratio, which is exact. Time of non-local attention grows as $N^2$ (its map alone is 1 GiB at N = 16k in float32), EM attention's as
# $N$. At small N the 1x1 convs around the EM unit dominate and non-local can even be faster; the cross-over is
# around N = 1-2k tokens for C = 512 on a CPU (see `python benchmarks/bench_em.py`).
#
# ## What to expect with real CLIP weights / real data
#
# With pretrained CLIP (e.g. `ViT-B-16`, `openai`) the patch features carry semantics: the responsibility maps
# of section 2 follow the optic disc and cup or the ventricles after one or two iterations, and the compactness
# gain of the reconstruction comes with better class separation. On the real Fundus-DG and M&Ms images the
# differences between centres (colour, contrast, resolution) shift the raw features, which is exactly the
# dispersion the EM bases absorb. The cost comparison does not depend on the weights.
#
# ## Exercises
#
# 1. **Write the EM iterations yourself.** Fill in `my_em_iterations` below (no `emclip.em` allowed) and run the
#    checker; it compares with the reference on random inputs and explains the usual mistakes.
# 2. **Is the division by $\sum_n z_{nk}$ needed?** Show numerically that, because of the L2 normalisation that
#    follows, the M-step's bases keep the same direction without it. Why does EMANet keep it anyway (think of fp16)?
# 3. **Temperature.** On the unit-circle data, move two cluster centres closer (`centres_deg=(20, 60, 250)`) and
#    find the smallest `toy_lam` for which EM still separates them. What happens as $\lambda \to \infty$?


# %%
def my_em_iterations(x, mu, iters, lam):
    """x (B, C, N), mu (B, C, K) -> (mu (B, C, K), z (B, N, K)). Replace the body with your own code."""
    return em_iterations(x, mu, iters, lam)  # <- the reference; write yours instead


check_em_iterations(my_em_iterations)
