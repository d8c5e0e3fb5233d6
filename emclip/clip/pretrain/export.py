"""Write the result of a pretraining run: safetensors weights, a JSON record and a model card.

The record holds what is needed to trust and reproduce the weights: the full config, the exact
command, the wall time, the loss history (the first steps are the trace a test re-runs), the
SHA256 and size of the file, the package versions and the hardware. The model card is written
from the record (plus optional evaluation figures) so that it only states measured facts.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

from emclip.fileio import atomic_write, atomic_write_json, atomic_write_text

TRACE_STEPS = 3  # the first steps whose losses the record keeps as the reproducibility trace
#: how each dense term pools the patch embeddings into one image embedding per caption (model card)
DENSE_WORDS = {"mean": "mean-pooled over the image", "pacl": "pooled by their similarity to each caption (PACL)",
               "where": "pooled over the part of the image the caption names (\"in the upper left\"), which must match "
                        "the caption better than the rest of the same image"}


def versions() -> dict[str, str]:
    """Versions of the packages and interpreter that produced a run."""
    import numpy
    import open_clip
    import safetensors

    import emclip

    return {"emclip": emclip.__version__, "torch": torch.__version__, "open_clip_torch": open_clip.__version__,
            "numpy": numpy.__version__, "safetensors": safetensors.__version__, "python": platform.python_version()}


def hardware(device: str = "cpu") -> str:
    """One line: the CPU (cores, torch threads) or the GPU that ran."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads")


def save_weights(model: torch.nn.Module, path) -> str:
    """Save ``model.state_dict()`` as safetensors (float32, atomically); return the file's SHA256."""
    from safetensors.torch import save_file

    from emclip.clip.loading import file_sha256

    state = {key: value.detach().float().contiguous().cpu() for key, value in model.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(state, str(tmp))
    return file_sha256(path)


def export_run(result, config, out, command: str = "", card=None, device: str = "cpu") -> dict:
    """Write ``out`` (weights), ``out`` + ``.json`` (the record) and optionally a model card.

    Args:
        result: :class:`~emclip.clip.pretrain.train.PretrainResult`.
        config: its :class:`~emclip.clip.pretrain.train.PretrainConfig`.
        out: path of the ``.safetensors`` file.
        command: the command line that ran (recorded verbatim).
        card: path of a markdown model card to write, or ``None``.
    Returns:
        the record dict.
    """
    out = Path(out)
    digest = save_weights(result.model, out)
    record = {
        "model": config.model, "config": config.as_dict(), "command": command,
        "seconds": round(float(result.seconds), 1), "hardware": hardware(device), "versions": versions(),
        "sha256": digest, "bytes": out.stat().st_size,
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "loss_trace": [round(row["loss"], 6) for row in result.history[:TRACE_STEPS]],
        "history": result.history,
    }
    atomic_write_json(out.with_name(out.name + ".json"), record)
    if card is not None:
        atomic_write_text(card, model_card(record, tag=out.stem))
    return record


def _final_eval(history: list[dict]) -> dict:
    rows = [row for row in history if "i2t" in row]
    return rows[-1] if rows else {}


def model_card(record: dict, tag: str, evaluation: dict | None = None) -> str:
    """Markdown model card from a run record (and optional measured evaluation figures)."""
    cfg = record["config"]
    last = _final_eval(record["history"])
    lines = [
        f"# {record['model']} / {tag}: a miniature CLIP pretrained by the emclip kit",
        "",
        "**What it is.** An open_clip model (`" + record["model"] + "`, "
        f"{record['parameters'] / 1e6:.2f} M parameters) trained from random initialisation with open_clip's "
        "contrastive loss (`open_clip.loss.ClipLoss`, learnable temperature) on synthetic image-caption "
        "pairs that the kit renders itself. It is a teaching stand-in for a foundation model, not a medical "
        "model: it has never seen a real image.",
        "",
        "**Corpus.** "
        f"{cfg['corpus_size']} scenes at {cfg['image_size']} px (`emclip.clip.pretrain.corpus`, seed "
        f"{cfg['corpus_seed']}): optic-disc fundus crops and short-axis cardiac MRI crops from the kit's "
        "renderers at random zoom and position, generic shapes (some nested), cells, lines, textures, brain "
        "MRI and chest CT, each with four captions written from the scene (what is present, size, position, "
        "relations, modality; the tasks' class names appear in free sentences). Every time a scene is read it "
        "gets a fresh style from `emclip.data.style_prior`.",
        "",
        "**What it never saw.** The eight benchmark styles (fundus domain1-4, cardiac A-D): every training "
        "style lies at least `HELD_OUT_DISTANCE` (0.2, normalised RMS) from each of them "
        "(`tests/test_pretrain_style_prior.py` checks it); the benchmark's images themselves; any pixel mask "
        "(captions are the only supervision); any real photograph or scan.",
        "",
        f"**Recipe.** AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}, none on gains, biases, "
        f"embeddings and the temperature), {cfg['warmup_steps']} warm-up steps then cosine decay, batch "
        f"{cfg['batch_size']}, {cfg['steps']} steps, seed {cfg['seed']}, init seed {cfg['init_seed']}. "
        + (f"Plus a dense term learned from the captions alone (`{cfg['dense_loss']}`, weight {cfg['dense_weight']}, "
           "`emclip.clip.pretrain.dense_loss`): the contrastive loss on the patch embeddings of MaskCLIP's value "
           "path, " + DENSE_WORDS.get(cfg["dense_loss"], "pooled") + "." if cfg.get("dense_weight", 0) > 0 else "No dense term."),
        "",
        "**Command.**",
        "",
        "```bash",
        record["command"] or "(not recorded)",
        "```",
        "",
        *([record["command_note"], ""] if record.get("command_note") else []),
        f"**Time.** {record['seconds'] / 60:.1f} min on {record['hardware']}.",
        "",
        f"**File.** {record['bytes'] / 1e6:.1f} MB safetensors, SHA256 `{record['sha256']}` (checked by "
        "`load_clip` before loading).",
        "",
        "**Measured.**",
        "",
    ]
    if last:
        lines.append(f"- held-out retrieval top-1 ({cfg['eval_pairs']} pairs never trained on): image->text "
                     f"{last['i2t']:.3f}, text->image {last['t2i']:.3f}, chance {last['chance']:.3f}.")
    terms = "ClipLoss + dense term; ClipLoss is" if cfg.get("dense_weight", 0) > 0 else "ClipLoss"
    lines.append(f"- final training loss {record['history'][-1]['loss']:.3f} ({terms} ln(batch) = "
                 f"{math.log(cfg['batch_size']):.2f} at chance); first steps: "
                 f"{', '.join(f'{v:.4f}' for v in record['loss_trace'])} (re-run by `tests/test_pretrain_weights.py`).")
    for key, value in (evaluation or {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "**Versions.** " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + ".", ""]
    return "\n".join(lines)


def load_record(path) -> dict:
    """Read a run record written by :func:`export_run`."""
    return json.loads(Path(path).read_text())
