"""The benchmark scripts reuse a stored run only while it ran the current model config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield
    for name in ("paired_runs", "bench_cross_domain"):
        sys.modules.pop(name, None)


def test_paired_runs_rerun_a_stored_run_whose_config_changed(tmp_path):
    from paired_runs import RunStore, model_config

    from emclip.runtime import get_profile

    prof = get_profile("cpu")
    local, centre = model_config(prof), model_config(prof, decoder={"stem_input": "centre"})
    assert local["decoder"]["stem_input"] == "local" and centre["decoder"]["stem_input"] == "centre"
    assert model_config(prof, augment="style") == local  # the augmentation is not part of the model config
    calls = []

    def run(value):
        return lambda: calls.append(value) or {"unseen": value, "seconds": 0.0, "model_config": centre}

    path = tmp_path / "runs.json"
    RunStore(path).get_or_run("fundus|domain1|default|0", run(0.5), centre)
    store = RunStore(path)  # a second session reads the file
    assert store.get_or_run("fundus|domain1|default|0", run(0.6), centre)["unseen"] == 0.5 and calls == [0.5]
    assert store.get_or_run("fundus|domain1|default|0", run(0.7), local)["unseen"] == 0.7  # the default changed
    assert calls == [0.5, 0.7] and json.loads(path.read_text())["fundus|domain1|default|0"]["unseen"] == 0.7


def test_cross_domain_benchmark_redoes_runs_of_another_config(tmp_path):
    import bench_cross_domain as bench

    from emclip.runtime import get_profile

    prof = get_profile("cpu")
    path = bench.result_path(tmp_path, "fundus", "single-source", "1->234", "emclip", 0)
    assert not bench.is_current(path, "emclip", prof)
    path.parent.mkdir(parents=True)
    record = {"protocol": "single-source", "profile": prof.as_dict(), "rows": [],
              "model_config": bench.method_config("emclip", prof)}
    path.write_text(json.dumps(record))
    assert bench.is_current(path, "emclip", prof)
    assert not bench.is_current(path, "emclip-random", prof)  # another method's config
    assert not bench.is_current(path, "emclip", get_profile("ci"))  # another profile
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "model_config"}))
    assert not bench.is_current(path, "emclip", prof)  # a run from before configs were recorded


def test_set_changes_the_config_of_the_methods_that_have_the_section(monkeypatch):
    import argparse

    import bench_cross_domain as bench

    from emclip.runtime import get_profile

    assert bench.parse_setting("decoder.stem_channels=[]") == ("decoder", "stem_channels", [])
    assert bench.parse_setting("decoder.stem_input=centre") == ("decoder", "stem_input", "centre")
    with pytest.raises(argparse.ArgumentTypeError, match="SECTION.KEY=VALUE"):
        bench.parse_setting("stem_channels=[]")
    prof = get_profile("cpu")
    default = bench.method_config("emclip", prof)
    monkeypatch.setattr(bench, "SETTINGS", [bench.parse_setting("decoder.stem_channels=[]")])
    changed = bench.method_config("emclip", prof)
    assert changed["decoder"]["stem_channels"] == [] and default["decoder"]["stem_channels"] != []
    assert changed["clip"]["pretrained"] == bench.PRETRAINED  # the weights stay the method's
    assert bench.method_config("emclip-random", prof)["decoder"]["stem_channels"] == []
    assert "decoder" not in bench.model_overrides("unet")  # a U-Net has no decoder section: unchanged
