"""The kit's training recipe: a model, profile-sized data and the profile's schedule, in one call.

* :func:`prepare_run` — build the model, the data sets and loaders of a run and describe it
  (the data section of its run record, :mod:`emclip.engine.record`), without training;
* :func:`train_from_profile` — ``prepare_run(...).train(...)``: what notebooks 05/06, ``emclip
  train`` and the evaluation runner call;
* :func:`load_or_train` — the trained model of a run: reused from its checkpoint when that holds
  the same, finished run, resumed when it holds the same unfinished one, trained otherwise.

Data: the train split of the training domains (augmented) and the val split of the same
domains for validation, sized by the profile (image size, per-domain counts, batch size);
steps, lr and the validation interval come from the profile too. The augmentation is the
model config's ``train.augment`` when it has one, else the default (``True``). A data set too
small to train and validate is refused before any training, with the split rule in the message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

from torch import nn

from emclip.engine import distributed as ddp
from emclip.engine.record import TrainSettings, jsonable, make_record
from emclip.engine.train import TrainResult, train
from emclip.errors import DataError
from emclip.runtime import Profile, data_dir, get_profile, seed_everything
from emclip.tasks import Task, get_task


def _split_rule(task: Task) -> str:
    """How the real data of ``task`` is split into train / val / test (for error messages)."""
    from emclip.data.splits import fundus_val_rule, mms_split_rule

    return fundus_val_rule() if task.name == "fundus" else mms_split_rule()


def check_split_sizes(task: Task, domains, source: str, n_train: int, n_val: int) -> None:
    """Refuse, before training, a run whose train or val split is empty (:class:`DataError`)."""
    if n_train > 0 and n_val > 0:
        return
    empty = "train" if n_train == 0 else "val"
    rule = _split_rule(task) if source == "real" else "synthetic splits have the profile's per-domain counts"
    raise DataError(f"The {empty} split of {task.name} {'+'.join(domains)} ({source} data) is empty "
                    f"({n_train} training, {n_val} validation images), so the run could not be validated. "
                    f"Split rule: {rule}. Add images (about 10 or more per domain), or train on more domains.")


@dataclass
class PreparedRun:
    """A run ready to train: the model, its loaders, its settings and its record's data section."""

    model: nn.Module
    task: Task
    profile: Profile
    train_loader: object
    val_loader: object
    settings: TrainSettings
    data: dict = field(default_factory=dict)

    def train(self, checkpoint_path=None, resume: bool = True, overwrite: bool = False, progress: bool = True,
              device="auto", other_run: str = "error") -> TrainResult:
        """Run :func:`emclip.engine.train` with this run's settings (see its ``resume``/``overwrite``/``other_run``)."""
        s = self.settings
        return train(self.model, self.task, self.train_loader, self.val_loader, steps=s.steps, lr=s.lr, seed=s.seed,
                     weight_decay=s.weight_decay, warmup_steps=s.warmup_steps, schedule=s.schedule,
                     grad_clip=s.grad_clip, amp=s.amp, device=device, checkpoint_path=checkpoint_path,
                     resume=resume, overwrite=overwrite, other_run=other_run, eval_every=self.profile.eval_every,
                     progress=progress, data=self.data, profile=self.profile.name)

    def record(self) -> dict:
        """The record :meth:`train` writes into the checkpoint (versions and runtime aside)."""
        section = self.settings.section(self.train_loader.batch_size, ddp.get_world_size(), "default")
        return make_record(self.model, self.task.name, self.data, section, self.profile.name)


def prepare_run(model_name: str, task: Task | str, train_domains, profile: str | Profile | None = None,
                seed: int = 0, source: str = "synthetic", root=None, steps: int | None = None, augment=None,
                **model_overrides) -> PreparedRun:
    """Build model ``model_name`` for ``task`` and the data of ``train_domains``, sized by ``profile``.

    ``steps=None`` takes the profile's; ``steps=0`` or a negative number is an error.
    ``augment=None`` takes the model config's ``train.augment``, else ``True``. Under torchrun
    each process gets its shard with ``batch_size // world_size`` images.
    """
    from emclip.data import domain_datasets, make_dataloader
    from emclip.data.augment import Augment
    from emclip.models import create_model

    task = get_task(task)
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    domains = [train_domains] if isinstance(train_domains, str) else list(train_domains)
    for d in domains:
        task.check_domain(d)
    settings = TrainSettings(prof.train_steps if steps is None else steps, prof.lr, seed)
    train_ds = domain_datasets(task, domains, "train", prof, source=source, root=root, seed=seed)
    val_ds = domain_datasets(task, domains, "val", prof, source=source, root=root, seed=seed)
    check_split_sizes(task, domains, source, len(train_ds), len(val_ds))
    seed_everything(seed)
    model = create_model(model_name, task, profile=prof, **model_overrides)
    if augment is None:
        augment = (model.config.get("train") or {}).get("augment", True)
    spec = Augment.from_spec(augment)
    # under torchrun each rank reads its shard (DistributedSampler) and augments with its own stream
    world = ddp.get_world_size() if ddp.is_distributed() else 1
    per_rank = max(1, prof.batch_size // world)
    train_loader = make_dataloader(train_ds, per_rank, shuffle=True, augment=spec, seed=seed,
                                   num_workers=prof.num_workers, drop_last=world > 1 or len(train_ds) >= per_rank,
                                   rank=ddp.get_rank(), world_size=world)  # train() moves it to its device
    val_loader = make_dataloader(val_ds, prof.batch_size, shuffle=False, num_workers=prof.num_workers)
    real_root = data_dir(root) if source == "real" else None
    data = jsonable({
        "source": source, "root": str(Path(real_root).resolve()) if real_root is not None else None,
        "train_domains": domains, "image_size": prof.image_size, "train_per_domain": prof.train_per_domain,
        "val_per_domain": prof.val_per_domain, "test_per_domain": prof.test_per_domain,
        "train_images": len(train_ds), "val_images": len(val_ds), "data_seed": seed,
        "augment": asdict(spec) if is_dataclass(spec) else repr(spec),
    })
    return PreparedRun(model, task, prof, train_loader, val_loader, settings, data)


def train_from_profile(model_name: str, task: Task | str, train_domains, profile: str | Profile | None = None,
                       seed: int = 0, source: str = "synthetic", root=None, checkpoint_path=None,
                       steps: int | None = None, progress: bool = True, device="auto", resume: bool = True,
                       overwrite: bool = False, augment=None, **model_overrides) -> TrainResult:
    """Build ``model_name`` for ``task`` and train it on ``train_domains``, sized by ``profile``.

    See :func:`prepare_run` for the data and settings and :func:`emclip.engine.train` for
    ``checkpoint_path``, ``resume`` and ``overwrite``.
    """
    run = prepare_run(model_name, task, train_domains, profile, seed, source, root, steps, augment, **model_overrides)
    return run.train(checkpoint_path, resume=resume, overwrite=overwrite, progress=progress, device=device)


def load_or_train(method: str, task: Task | str, train_domains, profile=None, seed: int = 0,
                  source: str = "synthetic", root=None, checkpoint_path=None, progress: bool = False,
                  steps: int | None = None, overwrite: bool = False, **model_overrides) -> tuple[nn.Module, bool]:
    """The trained model of a run, and whether it came from the checkpoint unchanged.

    A checkpoint at ``checkpoint_path`` is reused when it holds the same run, finished; resumed
    when it holds the same run, unfinished; a checkpoint of another run raises
    :class:`~emclip.errors.RunMismatchError` listing the differences (``overwrite=True``
    retrains over it). Returns ``(model in eval mode, loaded)``.
    """
    result = train_from_profile(method, task, train_domains, profile=profile, seed=seed, source=source, root=root,
                                checkpoint_path=checkpoint_path, steps=steps, progress=progress, resume=True,
                                overwrite=overwrite, **model_overrides)
    return result.model.eval(), result.steps_run == 0
