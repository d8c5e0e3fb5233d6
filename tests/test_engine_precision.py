"""Mixed precision: bf16 where the GPU has it, fp16 with a GradScaler where not (Colab's T4),
fp32 on the CPU; the fp16 + scaler path trains, saves and resumes (checked on the CPU)."""

from __future__ import annotations

import pytest
import torch

from emclip.data import get_dataset, make_dataloader
from emclip.engine import read_checkpoint, select_precision, train
from emclip.errors import ConfigError


@pytest.mark.parametrize("bf16, dtype, scaler", [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_auto_picks_bf16_where_supported_else_fp16_with_a_scaler(monkeypatch, bf16, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    precision = select_precision(torch.device("cuda", 0), "auto")
    assert (precision.device_type, precision.dtype, precision.needs_scaler) == ("cuda", dtype, scaler)
    assert precision.name == {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def test_cpu_runs_fp32_unless_asked():
    auto = select_precision("cpu")
    assert auto.dtype == torch.float32 and not auto.autocast_enabled and not auto.grad_scaler().is_enabled()
    assert select_precision("cpu", False).name == select_precision("cuda", "fp32").name == "fp32"
    assert select_precision("cpu", "bf16").dtype == torch.bfloat16
    fp16 = select_precision("cpu", "fp16")
    assert fp16.needs_scaler and fp16.grad_scaler().is_enabled()
    with pytest.raises(ConfigError, match="amp='half' is not a precision. Valid: auto, bf16, fp16, fp32"):
        select_precision("cpu", "half")


def _run(path, steps, kill_at=None):
    class Killed(Exception):
        pass

    def kill(step, row):
        if step == kill_at:
            raise Killed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    loader = make_dataloader(get_dataset("fundus", "domain1", "train", size=32, n=8), 4, shuffle=True, augment=True)
    try:
        return train(model, "fundus", loader, steps=steps, lr=1e-3, amp="fp16", progress=False, checkpoint_path=path,
                     checkpoint_every=2, callback=kill)
    except Killed:
        return None


def test_fp16_with_grad_scaler_trains_saves_and_resumes_exactly(tmp_path):
    straight = _run(tmp_path / "a.pt", 4)
    assert straight.history["loss"].notna().all() and straight.record["runtime"]["precision"] == "fp16"
    scaler = read_checkpoint(tmp_path / "a.pt")["scaler"]
    assert scaler is not None and scaler["scale"] > 0  # the GradScaler's state is saved with the run
    assert _run(tmp_path / "b.pt", 4, kill_at=3) is None
    resumed = _run(tmp_path / "b.pt", 4)
    assert resumed.steps_run == 2
    assert straight.history["loss"].tolist() == resumed.history["loss"].tolist()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
