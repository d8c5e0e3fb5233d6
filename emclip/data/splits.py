"""Domain-generalisation protocols and per-domain splits, as data.

- ``single-source``: train on one domain, test on each of the others (single-source DG).
- ``leave-one-out``: train on all domains but one, test on the held-out one (DoFE / DGNet
  multi-source protocol).

Splits: ``train``, ``val``, ``test``. Synthetic data draws independent samples per split
(the split name is part of the sample seed). Real data: Fundus-DG ``train`` / ``test`` are
DoFE's folders and ``val`` is every 10th image of DoFE's train folder (so ``train`` holds the
other 90%); M&Ms splits subjects of each vendor 70 / 10 / 20 % by a stable hash of the subject
code (so no subject appears in two splits). These real-data splits are a design choice, not
from the paper.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from emclip.errors import ConfigError
from emclip.runtime import PROFILES
from emclip.tasks import get_task

SPLITS = ("train", "val", "test")
SOURCES = ("synthetic", "real")
PROTOCOLS = ("single-source", "leave-one-out")

# n=None for synthetic data: the ``cpu`` profile's per-domain counts (read from the profile, so
# they never go stale here; ``emclip info --profile cpu`` prints them).
SYNTHETIC_DEFAULT_N = {
    "train": PROFILES["cpu"].train_per_domain,
    "val": PROFILES["cpu"].val_per_domain,
    "test": PROFILES["cpu"].test_per_domain,
}
FUNDUS_VAL_EVERY = 10
MMS_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


class DomainSplit(NamedTuple):
    """One experiment of a protocol: train on ``train_domains``, test on ``test_domains``."""

    name: str
    train_domains: tuple[str, ...]
    test_domains: tuple[str, ...]


def check_choice(value: str, valid: tuple[str, ...], what: str) -> str:
    """``value`` when it is one of ``valid``; else ConfigError listing the valid values."""
    if value not in valid:
        raise ConfigError(f"Unknown {what} {value!r}. Valid {what}s: {', '.join(valid)}.")
    return value


def fundus_val_rule() -> str:
    """The Fundus-DG validation rule in words (for error messages and reports)."""
    return (f"val is every {FUNDUS_VAL_EVERY}th image of the domain's train folder (images {FUNDUS_VAL_EVERY}, "
            f"{2 * FUNDUS_VAL_EVERY}, ... in name order) and train is the rest")


def mms_split_rule() -> str:
    """The M&Ms subject split rule in words (for error messages and reports)."""
    train, val, test = (round(100 * MMS_FRACTIONS[s]) for s in SPLITS)
    return (f"each vendor's labelled subjects are split {train} / {val} / {test} % (train / val / test) by a "
            "stable hash of the subject code")


def get_protocol(task: str, protocol: str) -> list[DomainSplit]:
    """The experiments of ``protocol`` for ``task``, one :class:`DomainSplit` per held-out setting.

    >>> [s.name for s in get_protocol("cardiac", "leave-one-out")]
    ['BCD->A', 'ACD->B', 'ABD->C', 'ABC->D']
    """
    domains = get_task(task).domains
    check_choice(protocol, PROTOCOLS, "protocol")
    short = {d: d.replace("domain", "") for d in domains}
    out = []
    for held in domains:
        rest = tuple(d for d in domains if d != held)
        if protocol == "single-source":
            out.append(DomainSplit(f"{short[held]}->{''.join(short[d] for d in rest)}", (held,), rest))
        else:
            out.append(DomainSplit(f"{''.join(short[d] for d in rest)}->{short[held]}", rest, (held,)))
    return out


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (blake2b), for hash-based subject splits."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def mms_split_of(subject: str) -> str:
    """The split of an M&Ms subject code (70 / 10 / 20 % train / val / test)."""
    u = stable_fraction(f"mms|{subject}")
    if u < MMS_FRACTIONS["train"]:
        return "train"
    return "val" if u < MMS_FRACTIONS["train"] + MMS_FRACTIONS["val"] else "test"
