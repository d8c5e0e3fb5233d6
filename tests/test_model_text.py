"""Text guidance (background prompt, projections, centres tied to text) and a fair CLIP-linear."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from emclip.clip import encode_prompts, ensemble, load_clip
from emclip.models import create_model
from emclip.tasks import get_task


def test_fundus_guidance_attends_to_a_background_prompt():
    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci", text={"background": True})
    fundus = get_task("fundus")
    assert model.text_embeddings.shape == (3, model.encoder.embed_dim)  # background, disc, cup
    bundle = load_clip(model.config["clip"]["model"], None)
    background = ensemble([encode_prompts(bundle, fundus.guidance_prompts()[0])])[0]
    torch.testing.assert_close(model.text_embeddings[0], background)
    x = torch.rand(1, 3, 32, 32)
    parts = model.eval().forward_parts(x)
    assert parts["logits"].shape == (1, 2, 32, 32)  # logits stay disc and cup
    guide = model.decoder.guide_top[-1]
    attention = guide.attention(parts["deep"], model.decoder.class_embeddings(model.text_embeddings))
    assert attention.shape[1] == 3  # a background pixel may attend to "background"
    no_background = create_model("emclip", "fundus", profile="ci", text={"background": False})
    assert no_background.text_embeddings.shape[0] == 2


def test_cardiac_background_is_already_a_class():
    torch.manual_seed(0)
    a = create_model("emclip", "cardiac", profile="ci", text={"background": True})
    torch.manual_seed(0)
    b = create_model("emclip", "cardiac", profile="ci", text={"background": False})
    torch.testing.assert_close(a.text_embeddings, b.text_embeddings)
    assert a.decoder.class_rows == b.decoder.class_rows == [0, 1, 2, 3]


@pytest.mark.parametrize("projection", ["mlp", "linear", "fixed"])
def test_text_projection_options(projection):
    torch.manual_seed(0)
    model = create_model("emclip", "cardiac", profile="ci", text={"projection": projection},
                         decoder={"embed_dim": 64})
    proj = model.decoder.text_proj
    trainable = sum(p.numel() for p in proj.parameters() if p.requires_grad)
    text = model.text_embeddings
    projected = model.decoder.class_embeddings(text)
    if projection == "fixed":  # frozen, and with D >= E an isometry: CLIP's class geometry is kept
        assert trainable == 0
        torch.testing.assert_close(projected @ projected.T, text @ text.T, atol=1e-5, rtol=0)
    else:
        assert trainable > 0
    assert isinstance(proj, torch.nn.Linear) == (projection != "mlp")


def test_tied_centres_start_as_the_untied_model_and_then_use_the_centres():
    torch.manual_seed(0)
    tied = create_model("emclip", "fundus", profile="ci", text={"tie_centres": True}).eval()
    untied = create_model("emclip", "fundus", profile="ci", text={"tie_centres": False}).eval()
    missing = untied.load_state_dict({k: v for k, v in tied.state_dict().items() if not k.startswith("decoder.match.")})
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(tied(x), untied(x))  # the matched centres enter through a zero-initialised map
    with torch.no_grad():
        torch.nn.init.normal_(tied.decoder.match.value.weight, std=0.5)
    parts = tied.forward_parts(x)
    per_image = tied.decoder.class_embeddings(tied.text_embeddings, parts["em"].bases)
    assert per_image.shape == (2, 2, tied.config["decoder"]["embed_dim"])
    assert not torch.allclose(per_image[0], per_image[1])  # each image's class embeddings follow its centres
    assert not torch.allclose(tied(x), untied(x))
    attention = tied.decoder.match.attention(tied.decoder.text_proj(tied.text_embeddings), parts["em"].bases)
    torch.testing.assert_close(attention.sum(dim=2), torch.ones(2, 2))


def test_tied_centres_train_every_parameter():
    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci", text={"tie_centres": True}).train()
    (model(torch.rand(2, 3, 32, 32)) ** 2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_clip_linear_probes_features_normalised_as_clip_does():
    torch.manual_seed(0)
    model = create_model("clip-linear", "fundus", head={"feature_norm": "ln_post"})
    x = torch.rand(2, 3, 32, 32)
    deep = model.encoder(x)[-1]
    ln_post = model.encoder.visual.ln_post
    expected = F.layer_norm(deep.permute(0, 2, 3, 1), deep.shape[1:2], ln_post.weight, ln_post.bias, ln_post.eps)
    torch.testing.assert_close(model.probe_features(x), expected.permute(0, 3, 1, 2))
    raw = create_model("clip-linear", "fundus", head={"feature_norm": "none"}).probe_features(x)
    torch.testing.assert_close(raw, deep)
    assert not any(p.requires_grad for p in model.encoder.parameters())
