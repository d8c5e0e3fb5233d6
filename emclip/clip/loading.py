"""Load a CLIP model through open_clip, and find out -- quickly -- whether its weights are reachable.

Accepted ``(name, pretrained)`` pairs (``emclip.clip.list_clip_models()`` lists them):

- ``("emclip-tiny", "synth-v2")``: the kit's own pretrained weights, shipped in the package
  (``emclip/clip/weights/``, safetensors, sha256-checked before loading; the model card beside
  them says what they were trained on and what they never saw). **The offline default**:
  ``load_clip()`` loads them. ``list_shipped_weights()`` lists the shipped tags.
- ``("emclip-tiny", "random")`` / ``("emclip-tiny-rn", "random")``: tiny open_clip configs of this
  package (``emclip/clip/model_configs/*.json``, registered with ``open_clip.add_model_config``),
  randomly initialised from a fixed seed: the named control that shows what pretraining adds.
  ``pretrained=None`` means the same (open_clip's meaning: random init), for every model.
- ``("ViT-B-16", "openai")``, ``("ViT-B-16", "laion2b_s34b_b88k")``, ``("RN50", "openai")``, ... :
  open_clip's built-in architectures and pretrained tags.
- ``("ViT-B-16", "/path/to/weights.pt")``: a local weights file (``sha256=`` verifies it: the full
  digest or a prefix of at least 16 hex characters).
- ``("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None)``: a Hugging Face
  hub repository (BiomedCLIP's PubMedBERT tokenizer needs ``transformers``:
  ``pip install "emclip[biomedclip]"``).
- ``pretrained="auto"``: the real weights when reachable, otherwise a loud fall-back to the tiny
  model with the kit's shipped weights (``warnings.warn`` + ``bundle.note``). Notebooks use this policy.

Before open_clip is asked for real weights, :func:`check_weights_available` looks them up in the
local caches and, when they are absent, either sees ``HF_HUB_OFFLINE=1`` or probes the host with a
3-second timeout. So an offline request fails within seconds with :class:`WeightsUnavailableError`
naming the remedies, instead of entering huggingface_hub's retry loop (20-50 s).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

from emclip.clip.weights import (
    DEFAULT,
    RANDOM,
    WEIGHTS_DIR,
    check_sha256_argument,
    list_shipped_weights,
    resolve_pretrained,
    shipped_entry,
    verify_sha256,
)
from emclip.clip.weights import WeightsMismatchError as WeightsMismatchError  # re-exported
from emclip.clip.weights import file_sha256 as file_sha256  # re-exported
from emclip.errors import ConfigError, EmclipError

CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "emclip-tiny"
TINY_MODELS = ("emclip-tiny", "emclip-tiny-rn")
HF_PREFIX = "hf-hub:"
BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PROBE_TIMEOUT_S = 3.0
_registered = False


class WeightsUnavailableError(EmclipError, RuntimeError):
    """The requested CLIP weights are neither cached nor downloadable right now."""


@dataclass
class ClipBundle:
    """An open_clip model with its preprocess and tokenizer, and a record of which weights run.

    Iterating yields ``(model, preprocess, tokenizer)`` so that
    ``model, preprocess, tokenizer = load_clip()`` works as with open_clip.

    Attributes:
        model: the open_clip ``CLIP`` / ``CustomTextCLIP`` module (eval mode).
        preprocess: open_clip's evaluation transform (PIL image -> normalised tensor).
        tokenizer: callable, list of str -> LongTensor (N, context_length).
        name, pretrained: what was loaded (``pretrained`` is ``None`` for random init).
        is_random: True when no pretrained weights were loaded (features carry no semantics).
        note: one human-readable line saying which weights run (print it in notebooks).
    """

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    name: str
    pretrained: str | None
    is_random: bool
    note: str

    def __iter__(self):
        return iter((self.model, self.preprocess, self.tokenizer))

    @property
    def model_id(self) -> str:
        """``name:pretrained`` (``name:random`` for random init): a key for caches and plots."""
        return f"{self.name}:{self.pretrained or 'random'}"

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)


def register_configs() -> None:
    """Register the package's tiny configs with open_clip's model registry (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def list_clip_models(with_tags: bool = True) -> list[tuple[str, str | None]] | list[str]:
    """The tiny models (tag ``None``), BiomedCLIP and every open_clip ``(name, tag)`` pair."""
    register_configs()
    if not with_tags:
        return [*TINY_MODELS, BIOMEDCLIP, *[m for m in open_clip.list_models() if m not in TINY_MODELS]]
    return ([(m, None) for m in TINY_MODELS] + list_shipped_weights() + [(BIOMEDCLIP, None)]
            + list(open_clip.list_pretrained()))


def default_tag(name: str) -> str | None:
    """The tag ``pretrained="auto"`` tries: ``openai`` when it exists, else open_clip's first tag."""
    if name in TINY_MODELS or name.startswith(HF_PREFIX):
        return None
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        return None
    return "openai" if "openai" in tags else tags[0]


# ----------------------------------------------------------------------------------------------
# Where weights come from, and are they here?
# ----------------------------------------------------------------------------------------------
def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or ``EMCLIP_OFFLINE`` is set truthy."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EMCLIP_OFFLINE")
    return any(os.environ.get(f, "").strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def _remedy(name: str, pretrained: str | None) -> str:
    tag = f" {pretrained}" if pretrained else ""
    return (
        "Remedies: (1) connect to the internet (and unset HF_HUB_OFFLINE); "
        f"(2) pre-download once with `emclip download-weights {name}{tag}` on a connected machine "
        "and copy the cache (or pass cache_dir=...); "
        "(3) pass a local weights file: load_clip(name, pretrained='/path/to/weights.pt'); "
        f"(4) use the offline tiny default: load_clip('{TINY_MODEL}') or pretrained='auto' to fall back."
    )


def _hf_cached(repo_id: str, filenames: tuple[str, ...], cache_dir) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _sources(name: str, pretrained: str | None, cache_dir) -> tuple[list[str], str | None]:
    """(hosts that would be contacted, cached file or None) for a real-weights request."""
    if name.startswith(HF_PREFIX):
        repo = name[len(HF_PREFIX):]
        config = _hf_cached(repo, ("open_clip_config.json",), cache_dir)
        weights = _hf_cached(repo, _HF_WEIGHT_FILES, cache_dir)
        return ["huggingface.co"], (weights if config and weights else None)
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        files = (filename,) if filename else _HF_WEIGHT_FILES
        return ["huggingface.co"], _hf_cached(repo, files, cache_dir)
    url = cfg.get("url", "")
    target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
    return [urlparse(url).hostname or "?"], (str(target) if target.is_file() else None)


def _reachable(host: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to ``host:443`` within ``timeout`` s (DNS included)?"""

    def probe() -> bool:
        with socket.create_connection((host, 443), timeout=timeout):
            return True

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return bool(pool.submit(probe).result(timeout=timeout))
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def check_weights_available(name: str, pretrained: str | None = None, cache_dir=None) -> str | None:
    """Return the cached weights file (or ``None`` when they must be downloaded and can be).

    Raises :class:`WeightsUnavailableError` within a few seconds when the weights are not cached
    and the network is off (``HF_HUB_OFFLINE=1``) or the host does not answer; ``ValueError`` for
    an unknown tag (listing the valid ones).
    """
    register_configs()
    if not name.startswith(HF_PREFIX):
        if name not in open_clip.list_models():
            raise ValueError(f"Unknown CLIP model {name!r}. Valid names: {', '.join(list_clip_models(False))}.")
        if not open_clip.get_pretrained_cfg(name, pretrained):
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ValueError(
                f"Unknown pretrained tag {pretrained!r} for {name!r} (and no such file). "
                f"Valid tags: {', '.join(tags) or 'none (random init only)'}; or a path to a weights file."
            )
    hosts, cached = _sources(name, pretrained, cache_dir)
    if cached:
        return cached
    what = f"{name!r}" + (f" / {pretrained!r}" if pretrained else "")
    if is_offline():
        raise WeightsUnavailableError(
            f"CLIP weights {what} are not in the local cache and HF_HUB_OFFLINE is set, so they "
            f"cannot be downloaded. {_remedy(name, pretrained)}"
        )
    for host in hosts:
        if not _reachable(host):
            raise WeightsUnavailableError(
                f"CLIP weights {what} are not cached and {host} cannot be reached "
                f"(no answer within {_PROBE_TIMEOUT_S:.0f} s). {_remedy(name, pretrained)}"
            )
    return None


def expected_sha256(name: str, pretrained: str) -> str | None:
    """The SHA256 (or its prefix) open_clip publishes for a URL download, else ``None``.

    OpenAI URLs carry the full hash, mlfoundations release files a prefix; hub downloads are
    verified by huggingface_hub itself.
    """
    url = open_clip.get_pretrained_cfg(name, pretrained).get("url", "")
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(os.path.basename(url))[0].split("-")[-1]
    return None


def _require_transformers(name: str, cache_dir=None) -> None:
    """Raise a clear ``ImportError`` when a hub model's text tower needs ``transformers``."""
    needs = name == BIOMEDCLIP
    config_file = _hf_cached(name[len(HF_PREFIX):], ("open_clip_config.json",), cache_dir)
    if config_file:
        import json

        text_cfg = json.loads(Path(config_file).read_text()).get("model_cfg", {}).get("text_cfg", {})
        needs = needs or bool(text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name"))
    if needs:
        try:
            import transformers  # noqa: F401
        except ImportError as err:
            raise ImportError(
                f"{name} uses a Hugging Face text tower (e.g. PubMedBERT) that needs `transformers`: "
                'pip install "emclip[biomedclip]"'
            ) from err


# ----------------------------------------------------------------------------------------------
# load_clip
# ----------------------------------------------------------------------------------------------
def _create(name: str, pretrained: str | None, device, cache_dir, seed: int):
    previous = logging.root.manager.disable
    if pretrained is None:  # our note says "random weights" more clearly than open_clip's log line
        logging.disable(logging.WARNING)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, cache_dir=cache_dir
            )
    finally:
        logging.disable(previous)
    tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    return model.eval(), preprocess, tokenizer


def load_clip(
    name: str = TINY_MODEL,
    pretrained: str | os.PathLike | None = DEFAULT,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    seed: int = 0,
) -> ClipBundle:
    """Load ``name`` with ``pretrained`` weights; see the module docstring for what is accepted.

    Args:
        name: open_clip model name, ``hf-hub:org/repo`` or one of the tiny models.
        pretrained: ``"default"`` (the shipped weights of a tiny model, random init for any other),
            a tag (``"synth-v2"``, ``"openai"``, ...), the path of a weights file, ``"random"`` or
            ``None`` (random init), or ``"auto"``.
        device: where the model goes (``"auto"`` allowed).
        cache_dir: download/cache folder for weights (open_clip's default when ``None``).
        sha256: expected SHA256 of a local weights file (the full digest or at least its first 16
            hex characters), verified before loading. Shipped weights are always verified against
            their recorded digest.
        seed: seed of the random initialisation (random-init models are reproducible).

    Returns:
        :class:`ClipBundle` (iterable as ``model, preprocess, tokenizer``).
    """
    from emclip.runtime import get_device

    register_configs()
    device = get_device(device)
    cache_dir = str(cache_dir) if cache_dir is not None else None
    name = str(name)
    if sha256 is not None:
        sha256 = check_sha256_argument(sha256)
    if pretrained == "auto":
        return _load_auto(name, device, cache_dir, seed)
    pretrained = resolve_pretrained(name, pretrained)

    if name.startswith(HF_PREFIX):
        check_weights_available(name, None, cache_dir)
        _require_transformers(name, cache_dir)
        model, preprocess, tokenizer = _create(name, None, device, cache_dir, seed)
        return ClipBundle(model, preprocess, tokenizer, name, name, False,
                          f"{name}: weights from the Hugging Face hub (cache: {cache_dir or 'default'})")

    if name not in open_clip.list_models():
        raise ValueError(f"Unknown CLIP model {name!r}. Valid names: {', '.join(list_clip_models(False))}.")

    if pretrained is None:
        model, preprocess, tokenizer = _create(name, None, device, cache_dir, seed)
        note = (f"{name}: RANDOM weights (seed {seed}), no pretrained CLIP. Features and text "
                "similarities carry no meaning beyond the architecture.")
        return ClipBundle(model, preprocess, tokenizer, name, None, True, note)

    entry = shipped_entry(name, pretrained)
    if entry is not None:
        return _load_shipped(name, pretrained, entry, device, cache_dir, seed)

    if os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"CLIP weights file {path} does not exist. Pass an existing file, a pretrained tag "
                f"({', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none for this model'}) or None."
            )
        if sha256 is not None:
            verify_sha256(path, sha256)
        model, preprocess, tokenizer = _create(name, str(path), device, cache_dir, seed)
        return ClipBundle(model, preprocess, tokenizer, name, str(path), False, f"{name}: weights from file {path}")

    if name in TINY_MODELS:
        shipped = [tag for model, tag in list_shipped_weights() if model == name]
        raise ConfigError(f"Unknown weights {pretrained!r} for {name!r}. Valid: {', '.join(shipped + [RANDOM])}, "
                          "None (random init) or the path of a weights file.")
    cached = check_weights_available(name, pretrained, cache_dir)
    if sha256 is not None and cached:
        verify_sha256(cached, sha256)
    model, preprocess, tokenizer = _create(name, pretrained, device, cache_dir, seed)
    return ClipBundle(model, preprocess, tokenizer, name, pretrained, False,
                      f"{name}: pretrained '{pretrained}' weights" + (f" ({cached})" if cached else ""))


def _load_shipped(name: str, tag: str, entry: dict, device, cache_dir, seed: int) -> ClipBundle:
    """The package's own weights ``(name, tag)``, verified against the recorded full SHA256."""
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"The shipped weights {name}/{tag} ({path}) are missing from this installation. Reinstall emclip "
            "(the wheel carries them as package data), or use pretrained='random' for the random control."
        )
    verify_sha256(path, entry["sha256"], min_prefix=64,
                  fix="reinstall emclip (`pip install --force-reinstall emclip`, or `git checkout` the file in a "
                      "clone) to restore the shipped file, or use pretrained='random' for the random control")
    model, preprocess, tokenizer = _create(name, str(path), device, cache_dir, seed)
    note = (f"{name}: the kit's own pretrained weights '{tag}' ({entry.get('summary', 'see the model card')}; "
            f"model card: emclip/clip/weights/{entry['card']}).")
    return ClipBundle(model, preprocess, tokenizer, name, tag, False, note)


def _load_auto(name: str, device, cache_dir, seed: int) -> ClipBundle:
    if name in TINY_MODELS:
        return load_clip(name, DEFAULT, device, cache_dir, seed=seed)
    tag = default_tag(name)
    try:
        if tag is None and not name.startswith(HF_PREFIX):
            raise WeightsUnavailableError(f"open_clip publishes no pretrained weights for {name!r}.")
        return load_clip(name, tag, device, cache_dir, seed=seed)
    except (WeightsUnavailableError, ImportError, RuntimeError, OSError) as err:
        bundle = load_clip(TINY_MODEL, DEFAULT, device, cache_dir, seed=seed)
        what = (f"the kit's own small model pretrained on synthetic pairs ('{bundle.pretrained}')"
                if not bundle.is_random else "RANDOMLY INITIALISED weights")
        message = (
            f"\n{'!' * 78}\n!! CLIP FALL-BACK: real weights for {name!r} ({tag or 'hub'}) are unavailable:\n"
            f"!!   {err}\n!! Running the tiny model {TINY_MODEL!r} with {what} instead: "
            f"results show the pipeline and a miniature foundation model, not a real CLIP's knowledge.\n{'!' * 78}"
        )
        warnings.warn(message, UserWarning, stacklevel=3)
        bundle.note = (f"FALL-BACK: {name} ({tag or 'hub'}) weights unavailable -> {TINY_MODEL} "
                       f"({bundle.pretrained or f'RANDOM weights, seed {seed}'}). Reason: {type(err).__name__}.")
        return bundle


def download_weights(name: str, pretrained: str | None = None, cache_dir=None) -> str:
    """Download (or find in the cache) the weights of ``(name, pretrained)``; return the file path.

    Fails fast offline (see :func:`check_weights_available`); verifies the published SHA256 of URL
    downloads.
    """
    register_configs()
    if name in TINY_MODELS:
        raise ValueError(f"{name!r} ships with emclip (its weights are package data): there is nothing to download.")
    cached = check_weights_available(name, pretrained, cache_dir)
    if cached:
        path = cached
    elif name.startswith(HF_PREFIX):
        repo = name[len(HF_PREFIX):]
        open_clip.pretrained.download_pretrained_from_hf(repo, "open_clip_config.json", cache_dir=cache_dir)
        path = open_clip.pretrained.download_pretrained_from_hf(repo, cache_dir=cache_dir)
    else:
        cfg = open_clip.get_pretrained_cfg(name, pretrained)
        path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    if not name.startswith(HF_PREFIX) and not open_clip.get_pretrained_cfg(name, pretrained).get("hf_hub"):
        expected = expected_sha256(name, pretrained)
        if expected:
            verify_sha256(path, expected, min_prefix=8)  # open_clip publishes 8-character prefixes
    return str(path)
