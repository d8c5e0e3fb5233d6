# %% [markdown]
# # 00 · Welcome to emclip
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - say what EM-CLIP is and what each notebook teaches
# - choose a run profile (ci / cpu / colab / gpu) and see the device the kit will use
# - read the two tasks: regions, label maps, domains and class prompts
#
# **Expected runtime** — `cpu` profile: 10 s (measured on the kit's 2-core CPU machine as the CPU time of
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
task_name = "fundus"

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
import numpy as np
import pandas as pd
import torch

import emclip
import emclip.runlog
from emclip.tasks import get_task, list_tasks

emclip.print_config(profile)

# %% [markdown]
# ## What this kit is
#
# **EM-CLIP** (Yu, Zhou et al., *Vision-Language Semantic Aggregation Leveraging Foundation Model for
# Generalizable Medical Image Segmentation*, arXiv 2509.08570) segments medical images so that a model
# trained on images from one hospital or scanner still works on images from another. It combines three
# pieces, and the notebooks take them one at a time:
#
# | step | idea | notebook |
# |---|---|---|
# | foundation model | a small CLIP that the kit pretrains itself on synthetic image-text pairs, against the same model with random weights: what pretraining adds | 02 |
# | CLIP features | a vision-language foundation model (open_clip) gives dense patch features and text embeddings of the class names | 03 |
# | EM aggregation | Expectation-Maximization iterations (as in EMANet) cluster the dispersed patch features into K compact semantic centres | 04 |
# | text-guided pixel decoder | the class text embeddings steer the pixel features and score every pixel | 05 |
# | cross-domain evaluation | train on some centres, test on unseen ones (Dice, HD95 per domain and region) | 06 |
#
# Everything runs offline, on synthetic multi-centre data (notebook 01) and a small CLIP that ships with the kit
# (notebook 02 says which weights it has and what pretraining adds); with internet or a cache the same code uses
# real CLIP weights, and with `EMCLIP_DATA_DIR` set the real data sets. The paper's code, hyper-parameters and
# results are not public (only its abstract is): where the kit fills a gap, it says "design choice, not from the
# paper".

# %% [markdown]
# ## The run profile and the device
#
# One switch sizes every run: `ci` takes seconds (tests), `cpu` a few minutes per notebook on a laptop, `colab`
# fits a class on a Colab T4 GPU, `gpu` trains a larger model for longer (the kit's choice of settings: the
# paper's are not public).

# %%
prof = emclip.get_profile(profile)
device = emclip.get_device("auto")
emclip.seed_everything(seed)
print(f"profile {prof.name!r} on {device}")
pd.DataFrame([p.as_dict() for p in emclip.PROFILES.values()]).set_index("name")

# %% [markdown]
# ## The two tasks
#
# **Fundus** (DoFE's Fundus-DG benchmark): optic disc and cup in colour fundus photographs from four centres.
# The disc contains the cup, so the model predicts two independent (sigmoid) channels.
# **Cardiac** (M&Ms): left ventricle, myocardium and right ventricle in short-axis cine MRI from four vendors;
# the classes are disjoint, so the model predicts a softmax over background + 3 classes.

# %%
rows = []
for name in list_tasks():
    task = get_task(name)
    for domain in task.domains:
        rows.append(
            {
                "task": name,
                "mode": task.mode,
                "domain": domain,
                "centre / vendor": task.domain_names[domain],
                "regions": ", ".join(task.region_names),
                "logit channels": task.num_outputs,
            }
        )
tasks_table = pd.DataFrame(rows)
tasks_table

# %% [markdown]
# Each logit channel has a few text prompts; CLIP's *prompt ensembling* averages their embeddings.

# %%
task = get_task(task_name)
for channel, sentences in zip(task.output_names, task.prompts()):
    print(f"{channel:>10s}: {sentences[0]!r} (+{len(sentences) - 1} more)")

# %% [markdown]
# ## Label maps and regions
#
# A sample's mask is a label map. For fundus, 0 is background, 1 the disc rim and 2 the cup;
# the *disc* region is labels 1 and 2, the *cup* region label 2. Here is a toy label map made of two circles:

# %%
yy, xx = np.mgrid[:64, :64]
radius = np.hypot(yy - 32, xx - 32)
label_map = torch.from_numpy(np.where(radius < 10, 2, np.where(radius < 20, 1, 0)))
regions = get_task("fundus").region_masks(label_map)
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].imshow(label_map, cmap="viridis")
axes[0].set_title("label map (0/1/2)")
for ax, name, region in zip(axes[1:], get_task("fundus").region_names, regions):
    ax.imshow(region, cmap="gray")
    ax.set_title(f"region '{name}'")
for ax in axes:
    ax.axis("off")
plt.show()

# %%
# The disc region contains the cup region, and the areas follow from the two radii.
assert bool((regions[1] <= regions[0]).all())
disc_area, cup_area = (int(r.sum()) for r in regions)
assert abs(disc_area - np.pi * 20**2) / (np.pi * 20**2) < 0.05
assert abs(cup_area - np.pi * 10**2) / (np.pi * 10**2) < 0.1
emclip.runlog.record(profile=prof.name, device=str(device), cup_to_disc_area=cup_area / disc_area)

# %% [markdown]
# ## A class that fits: 90 minutes, then homework
#
# **Before class** (instructor): run `make run` once (every notebook in the `cpu` profile; it writes executed
# copies to `results/notebooks/`, so the slow cells can be shown from there), and check which CLIP weights the
# kit loads (notebook 02). In class, students run the `ci` profile (`EMCLIP_PROFILE=ci`, seconds per notebook)
# or Colab (the `colab` profile). The minutes below are a teaching plan; each notebook's header gives its
# measured run time.
#
# | minutes | notebook | sections |
# |---|---|---|
# | 0-5 | 00 Welcome | what the kit is; the two tasks |
# | 5-15 | 01 Multi-centre data | four domains side by side; measuring the domain gap |
# | 15-25 | 02 Foundation model | the shipped weights against the random control |
# | 25-55 | 04 EM aggregation | 1 EM on the unit circle; 2 the 2-D toy with its predict-then-run; exercise 1 |
# | 55-85 | 06 Cross-domain evaluation | the claim, your prediction, the measured comparison, the plain reading |
# | 85-90 | wrap-up | 06 exercise 4: what run would make the reading evidence? |
#
# **Homework** (about 2.5 hours): 03 CLIP features with exercises 1-2 (30 min); 05 decoder training with
# exercises 1-2 (30 min); 01 exercises 1-2 (15 min); 04 sections 3-4 and exercises 2-4 (30 min); 06 tables,
# figures and exercises 1-3 (30 min); 07 parameter sweeps with exercise 1 (20 min).
#
# All notebooks in order: `01_multicentre_data` → `02_foundation_model` → `03_clip_features` →
# `04_em_aggregation` → `05_decoder_training` → `06_cross_domain_evaluation` → `07_parameter_sweeps`.
#
# ## Exercises
#
# 1. Set `profile = "cpu"` in the parameters cell and re-run: which sizes change?
# 2. `get_task("cardiac").region_masks(...)` on a label map with values 0..3: check that the three regions never overlap.
# 3. Run `emclip info` in a terminal and find where the kit looks for real data.
