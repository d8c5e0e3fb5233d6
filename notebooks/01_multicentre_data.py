# %% [markdown]
# # 01 · Multi-centre data: four hospitals, four scanners
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - see what domain shift looks like in fundus photographs and cardiac MRI
# - read a domain as a style (colour, contrast, gamma, illumination, blur, noise) kept as data
# - measure the gap: a domain classifier and a segmenter that fails off its training domain
# - use the splits, protocols and loaders that every later notebook trains and tests on
#
# **Expected runtime** — `cpu` profile: 17 s (measured on the kit's 2-core CPU machine as the CPU time of
# one thread, which depends little on the machine's load) · `ci` profile: < 1 min · `colab` profile on a Colab
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
seed = 0
image_size = None  # None: the profile's image size
size_show = 96  # pixels of the displayed samples
n_show = 2  # samples per domain in the grids
size_stats = 48  # pixels of the samples used for statistics
n_stats = 16  # samples per domain for histograms and the domain classifier
shift_sources = 1  # source domains the pixel classifier is fitted on (4 = full matrix)
n_shift_train = 6  # training images of the pixel classifier
n_shift_test = 4  # test images per domain

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
import pandas as pd
import torch

import emclip
import emclip.data as data
import emclip.exercises.data as exercises
import emclip.runlog
import emclip.tasks
import emclip.viz.data as viz
from emclip.data import shift, style_table
from emclip.exercises import attempt
from emclip.viz.widgets import explore

emclip.print_config(profile)

# %% [markdown]
# ## Why multi-centre data
#
# A segmentation model trained on the photographs of one hospital, or the MRI of one scanner vendor, meets
# different colours, contrast, illumination, blur and noise elsewhere: the **domain shift** that EM-CLIP is
# built to survive. The two public benchmarks are **Fundus-DG** (DoFE: Drishti-GS, RIM-ONE-r3, REFUGE Zeiss,
# REFUGE Canon) and **M&Ms** (Siemens, Philips, GE, Canon). They must be downloaded by hand, so the kit ships a
# **synthetic multi-centre generator** with the same label maps and domain keys: each domain is a *style*
# (a row of a table) applied to randomly drawn anatomy.

# %%
prof = emclip.get_profile(profile)
size = prof.image_size if image_size is None else image_size
print(
    f"profile {prof.name!r}: images {size} px, {prof.train_per_domain} train / {prof.test_per_domain} test per domain"
)

# %% [markdown]
# ## The styles are data
#
# Every domain is one `DomainStyle`: colour cast (`gain`), `offset`, `contrast`, `gamma`, an `illumination`
# field (fundus vignetting, MRI coil bias field), `blur` and acquisition `resolution`, the `noise` model
# (Gaussian for cameras, **Rician** for MRI magnitude images), the fundus camera field of view (`fov`) and a
# content prior (`scale` of the anatomy).

# %%
style_table("fundus")

# %%
style_table("cardiac")

# %% [markdown]
# ## Four domains side by side
#
# Fundus ROIs are disc-centred like the Fundus-DG crops: the disc (green tint = rim, blue = cup) is a bright
# ellipse near the centre, the vessel tree leaves it and crosses the rim. Cardiac slices go from base to apex
# (red LV, green MYO, blue RV; the RV is missing at some apical slices).

# %%
fig = viz.plot_domain_grid("fundus", n_per_domain=n_show, size=size_show, seed=seed)
plt.show()
fig = viz.plot_domain_grid("cardiac", n_per_domain=n_show, size=size_show, seed=seed)
plt.show()


# %% [markdown]
# **Browse** any domain of either task, sample by sample, with the mask tint on or off (needs a live kernel;
# the callback is the plain function `emclip.viz.data.sample_figure`). The grids above are the static
# version of the same view.


# %%
def browse_samples(task_domain, index, show_mask):
    viz.sample_figure(*task_domain, index=index, size=size_show, show_mask=show_mask, seed=seed)
    plt.show()


explore(
    browse_samples,
    task_domain=widgets.Dropdown(
        options=[
            (f"{t} {d}: {emclip.tasks.get_task(t).domain_names[d]}", (t, d))
            for t in ("fundus", "cardiac")
            for d in emclip.tasks.get_task(t).domains
        ],
        description="task, domain",
    ),
    index=widgets.IntSlider(value=0, min=0, max=prof.train_per_domain - 1),
    show_mask=widgets.Checkbox(value=True, description="mask overlay"),
)

# %% [markdown]
# ### A real photograph for comparison
#
# `skimage.data.retina()` is a full-field colour fundus photograph (public domain, shipped with scikit-image).
# Fundus-DG images are **crops around the optic disc**, like the second panel; the synthetic domains imitate
# those crops, with larger discs than in a full-field view.

# %%
fig = viz.plot_retina_reference(size=size_show, seed=seed)
plt.show()

# %% [markdown]
# ## Intensity and colour histograms per domain
#
# The first thing a network sees is the pixel values. The histograms barely overlap between some domains.

# %%
for task_name in ("fundus", "cardiac"):
    fig = viz.plot_intensity_histograms(task_name, n_per_domain=n_stats, size=size_stats, seed=seed)
    plt.show()

# %% [markdown]
# ## Measuring the domain gap
#
# Two measurements (`emclip.data.shift`):
#
# 1. **Can simple image statistics tell the domains apart?** A logistic regression (scikit-learn) on 17 numbers
#    per image (per-channel mean, std, percentiles, sharpness, noise level), cross-validated. Chance is 25 %.
# 2. **Does a segmenter fitted on one domain fail on the others?** A gradient-boosted pixel classifier on
#    multi-scale intensities and pixel position, trained on one domain's train split and tested on every domain's
#    test split. The diagonal is in-domain Dice; the rest is what domain shift costs.

# %%
gap = {
    t: shift.domain_classifier_accuracy(t, n_per_domain=n_stats, size=size_stats, seed=seed)
    for t in ("fundus", "cardiac")
}
pd.DataFrame(gap).T[["accuracy", "chance"]]

# %%
frames, summaries = {}, {}
for task_name in ("fundus", "cardiac"):
    sources = emclip.tasks.get_task(task_name).domains[:shift_sources]
    frames[task_name] = shift.pixel_segmenter_shift(
        task_name,
        train_domains=sources,
        n_train=n_shift_train,
        n_test=n_shift_test,
        size=size_stats,
        seed=seed,
    )
    summaries[task_name] = shift.shift_summary(frames[task_name])
    fig = viz.plot_shift_matrix(frames[task_name])
    plt.show()
pd.DataFrame(summaries).T.round(3)

# %%
for task_name in ("fundus", "cardiac"):
    assert gap[task_name]["accuracy"] > gap[task_name]["chance"] + 0.3, gap[task_name]
    assert summaries[task_name]["dice_drop"] > 0.1, summaries[task_name]
emclip.runlog.record(
    fundus_domain_classifier_acc=gap["fundus"]["accuracy"],
    cardiac_domain_classifier_acc=gap["cardiac"]["accuracy"],
    fundus_pixel_in_domain_dice=summaries["fundus"]["in_domain_dice"],
    fundus_pixel_out_domain_dice=summaries["fundus"]["out_domain_dice"],
    cardiac_pixel_in_domain_dice=summaries["cardiac"]["in_domain_dice"],
    cardiac_pixel_out_domain_dice=summaries["cardiac"]["out_domain_dice"],
)

# %% [markdown]
# ## Protocols, splits and loaders
#
# Domain generalisation is evaluated with **protocols**: single-source (train on one domain, test on the
# others) and leave-one-domain-out (train on three, test on the fourth). They are data too.

# %%
pd.DataFrame(
    [{"protocol": p, **s._asdict()} for p in data.PROTOCOLS for s in data.get_protocol("cardiac", p)]
)

# %% [markdown]
# `domain_datasets` sizes the data from the profile; `make_dataloader` batches it and can augment it
# (appearance: brightness, contrast, gamma, colour, noise; geometry: flip, rotation, scale, shift, applied to
# image and mask alike). Augmentation is one classic answer to domain shift; EM-CLIP's answer is different
# (notebooks 02-06).

# %%
train_set = data.domain_datasets("fundus", ["domain1", "domain2"], "train", prof, seed=seed)
loader = data.make_dataloader(train_set, batch_size=8, shuffle=True, augment=True, seed=seed)
batch = next(iter(loader))
print({k: (tuple(v.shape), v.dtype) if hasattr(v, "shape") else v[:3] for k, v in batch.items()})
assert (
    batch["image"].shape[1:] == (3, prof.image_size, prof.image_size) and batch["mask"].dtype == torch.int64
)
fig = viz.plot_batch(batch, "fundus")
plt.show()

# %% [markdown]
# ## Real data (when `EMCLIP_DATA_DIR` holds it)
#
# `data/README.md` says where to download Fundus-DG and M&Ms and how to lay them out; `emclip prepare --task
# fundus --root DIR` checks a tree. With the data in place, `get_dataset(..., source="real")` reads it with the
# same sample contract, and the cell below shows it.

# %%
from emclip.data.checks import check_tree
from emclip.runtime import data_dir

root = data_dir()
if root is None:
    print(
        "EMCLIP_DATA_DIR is not set: skipping the real-data view (synthetic data only). "
        "See data/README.md to download Fundus-DG / M&Ms."
    )
else:
    for task_name in ("fundus", "cardiac"):
        report = check_tree(task_name, root)
        print("\n".join(report.lines()))
        if report.ok:
            fig = viz.plot_domain_grid(
                task_name, n_per_domain=n_show, size=size_show, source="real", root=root
            )
            plt.show()
        else:
            print(f"-> {task_name}: real data incomplete, skipped.")


# %% [markdown]
# ## What to expect with real data
#
# Real Fundus-DG and M&Ms centres also differ in ways the synthetic styles do not model (anatomy, pathology,
# annotation protocol, field of view). The synthetic styles are a design choice of the kit, set by hand so
# that the shift is easy to see; they are not calibrated to reproduce any published gap, and the kit has not
# measured the gap on the real sets (the measurements above use synthetic data).
#
# ## Exercises
#
# Each code exercise starts from a stub that raises `NotImplementedError`; replace it with your code and
# run the cell: `attempt(checker, your_function)` says "not attempted yet", explains what is wrong, or
# says it is correct.
#
# 1. **Decode a DoFE mask.** Write `my_decode(grey)`: a grey mask (H, W) uint8 -> labels (> 200 background
#    0, 51..200 rim 1, <= 50 cup 2).
# 2. **Rician noise.** Write `my_rician(image, sigma, rng)`: the magnitude of a complex signal whose real part
#    is `image` plus Gaussian noise of std `sigma` and whose imaginary part is Gaussian noise alone. Then
#    answer: why is a dark MRI background never zero on average?
# 3. **Appearance or anatomy?** Make `domain4` look like `domain1` with
#    `dataclasses.replace(data.STYLES["fundus"]["domain4"], ...)` (edit the table in place, e.g.
#    `data.STYLES["fundus"]["domain4"] = ...`) and rerun the pixel classifier: how much of the Dice drop was
#    appearance, how much anatomy (`scale`)?


# %%
def my_decode(grey):
    """grey (H, W) uint8 -> labels (H, W) int: > 200 background 0, 51..200 rim 1, <= 50 cup 2."""
    raise NotImplementedError  # your code here


attempt(exercises.check_decode_fundus_mask, my_decode)


# %%
def my_rician(image, sigma, rng):
    """image (H, W) float, sigma: noise std, rng: numpy Generator -> noisy magnitude image (H, W)."""
    raise NotImplementedError  # your code here


attempt(exercises.check_rician_noise, my_rician)
