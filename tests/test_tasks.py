"""Task definitions (docs/architecture.md) and label conversions."""

from __future__ import annotations

import pytest
import torch

from emclip.tasks import MULTICLASS, MULTILABEL, get_task, list_tasks


def test_fundus_contract():
    task = get_task("fundus")
    assert task.mode == MULTILABEL
    assert task.label_names == {0: "background", 1: "disc rim", 2: "cup"}
    assert task.region_names == ("disc", "cup")
    assert task.regions[0].labels == (1, 2) and task.regions[1].labels == (2,)
    assert task.domains == ("domain1", "domain2", "domain3", "domain4")
    assert task.domain_names["domain1"] == "Drishti-GS"
    assert task.num_outputs == 2


def test_cardiac_contract():
    task = get_task("Cardiac")
    assert task.mode == MULTICLASS
    assert task.label_names == {0: "background", 1: "LV", 2: "MYO", 3: "RV"}
    assert task.region_names == ("LV", "MYO", "RV")
    assert task.domains == ("A", "B", "C", "D")
    assert task.domain_names == {"A": "Siemens", "B": "Philips", "C": "GE", "D": "Canon"}
    assert task.num_outputs == 4 and task.output_names[0] == "background"


def test_unknown_names_list_the_valid_ones():
    assert list_tasks() == ["fundus", "cardiac"]
    with pytest.raises(ValueError, match="Valid tasks: fundus, cardiac"):
        get_task("prostate")
    with pytest.raises(ValueError, match="Valid domains: A, B, C, D"):
        get_task("cardiac").check_domain("domain1")


@pytest.mark.parametrize("name", ["fundus", "cardiac"])
def test_prompts_one_list_per_output_channel(name):
    task = get_task(name)
    prompts = task.prompts()
    assert len(prompts) == task.num_outputs
    for sentences, descriptions in zip(prompts, task.class_descriptions()):
        assert len(sentences) == len(task.templates) * len(descriptions)
        assert all(descriptions[0] in s or any(d in s for d in descriptions) for s in sentences)
    assert len({tuple(p) for p in prompts}) == task.num_outputs, "classes need distinct prompts"


def test_fundus_regions_nest():
    task = get_task("fundus")
    mask = torch.tensor([[0, 1, 2], [2, 1, 0]])
    regions = task.region_masks(mask)
    assert regions.shape == (2, 2, 3)
    assert torch.equal(regions[0], mask > 0)  # disc = rim + cup
    assert torch.equal(regions[1], mask == 2)  # cup
    assert torch.all(regions[1] <= regions[0])


def test_fundus_logits_round_trip_to_labels():
    task = get_task("fundus")
    labels = torch.tensor([[[0, 1, 2, 2], [1, 1, 0, 2]]])
    logits = task.targets(labels) * 20 - 10  # +10 inside a region, -10 outside
    assert logits.shape == (1, 2, 2, 4)
    assert torch.equal(task.predict_labels(logits), labels)
    assert torch.equal(task.predict_regions(logits), task.region_masks(labels))


def test_cardiac_logits_round_trip_to_labels():
    task = get_task("cardiac")
    labels = torch.randint(0, 4, (2, 5, 5))
    logits = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert torch.equal(task.predict_labels(logits), labels)
    assert torch.equal(task.targets(labels), labels)
    assert task.predict_regions(logits).shape == (2, 3, 5, 5)


def test_bad_masks_and_logits_are_named():
    task = get_task("cardiac")
    with pytest.raises(ValueError, match=r"0\.\.3 .*found min 0, max 7"):
        task.check_mask(torch.tensor([[0, 7]]))
    with pytest.raises(TypeError, match="integer tensor"):
        task.check_mask(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        task.predict_regions(torch.zeros(1, 2, 4, 4))


def test_guidance_classes_include_background_in_both_modes():
    fundus, cardiac = get_task("fundus"), get_task("cardiac")
    assert fundus.guidance_names == ("background", "disc", "cup") and fundus.output_names == ("disc", "cup")
    assert fundus.output_rows == [1, 2] and cardiac.output_rows == [0, 1, 2, 3]
    assert fundus.guidance_prompts()[1:] == fundus.prompts()  # the regions' prompts are unchanged
    assert "a fundus photograph of the retina." in fundus.guidance_prompts()[0]
    assert cardiac.guidance_prompts() == cardiac.prompts()  # multiclass: background is already a class
    for task in (fundus, cardiac):
        names = [task.guidance_names[r] for r in task.output_rows]
        assert tuple(names) == task.output_names
