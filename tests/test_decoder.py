"""The decoder's conv stem: what it sees of the input image."""

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
