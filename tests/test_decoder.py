"""The decoder's conv stem: what it sees of the input image."""

import copy

import pytest
import torch


def test_standardised_stem_input_ignores_a_scanner_gain_and_offset_the_centred_one_sees():
    from emclip.decoder.blocks import ConvStem

    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 0.5 + 0.2
    restyled = image * torch.tensor([1.3, 0.8, 1.1]).view(1, 3, 1, 1) + torch.tensor([-0.1, 0.05, 0.0]).view(1, 3, 1, 1)
    standardised, centred = ConvStem([8, 8], input_norm="standardise").eval(), ConvStem([8, 8]).eval()
    for a, b in zip(standardised(image), standardised(restyled)):  # equal up to the 1e-3 that guards the std
        assert (a - b).abs().max() < 0.02 * a.abs().mean()
    for a, b in zip(centred(image), centred(restyled)):
        assert (a - b).abs().max() > 0.5 * a.abs().mean()
    with pytest.raises(ValueError, match="input_norm=.whiten.*centre, standardise, local"):
        ConvStem([8], input_norm="whiten")


def test_stem_input_is_a_model_config_key():
    from emclip.models import create_model

    model = create_model("emclip", "fundus", profile="ci", decoder={"stem_input": "standardise"})
    assert model.decoder.stem.input_norm == "standardise"
    assert create_model("emclip", "fundus", profile="ci").decoder.stem.input_norm == "local"  # the default
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_local_stem_input_also_ignores_an_illumination_gradient_the_standardised_one_sees():
    """Local contrast normalisation removes a slowly varying illumination (a bias field) as well."""
    from emclip.decoder.blocks import ConvStem, local_contrast_normalise

    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64) * 0.5 + 0.2
    ramp = torch.linspace(0.6, 1.4, 64).view(1, 1, 1, 64)  # illumination falling off across the image
    lit = image * ramp
    near = lambda a, b, tol: (a - b).abs().mean() < tol * a.abs().mean()  # noqa: E731
    assert near(local_contrast_normalise(image), local_contrast_normalise(image * 1.3 + 0.1), 0.05)
    assert near(local_contrast_normalise(image), local_contrast_normalise(lit), 0.15)
    local, standardised = ConvStem([8], input_norm="local").eval(), ConvStem([8], input_norm="standardise").eval()
    local_change = (local(image)[0] - local(lit)[0]).abs().mean() / local(image)[0].abs().mean()
    std_change = (standardised(image)[0] - standardised(lit)[0]).abs().mean() / standardised(image)[0].abs().mean()
    assert local_change < 0.5 * std_change, (local_change, std_change)
    assert local_contrast_normalise(image).shape == image.shape


def _receptive_field(stem, size: int = 48) -> list[int]:
    """Per stem stage: the side, in input pixels, of the region that one central output pixel's convolutions
    read (GroupNorm, which adds only per-image statistics of each channel group, replaced by the identity)."""
    stem = copy.deepcopy(stem)
    for module in stem.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.GroupNorm):
                setattr(module, name, torch.nn.Identity())
    image = torch.rand(1, 3, size, size, requires_grad=True)
    sides = []
    for out in stem(image):
        grad, = torch.autograd.grad(out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum(), image, retain_graph=True)
        rows = grad.abs().sum(dim=(0, 1, 3)).nonzero()
        sides.append(int(rows.max() - rows.min() + 1))
    return sides


def test_the_default_stem_sees_edges_at_stride_2_and_not_whole_structures():
    """The default decoder's stem is one stage at stride 2 with a 7-pixel view (the docstrings and the README
    say why); the earlier two-stage stem also read 19-pixel windows at stride 4, about half an optic disc's width."""
    from emclip.decoder.blocks import ConvStem
    from emclip.models import create_model, get_model_config

    torch.manual_seed(0)
    for profile in ("ci", "cpu"):
        stem = create_model("emclip", "fundus", profile=profile).decoder.stem
        assert len(stem.stages) == 1 and list(stem.channels) == get_model_config("emclip")["decoder"]["stem_channels"]
    assert _receptive_field(ConvStem([8], input_norm="centre")) == [7]
    assert _receptive_field(ConvStem([8, 8], input_norm="centre")) == [7, 19]
