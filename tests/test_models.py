"""Models: every factory model runs forward + backward on both tasks; decoder pieces; clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from emclip.decoder.blocks import CosineClassifier, TextGuidance
from emclip.errors import ConfigError, InputError
from emclip.models import create_model, get_model_config, list_models
from emclip.tasks import get_task

SIZES = ((32, 32), (48, 40))  # square and non-square; 40 and 48 are not multiples of 16 (U-Net pads)


@pytest.mark.parametrize("task_name", ["fundus", "cardiac"])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_both_sizes(name, task_name):
    torch.manual_seed(0)
    model = create_model(name, task_name, profile="ci")
    task = get_task(task_name)
    assert model.task_name == task_name and model.config["name"] == name
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for h, w in SIZES:
        model.zero_grad(set_to_none=True)
        logits = model(torch.rand(2, 3, h, w))
        assert logits.shape == (2, task.num_outputs, h, w)
        assert torch.isfinite(logits).all()
        (logits.float() ** 2).mean().backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{name}: no gradient for {missing[:5]}"
        assert all(p.grad is None for p in frozen)
    assert trainable
    if model.config["arch"] != "unet":  # CLIP models keep the image tower frozen
        assert sum(p.numel() for p in frozen) > 0


@pytest.mark.parametrize("task_name", ["fundus", "cardiac"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs_without_a_profile(name, task_name, monkeypatch):
    monkeypatch.delenv("EMCLIP_PROFILE", raising=False)
    torch.manual_seed(0)
    model = create_model(name, task_name)
    assert model.config == get_model_config(name)  # the JSON as written, no profile applied
    logits = model(torch.rand(1, 3, 32, 32))
    assert logits.shape == (1, get_task(task_name).num_outputs, 32, 32) and torch.isfinite(logits).all()


def test_sizes_come_from_the_config_then_the_profile_then_the_overrides(capsys):
    assert create_model("emclip", "fundus").em.num_bases == get_model_config("emclip")["em"]["bases"] == 16
    model = create_model("emclip", "fundus", profile="ci")
    assert model.config["em"]["bases"] == 8 and model.em.num_bases == 8
    assert "profile 'ci' sets em.bases=8" in capsys.readouterr().out  # the override is visible
    model = create_model("emclip", "fundus", profile="ci", em={"bases": 4, "iters": 2}, decoder={"embed_dim": 8})
    assert model.em.num_bases == 4 and model.em.iters == 2
    assert model.decoder.pixel_embed.out_channels == 8
    assert model.config["decoder"]["channels"] == get_model_config("emclip", "ci")["decoder"]["channels"]
    create_model("emclip", "fundus", profile="cpu")
    assert "sets" not in capsys.readouterr().out  # the cpu profile runs the configs as written


def test_ablations_differ_as_documented():
    torch.manual_seed(0)
    full = create_model("emclip", "cardiac", profile="ci")
    no_em = create_model("emclip-no-em", "cardiac", profile="ci")
    no_text = create_model("emclip-no-text", "cardiac", profile="ci")
    assert full.em is not None and no_em.em is None and no_em.residual is not None
    assert "text_embeddings" in full.state_dict() and "em.mu" in full.state_dict()
    assert full.text_embeddings.shape == (4, full.encoder.embed_dim)
    torch.testing.assert_close(full.text_embeddings.norm(dim=-1), torch.ones(4))
    assert no_text.text_embeddings is None and no_text.class_queries.requires_grad
    # the -EM ablation keeps the EM unit's convs, norm and residual: only the EM iterations go
    em_keys = {k for k in full.state_dict() if k.startswith("em.")} - {"em.mu"}
    assert {k.replace("residual.", "em.", 1) for k in no_em.state_dict() if k.startswith("residual.")} == em_keys
    assert {k for k in full.state_dict() if not k.startswith("em.")} == \
        {k for k in no_em.state_dict() if not k.startswith("residual.")}


def test_text_embeddings_match_clip_text_tower():
    from emclip.clip import class_text_embeddings, load_clip

    model = create_model("emclip", "fundus", profile="ci", text={"background": False})
    expected = class_text_embeddings(load_clip(model.config["clip"]["model"], None), "fundus")
    torch.testing.assert_close(model.text_embeddings, expected.float())


def test_text_guidance_matches_scaled_dot_product_attention():
    torch.manual_seed(0)
    guide = TextGuidance(channels=6, text_dim=5, attn_dim=4)
    torch.nn.init.normal_(guide.film.weight)  # zero-initialised FiLM would hide the attention
    x, text = torch.randn(2, 6, 3, 5), torch.randn(3, 5)
    attn = guide.attention(x, text)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 3, 5))
    q = guide.query(x).flatten(2).transpose(1, 2)  # (B, N, A)
    k, v = guide.key(text).expand(2, -1, -1), guide.value(text).expand(2, -1, -1)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 4, 3, 5)
    gamma, beta = guide.film(ref).chunk(2, dim=1)
    torch.testing.assert_close(guide(x, text), x * (1 + gamma) + beta)


def test_text_guidance_starts_as_identity():
    guide = TextGuidance(channels=4, text_dim=3)
    x = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(guide(x, torch.randn(2, 3)), x)


def test_cosine_classifier_is_scaled_cosine_plus_bias():
    head = CosineClassifier(num_classes=3, init_scale=7.0)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    pixels, classes = torch.randn(2, 4, 3, 3), torch.randn(3, 4)
    ref = torch.stack([F.cosine_similarity(pixels, c.view(1, 4, 1, 1), dim=1) for c in classes], dim=1)
    torch.testing.assert_close(head(pixels, classes), 7.0 * ref + head.bias.view(1, 3, 1, 1))


def test_text_changes_the_prediction():
    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci").eval()
    x = torch.rand(1, 3, 32, 32)
    before = model(x)
    model.text_embeddings.copy_(model.text_embeddings.flip(0))  # swap the classes' texts
    assert not torch.allclose(before, model(x))


@pytest.mark.parametrize("name", ["emclip", "unet"])
def test_bad_inputs_give_clear_errors(name):
    model = create_model(name, "fundus", profile="ci")
    with pytest.raises(InputError, match="3 channels"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_unknown_names_and_keys_list_valid_ones():
    with pytest.raises(ConfigError, match="Valid models: .*emclip.*unet"):
        create_model("segformer", "fundus", profile="ci")
    with pytest.raises(ConfigError, match="Valid keys"):
        create_model("unet", "fundus", profile="ci", widht=3)
    with pytest.raises(ValueError, match="Valid tasks"):
        create_model("unet", "retina", profile="ci")
    assert set(list_models()) == {"emclip", "unet", "clip-linear", "emclip-no-em", "emclip-no-text",
                                  "emclip-random", "unet-stylerand"}


def test_exercise_checkers_accept_right_and_reject_wrong_answers():
    from emclip.exercises.training import check_cosine_logits, check_film

    def film(x, attn, values, conv):
        gamma, beta = conv(torch.einsum("brhw,ra->bahw", attn, values)).chunk(2, dim=1)
        return x * (1 + gamma) + beta

    def film_wrong(x, attn, values, conv):
        gamma, beta = conv(torch.einsum("brhw,ra->bahw", attn, values)).chunk(2, dim=1)
        return x * gamma + beta

    def cosine(pixels, classes, scale, bias):
        cos = torch.einsum("bdhw,rd->brhw", F.normalize(pixels, dim=1), F.normalize(classes, dim=1))
        return scale * cos + bias.view(1, -1, 1, 1)

    def dot(pixels, classes, scale, bias):
        return scale * torch.einsum("bdhw,rd->brhw", pixels, classes) + bias.view(1, -1, 1, 1)

    assert "correct" in check_film(film) and "correct" in check_cosine_logits(cosine)
    with pytest.raises(AssertionError, match=r"1 \+ gamma"):
        check_film(film_wrong)
    with pytest.raises(AssertionError, match="normalise"):
        check_cosine_logits(dot)
