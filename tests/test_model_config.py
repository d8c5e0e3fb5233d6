"""Model configs: one complete JSON per model, typed keys, profile overrides, exact rebuild."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from emclip.errors import ConfigError
from emclip.models import ROLES, create_model, create_model_from_config, get_model_config, list_models
from emclip.models.factory import CONFIG_DIR
from emclip.models.schema import SCHEMAS, validate_config
from emclip.runtime import get_profile


def _leaf_paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out |= _leaf_paths(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


def test_base_configs_are_complete_and_variants_name_their_base():
    for path in sorted(CONFIG_DIR.glob("*.json")):
        raw = json.loads(path.read_text())
        assert raw["role"] in ROLES, path.name
        if "base" not in raw:  # a complete JSON: every key its architecture reads, nothing else
            assert _leaf_paths({**raw, "name": "x"}) == _leaf_paths(SCHEMAS[raw["arch"]]), path.name
        else:
            assert "arch" not in raw, f"{path.name}: a variant changes keys of its base, not the architecture"


def test_every_config_resolves_validates_and_is_json():
    for name in list_models():
        config = get_model_config(name)
        assert config["name"] == name and json.loads(json.dumps(config)) == config
        assert validate_config(config) == config
    assert "image_size" not in get_model_config("emclip")  # a data size, read by no model
    assert list_models(role="proposed") == ["emclip"]
    assert list_models(role="control") == ["emclip-random"]
    assert set(list_models(role="baseline")) == {"unet", "unet-stylerand", "clip-linear"}


def test_variants_differ_from_their_base_only_where_they_say():
    base = get_model_config("emclip")
    for name, path, value in [("emclip-no-em", ("em", "enabled"), False),
                              ("emclip-no-text", ("text", "source"), "learned"),
                              ("emclip-random", ("clip", "pretrained"), "random")]:
        variant = get_model_config(name)
        assert variant[path[0]][path[1]] == value
        variant[path[0]][path[1]] = base[path[0]][path[1]]
        assert {k: v for k, v in variant.items() if k not in ("name", "role", "description")} == \
            {k: v for k, v in base.items() if k not in ("name", "role", "description")}, name
    assert get_model_config("unet-stylerand")["train"] == {"augment": "style"}
    assert get_model_config("unet-stylerand")["unet"] == get_model_config("unet")["unet"]


@pytest.mark.parametrize("overrides,match", [
    ({"em": {"enabled": "no"}}, r"em\.enabled = 'no'.*true or false"),
    ({"em": {"bases": "eight"}}, r"em\.bases = 'eight'.*an int >= 1"),
    ({"em": {"bases": 0}}, r"em\.bases = 0.*>= 1"),
    ({"em": {"bases": -4}}, r"em\.bases = -4"),
    ({"em": {"iters": 0}}, r"em\.iters = 0.*>= 1"),
    ({"em": {"iters": 2.5}}, r"em\.iters = 2\.5"),
    ({"em": {"lam": 0}}, r"em\.lam = 0.*> 0"),
    ({"em": {"lam": -1.0}}, r"em\.lam = -1\.0"),
    ({"em": {"lam": float("nan")}}, r"em\.lam"),
    ({"em": {"momentum": 1.5}}, r"em\.momentum = 1\.5.*<= 1"),
    ({"em": {"norm": "layer"}}, r"em\.norm = 'layer'.*'batch', 'group', 'none'"),
    ({"em": {"backprop": "all"}}, r"em\.backprop"),
    ({"decoder": {"channels": []}}, r"decoder\.channels = \[\].*at least 1"),
    ({"decoder": {"channels": [32, "16"]}}, r"decoder\.channels"),
    ({"decoder": {"embed_dim": True}}, r"decoder\.embed_dim = True"),
    ({"text": {"projection": "attention"}}, r"text\.projection.*'mlp', 'linear', 'fixed'"),
    ({"clip": {"pretrained": "auto"}}, r"clip\.pretrained = 'auto'.*switch the architecture"),
    ({"em": {"bases_": 4}}, r"unknown model config key 'em\.bases_'.*Valid keys here: .*bases"),
    ({"em_bases": 4}, r"em_bases moved: use em=\{'bases': K\}"),
    ({"image_size": 32}, r"image_size moved: use the run profile"),
    ({"em": 4}, r"section em must be a dict"),
    ({"text": {"tie_centres": True}, "em": {"enabled": False}}, r"tie_centres = true needs em\.enabled"),
])
def test_bad_config_values_name_the_key_the_value_and_the_range(overrides, match):
    with pytest.raises(ConfigError, match=match):
        create_model("emclip", "fundus", **overrides)


def test_unet_and_clip_linear_keys_are_typed_too():
    with pytest.raises(ConfigError, match=r"unet\.features = \[8, 16\].*exactly 6"):
        create_model("unet", "fundus", unet={"features": [8, 16]})
    with pytest.raises(ConfigError, match=r"unet\.dropout = 1\.0"):
        create_model("unet", "fundus", unet={"dropout": 1.0})
    with pytest.raises(ConfigError, match=r"train\.augment = 'bigaug'"):
        create_model("unet", "fundus", train={"augment": "bigaug"})
    with pytest.raises(ConfigError, match=r"unknown model config key 'em'"):
        create_model("unet", "fundus", em={"bases": 4})  # a U-Net has no EM section
    with pytest.raises(ConfigError, match="cannot be overridden"):
        create_model("unet", "fundus", arch="emclip")
    with pytest.raises(ConfigError, match=r"head\.feature_norm"):
        create_model("clip-linear", "fundus", head={"feature_norm": "batch"})


def test_values_only_the_clip_tower_can_check_are_config_errors_too():
    with pytest.raises(ConfigError, match=r"model config key clip = .*Unknown CLIP model 'ViT-Z-99'"):
        create_model("clip-linear", "fundus", clip={"model": "ViT-Z-99"})
    with pytest.raises(ConfigError, match=r"model config key encoder = .*layers=\[9\] is invalid.*1\.\.4"):
        create_model("emclip", "fundus", encoder={"layers": [9]})


def test_validate_config_rejects_incomplete_configs():
    config = get_model_config("emclip")
    del config["em"]["lam"]
    with pytest.raises(ConfigError, match=r"lacks key\(s\) em\.lam"):
        create_model_from_config(config, "fundus")


@pytest.mark.parametrize("name", ["emclip", "emclip-no-em", "clip-linear", "unet"])
def test_model_rebuilds_exactly_from_its_config(name):
    torch.manual_seed(0)
    model = create_model(name, "cardiac", profile="ci", em={"bases": 4}) if name.startswith("emclip") \
        else create_model(name, "cardiac", profile="ci")
    config = json.loads(json.dumps(model.config))  # as a run record stores it
    rebuilt = create_model_from_config(config, "cardiac")
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_profile_overrides_only_touch_sections_a_model_has():
    gpu = get_profile("gpu")
    assert gpu.model_overrides["clip"] == {"model": "ViT-B-16", "pretrained": "random"}
    unet = get_model_config("unet", gpu)
    assert unet["unet"]["features"] == [32, 64, 128, 256, 512, 32] and "clip" not in unet
    linear = get_model_config("clip-linear", gpu)
    assert linear["clip"]["model"] == "ViT-B-16" and "em" not in linear
    assert get_model_config("emclip", "cpu") == get_model_config("emclip")
    typo = get_profile("cpu", model_overrides={"decodr": {"channels": [8]}})
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['decodr'\]"):
        get_model_config("unet", typo)  # never skipped silently, even by a model without a decoder


def test_importing_models_and_building_a_unet_do_not_import_open_clip():
    code = textwrap.dedent("""
        import sys, torch
        import emclip.models
        assert "open_clip" not in sys.modules, "import emclip.models loaded open_clip"
        from emclip.models import create_model
        model = create_model("unet", "fundus")
        model(torch.rand(1, 3, 32, 32))
        assert "open_clip" not in sys.modules, "building a U-Net loaded open_clip"
        create_model("clip-linear", "fundus")
        assert "open_clip" in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def test_train_augment_takes_a_dict_spec_with_ranges_and_the_run_uses_it():
    from emclip.engine import prepare_run

    spec = {"mode": "both", "gamma": [0.9, 1.1], "contrast": [0.9, 1.1]}
    run = prepare_run("unet", "fundus", ["domain1"], profile="ci", steps=1, train={"augment": spec})
    assert run.model.config["train"]["augment"] == spec
    assert tuple(run.data["augment"]["gamma"]) == (0.9, 1.1) and tuple(run.data["augment"]["contrast"]) == (0.9, 1.1)
    with pytest.raises(ConfigError, match=r"train\.augment.*'gama'"):
        create_model("unet", "fundus", profile="ci", train={"augment": {"gama": [0.9, 1.1]}})
