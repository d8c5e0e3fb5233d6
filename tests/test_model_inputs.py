"""emclip.inputs: image batches are float32 (B, 3, H, W) in [0, 1], finite; clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from emclip.errors import InputError
from emclip.inputs import check_image_batch
from emclip.models import create_model


def _batch(**changes):
    images = torch.rand(2, 3, 32, 32)
    for (b, c, y, x), value in changes.get("pixels", {}).items():
        images[b, c, y, x] = value
    return images


@pytest.mark.parametrize("value,count", [(float("nan"), 1), (float("inf"), 1), (float("-inf"), 1)])
def test_non_finite_pixels_are_refused_with_their_count(value, count):
    with pytest.raises(InputError, match=rf"{count} non-finite value.*nan_to_num") as err:
        check_image_batch(_batch(pixels={(1, 2, 3, 4): value}))
    assert "divide by 255" not in str(err.value)  # +inf used to get the 0..255 advice


def test_a_nan_pixel_never_reaches_the_logits():
    model = create_model("unet", "fundus").eval()
    images = _batch(pixels={(0, 0, 0, 0): float("nan"), (0, 1, 5, 5): float("nan")})
    with pytest.raises(InputError, match="2 non-finite"):  # old code: every logit of image 0 NaN
        model(images)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_name_float32_and_the_cast(dtype):
    with pytest.raises(InputError, match=rf"must be float32, got {dtype}.*images\.float\(\)"):
        check_image_batch(torch.rand(1, 3, 8, 8).to(dtype))
    with pytest.raises(TypeError):  # also a TypeError, as before
        check_image_batch(torch.rand(1, 3, 8, 8).to(dtype))


def test_range_advice_only_for_finite_values():
    with pytest.raises(InputError, match=r"0\.\.255 values \(max 255\).*divide by 255"):
        check_image_batch(_batch(pixels={(0, 0, 0, 0): 255.0}))
    with pytest.raises(InputError, match="mean/std-normalised"):
        check_image_batch(_batch(pixels={(0, 0, 0, 0): -2.1}))
    check_image_batch(_batch(pixels={(0, 0, 0, 0): 1.05, (0, 0, 0, 1): -0.05}))  # augmentation noise passes


def test_shape_type_and_size_errors():
    with pytest.raises(InputError, match="torch.Tensor"):
        check_image_batch([[0.0]])
    with pytest.raises(InputError, match="images\\[None\\]"):
        check_image_batch(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="3 channels"):
        check_image_batch(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match=r"floating point.*/ 255"):
        check_image_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(InputError, match="not a multiple of 16 \\(patch size\\).*resize to e.g. 32x32"):
        check_image_batch(torch.rand(1, 3, 30, 32), multiple=16, multiple_of="patch size")
    check_image_batch(torch.rand(0, 3, 16, 16), multiple=16)  # an empty batch is valid
