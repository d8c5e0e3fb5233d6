"""CLIP for emclip: loading (open_clip), dense visual features, text embeddings, a feature cache.

    >>> from emclip.clip import load_clip, CLIPDenseEncoder, class_text_embeddings
    >>> bundle = load_clip()                        # offline default: emclip-tiny, the kit's "synth-v2" weights
    >>> control = load_clip("emclip-tiny", "random")  # the same model at random initialisation
    >>> encoder = CLIPDenseEncoder(bundle)          # frozen, taps 3 blocks
    >>> text = class_text_embeddings(bundle, "fundus")   # (2, embed_dim)

Modules: ``loading`` (``load_clip``, weights checks, ``download_weights``), ``weights`` (the
weights shipped in the package, SHA256 checks), ``dense`` (``CLIPDenseEncoder``), ``text``
(prompt ensembling, similarity maps), ``cache`` (``FeatureCache``), ``pretrain`` (the kit's own
contrastive pretraining: corpus, recipe, evaluation; imported on demand).
"""

from emclip.clip.cache import FeatureCache
from emclip.clip.dense import CLIPDenseEncoder, check_image_batch, default_layers
from emclip.clip.loading import (
    BIOMEDCLIP,
    TINY_MODEL,
    TINY_MODELS,
    ClipBundle,
    WeightsUnavailableError,
    check_weights_available,
    download_weights,
    list_clip_models,
    load_clip,
    verify_sha256,
)
from emclip.clip.text import (
    class_text_embeddings,
    clear_text_cache,
    encode_prompts,
    ensemble,
    pixel_text_similarity,
)
from emclip.clip.weights import list_shipped_weights

__all__ = [
    "BIOMEDCLIP",
    "CLIPDenseEncoder",
    "ClipBundle",
    "FeatureCache",
    "TINY_MODEL",
    "TINY_MODELS",
    "WeightsUnavailableError",
    "check_image_batch",
    "check_weights_available",
    "class_text_embeddings",
    "clear_text_cache",
    "default_layers",
    "download_weights",
    "encode_prompts",
    "ensemble",
    "list_clip_models",
    "list_shipped_weights",
    "load_clip",
    "pixel_text_similarity",
    "verify_sha256",
]
