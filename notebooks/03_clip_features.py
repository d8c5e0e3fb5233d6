# %% [markdown]
# # 03 · CLIP features: dense patch features, text embeddings, zero-shot maps and the domain gap
#
# *Open in Colab: this copy of the kit has no public home yet, so there is no badge (see the set-up cell).*
#
# **You will learn to**
#
# - load a CLIP model with open_clip and tell which weights run (real, file, or the tiny random default)
# - extract multi-level dense patch features and look at them as PCA colours
# - build prompt-ensembled class text embeddings and compare them
# - draw zero-shot pixel-text similarity maps (MaskCLIP's value path) and score them
# - measure the domain gap of image embeddings with PCA, t-SNE and a linear probe
#
# **Expected runtime** — `cpu` profile: 19 s (measured on the kit's 2-core CPU machine as the CPU time of
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
task_name = "fundus"  # "fundus" or "cardiac"
clip_model = None  # None: the profile's clip_model (emclip-tiny on ci/cpu, ViT-B-16 on gpu)
clip_pretrained = "profile"  # "profile": the profile's value; None (random), "auto", a tag or a weights file
images_per_domain = None  # None: 4 on ci, 12 on cpu, 24 on colab and gpu

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
import torch
import torch.nn.functional as F

import emclip
from emclip import runlog
from emclip.clip import CLIPDenseEncoder, class_text_embeddings, load_clip, pixel_text_similarity
from emclip.clip.analysis import channel_masks, domain_probe_accuracy, image_embeddings, region_contrast
from emclip.data import get_dataset
from emclip.exercises import attempt
from emclip.exercises.clip import check_prompt_ensemble, check_similarity_map
from emclip.models import get_model_config
from emclip.tasks import get_task, list_tasks
from emclip.viz import clip as vclip
from emclip.viz.widgets import explore

emclip.print_config(profile)

# %% [markdown]
# ## 1. Load CLIP, and say which weights run
#
# `load_clip(name, pretrained)` wraps open_clip. EM-CLIP's model config names a CLIP model and its weights
# (`get_model_config("emclip", prof)["clip"]`; the parameters above can override both): real pretrained weights
# when they are cached or downloadable, the kit's own small pretrained model (notebook 02), or a random
# initialisation (the control). The line printed below says which weights run; read the rest of the notebook
# with it in mind.

# %%
prof = emclip.get_profile(profile)
emclip.seed_everything(seed)
device = emclip.get_device("auto")
task = get_task(task_name)
clip_config = get_model_config("emclip", prof)["clip"]  # the CLIP tower EM-CLIP uses in this profile
model_name = clip_model or clip_config["model"]
pretrained = clip_config["pretrained"] if clip_pretrained == "profile" else clip_pretrained
pretrained = None if pretrained == "random" else pretrained  # None: random initialisation, the control
bundle = load_clip(model_name, pretrained, device=device)
print("CLIP weights in use ->", bundle.note)
if bundle.is_random:
    print(
        "RANDOM WEIGHTS: the figures below show the machinery (shapes, maps, probes), not CLIP's knowledge. "
        "The last section says what these numbers do and do not show."
    )
encoder = CLIPDenseEncoder(bundle).to(device)  # frozen; taps three blocks, deepest last
size = prof.image_size - prof.image_size % encoder.input_multiple
n_per_domain = images_per_domain or {"ci": 4, "cpu": 12}.get(prof.name, 24)
print(encoder.extra_repr())
print(f"input {size}x{size} -> feature grid {size // encoder.reduction}x{size // encoder.reduction}")

# %% [markdown]
# ## 2. Images of the four domains
#
# The synthetic multi-centre data of notebook 01 (same generator, test split): each domain has its own
# colour cast, contrast, illumination, blur and noise.

# %%
batches = [get_dataset(task, d, split="test", size=size, n=n_per_domain, seed=seed) for d in task.domains]
samples = [batch[i] for batch in batches for i in range(len(batch))]
images = torch.stack([s["image"] for s in samples]).to(device)
masks = torch.stack([s["mask"] for s in samples]).to(device)
domains = [s["domain"] for s in samples]
first = [domains.index(d) for d in task.domains]  # one example image per domain
assert images.shape == (len(task.domains) * n_per_domain, 3, size, size)
print(images.shape, "images;", {d: domains.count(d) for d in task.domains})

# %% [markdown]
# ## 3. Patch features as colours
#
# `encoder(images)` returns one feature map (B, C, h, w) per tapped block. To look at C-dimensional
# features we project every patch onto the first three principal components (one PCA over all four images,
# so colours mean the same everywhere) and show them as RGB. Patches with similar features get similar colours.

# %%
with torch.no_grad():
    taps = encoder(images[first])
for level, feats in zip(encoder.layers, taps):
    assert feats.shape == (
        len(first),
        encoder.out_channels[encoder.layers.index(level)],
        size // encoder.reduction,
        size // encoder.reduction,
    )
    fig = vclip.plot_pca_rgb(
        images[first].cpu(), feats.cpu(), titles=[f"{d} (block {level})" for d in task.domains]
    )
    plt.show()

# %% [markdown]
# ## 4. Text embeddings of the regions
#
# Each logit channel has several prompts (templates x descriptions). CLIP's *prompt ensembling* encodes
# every sentence, normalises, averages per class and normalises again. The matrix shows the cosine
# similarity of all class embeddings of both tasks.

# %%
names, rows = [], []
for other in list_tasks():
    emb = class_text_embeddings(bundle, other)
    rows.append(emb.cpu())
    names += [f"{other}:{n}" for n in get_task(other).output_names]
all_text = torch.cat(rows)
assert torch.allclose(all_text.norm(dim=1), torch.ones(len(names)), atol=1e-5)
fig = vclip.plot_text_similarity(all_text, names)
plt.show()
sim = all_text @ all_text.T
off_diag = float(sim[~torch.eye(len(names), dtype=torch.bool)].mean())
print(f"mean off-diagonal cosine similarity: {off_diag:.3f}")
for channel, prompts in zip(task.output_names, task.prompts()):
    print(f"{channel:12s} {len(prompts)} prompts, e.g. {prompts[0]!r}")

# %% [markdown]
# ## 5. Zero-shot pixel-text similarity maps
#
# `encoder.dense_embeddings(images)` puts every patch into the joint image-text space along MaskCLIP's value
# path. In the last block each patch token $x_j$ keeps its own value, as if it attended only to itself
# ($a_j = W_o(W_v\,\mathrm{ln}_1(x_j) + b_v)$), adds it to its residual stream ($x_j + a_j$), goes through the block's
# MLP with its residual, then `ln_post` and the projection (`CLIPDenseEncoder.value_tokens` and `.head`).
# The cosine similarity of each patch with each class embedding gives one map per prompt, with no training.
# The *contrast* is the mean similarity inside the true region minus outside it (above 0: the prompt
# lights up its own region).
#
# Note: the mean of these dense embeddings is *not* CLIP's global image embedding (`encode_image`). That one
# is the CLS token's output: the CLS token attends to all tokens with learned, unequal weights, and only its
# own result goes through the residual, the MLP, `ln_post` and the projection. Here every patch goes through
# its own residual, MLP, `ln_post` and projection, and those non-linear steps do not commute with averaging.
# What does hold, and `tests/test_clip_dense.py` checks it: if the last block's attention were uniform, the CLS
# token's path fed with the *mean of the patch values* would give `encode_image` exactly; the mean of the dense
# embeddings would still not.

# %%
text = class_text_embeddings(bundle, task, device=device)
with torch.no_grad():
    dense = encoder.dense_embeddings(images)
similarity = pixel_text_similarity(dense, text)
assert similarity.shape == (
    len(images),
    task.num_outputs,
    size // encoder.reduction,
    size // encoder.reduction,
)
assert float(similarity.abs().max()) <= 1 + 1e-5
fig = vclip.plot_similarity_maps(
    images[first].cpu(), similarity[first].cpu(), task.output_names, titles=list(task.domains)
)
plt.show()
contrast = region_contrast(similarity, channel_masks(task, masks)).cpu()
for name, value in zip(task.output_names, contrast.tolist()):
    print(f"zero-shot contrast {name:12s} {value:+.3f}")

# %% [markdown]
# **Explore** every image of every domain, one class prompt at a time (needs a live kernel; the callback is
# the plain function `emclip.viz.clip.prompt_map_figure`, which also prints that image's contrast). The
# figure above is the static version: the first image of each domain with all prompts.

# %%
gt_masks = channel_masks(task, masks).cpu()


def explore_similarity(domain, index, prompt):
    vclip.prompt_map_figure(
        images.cpu(), similarity.cpu(), task.output_names, domains, domain, index, prompt, masks=gt_masks
    )
    plt.show()


explore(
    explore_similarity,
    domain=widgets.Dropdown(options=list(task.domains)),
    index=widgets.IntSlider(value=0, min=0, max=n_per_domain - 1),
    prompt=widgets.Dropdown(
        options=[(f"{name} ({len(p)} prompts)", name) for name, p in zip(task.output_names, task.prompts())]
    ),
)

# %% [markdown]
# ## 6. Image embeddings of the four domains, and the domain gap
#
# One embedding per image (CLIP's global embedding), mapped to 2-D with PCA and t-SNE and coloured by
# domain. The **domain gap** number is the cross-validated accuracy of a linear probe that predicts the
# domain from the embedding: 0.25 is chance for four domains, 1.0 means the domains are perfectly separable.
# For comparison, the same probe on down-sampled raw pixels.

# %%
emb = image_embeddings(encoder, images)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
vclip.plot_embedding_scatter(emb, domains, "pca", ax=axes[0], random_state=seed)
vclip.plot_embedding_scatter(emb, domains, "tsne", ax=axes[1], random_state=seed)
fig.tight_layout()
plt.show()
probe_acc = domain_probe_accuracy(emb, domains, seed=seed)
raw = F.adaptive_avg_pool2d(images, 8).flatten(1).cpu()
raw_acc = domain_probe_accuracy(raw, domains, seed=seed)
chance = 1 / len(task.domains)
print(
    f"domain probe accuracy: CLIP embedding {probe_acc:.2f}, raw 8x8 pixels {raw_acc:.2f}, chance {chance:.2f}"
)
assert 0.0 <= probe_acc <= 1.0 and emb.shape == (len(images), encoder.embed_dim)

# %%
runlog.record(
    clip_model=bundle.model_id,
    clip_is_random=bundle.is_random,
    clip_domain_probe_acc=probe_acc,
    raw_pixel_domain_probe_acc=raw_acc,
    domain_probe_chance=chance,
    text_offdiag_cosine=off_diag,
    zero_shot_contrast={n: float(v) for n, v in zip(task.output_names, contrast.tolist())},
)


# %% [markdown]
# ### What these numbers say, and what they do not
#
# The sentences below are computed from this run's measurements, with the weights printed in section 1.

# %%
weights = "randomly initialised" if bundle.is_random else f"pretrained ({bundle.note})"
best_contrast = max(zip(contrast.tolist(), task.output_names))
print(
    f"- Weights: {bundle.model_id}, {weights}.\n"
    f"- Text: the class embeddings have a mean off-diagonal cosine of {off_diag:.2f}"
    + (" -- close together, far from distinct anchors." if off_diag > 0.5 else " -- well spread apart.")
    + f"\n- Zero-shot maps: the highest region contrast is {best_contrast[0]:+.3f} ({best_contrast[1]})"
    + (", near zero: the maps do not find the regions." if abs(best_contrast[0]) < 0.05 else ".")
    + f"\n- Domain gap: a linear probe tells the domains apart from the image embedding with accuracy "
    f"{probe_acc:.2f} (raw 8x8 pixels: {raw_acc:.2f}; chance {chance:.2f})."
)

# %% [markdown]
# The kit has not measured this notebook with real pretrained CLIP weights: they cannot be downloaded offline.
# With a network (or a filled cache), `EMCLIP_PROFILE=gpu` loads ViT-B-16's `openai` weights, and
# `load_clip("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")` BiomedCLIP; rerun the notebook
# and compare the four numbers above. Nor has it measured the real Fundus-DG or M&Ms images here
# (`EMCLIP_DATA_DIR`).

# %% [markdown]
# ## Exercises
#
# 1. **Prompt ensembling.** Write `my_ensemble(per_class)`: a list (one entry per class) of raw text
#    embeddings (P_c, D) -> class embeddings (num_classes, D). The checker explains the usual mistakes.
# 2. **Similarity maps.** Write `my_similarity(dense, text)`: dense (B, D, h, w), text (K, D) -> cosine
#    similarities (B, K, h, w).
# 3. **Open question.** Re-run with `CLIPDenseEncoder(bundle, layers=[1])` and compare the PCA colours of the
#    first block with the deepest one. Which one separates the domains more (run the probe on the pooled
#    features)? Why would a decoder want several levels?


# %%
def my_ensemble(per_class):
    """[(P_c, D) raw text embeddings, one tensor per class] -> class embeddings (num_classes, D)."""
    raise NotImplementedError  # your code here


attempt(check_prompt_ensemble, my_ensemble)


# %%
def my_similarity(dense, text):
    """dense (B, D, h, w), text (K, D) -> cosine similarity of every pixel with every class (B, K, h, w)."""
    raise NotImplementedError  # your code here


attempt(check_similarity_map, my_similarity)
