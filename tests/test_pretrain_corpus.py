"""The pretraining corpus: scenes and captions, determinism, storage, styling on read."""

from __future__ import annotations

import numpy as np
import pytest

from emclip.clip.pretrain import words
from emclip.clip.pretrain.corpus import (
    SCENE_MIX,
    Corpus,
    LazyCorpus,
    StyledCorpus,
    build_corpus,
    render_scene,
)
from emclip.clip.pretrain.task_scenes import cardiac_scene, describe_cardiac, describe_fundus, fundus_scene
from emclip.errors import DataError
from emclip.tasks import CARDIAC, FUNDUS


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(120, size=32, seed=3, progress=False)


def test_every_kind_renders_with_captions(corpus):
    assert set(corpus.kinds) == set(SCENE_MIX)  # 120 scenes draw every kind of the mixture
    assert corpus.images.shape == (120, 3, 32, 32) and corpus.images.dtype == np.uint8
    for caps in corpus.captions:
        assert len(caps) == 4 and all(isinstance(c, str) and len(c.split()) >= 3 for c in caps)
    grey_images = corpus.images[corpus.grey]
    assert (grey_images[:, 0] == grey_images[:, 1]).all()
    assert corpus.grey[[k == "cardiac" for k in corpus.kinds]].all()


def test_task_class_names_appear_in_captions():
    """Every description of every region of both tasks is used in the captions of a few hundred scenes."""
    rng = np.random.default_rng(0)
    text = []
    for _ in range(40):
        image, facts = fundus_scene(rng, 32, 1.0)
        text += [describe_fundus(facts, rng) for _ in range(4)]
        image, facts = cardiac_scene(rng, 32, 1.0)
        text += [describe_cardiac(facts, rng) for _ in range(4)]
    joined = " ".join(text)
    for region in (*FUNDUS.regions, *CARDIAC.regions):
        for name in region.descriptions:
            assert name in joined, name


def test_captions_follow_the_scene():
    rng = np.random.default_rng(1)
    for _ in range(10):
        _, facts = fundus_scene(rng, 32, 1.0)
        where = words.position_phrase(facts["disc"]["cy"], facts["disc"]["cx"])
        captions = [describe_fundus(facts, rng) for _ in range(30)]
        assert any(where in c for c in captions)  # the disc's measured position is what gets said
        assert not any(other in c for c in captions for other in ("on the left", "on the right")
                       if other != where)


def test_rendering_is_deterministic_and_lazy_matches_built(corpus):
    a, b = render_scene(3, 7, 32), render_scene(3, 7, 32)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    lazy = LazyCorpus(120, 32, 3)
    for index in (0, 59, 119):
        image, grey, kind, captions = lazy.scene(index)
        assert np.array_equal(image, corpus.images[index]) and kind == corpus.kinds[index]
        assert captions == corpus.captions[index] and grey == corpus.grey[index]
    with pytest.raises(IndexError):
        lazy.scene(120)


def test_save_load_round_trip_and_bad_files(corpus, tmp_path):
    path = corpus.save(tmp_path / "c.npz")
    back = Corpus.load(path)
    assert np.array_equal(back.images, corpus.images) and back.captions == corpus.captions
    assert back.fingerprint() == corpus.fingerprint()
    with pytest.raises(DataError, match="does not exist"):
        Corpus.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.npz"):
        Corpus.load(tmp_path / "bad.npz")


def test_styled_reading_depends_only_on_seed_epoch_index(corpus):
    styled = StyledCorpus(corpus, style_seed=0)
    a, caps_a = styled.batch([0, 1, 2], epoch=0)
    b, caps_b = styled.batch([0, 1, 2], epoch=0)
    c, _ = styled.batch([0, 1, 2], epoch=1)
    assert a.shape == (3, 3, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert np.array_equal(a.numpy(), b.numpy()) and caps_a == caps_b
    assert not np.array_equal(a.numpy(), c.numpy())  # a new style each epoch
    assert all(cap in corpus.captions[i] for i, cap in enumerate(caps_a))
    fixed = StyledCorpus(corpus, style_seed=0, fixed_style=True)
    assert np.array_equal(fixed.batch([5], epoch=0)[0].numpy(), fixed.batch([5], epoch=9)[0].numpy())


@pytest.mark.parametrize(("cy", "cx", "phrase"), [
    (-0.8, -0.8, "in the upper left"), (0.0, 0.0, "in the centre"), (0.9, 0.1, "at the bottom"),
    (0.1, 0.7, "on the right"), (0.5, -0.5, "in the lower left"),
])
def test_position_words(cy, cx, phrase):
    assert words.position_phrase(cy, cx) == phrase


def test_other_words():
    mask = np.zeros((10, 10), bool)
    mask[0:2, 8:10] = True
    facts = words.region_facts(mask)
    assert facts["area"] == pytest.approx(0.04) and facts["cy"] < -0.6 and facts["cx"] > 0.6
    assert words.relation_phrase({"cy": 0, "cx": -0.5}, {"cy": 0.1, "cx": 0.5}) == "to the left of"
    assert words.relation_phrase({"cy": 0.6, "cx": 0}, {"cy": 0, "cx": 0.1}) == "below"
    assert [words.size_word(v, 1, 2) for v in (0.5, 1.5, 3)] == ["small", "medium-sized", "large"]
    assert (words.plural("box", 2), words.plural("cell", 3), words.plural("circle", 1)) == ("boxes", "cells", "circle")
    assert words.join_words(["a", "b", "c"]) == "a, b and c" and words.count_word(12) == "many"


@pytest.mark.parametrize("cy, cx", [(-0.8, -0.8), (0.0, 0.0), (0.7, 0.1), (0.1, -0.9), (-0.5, 0.6)])
def test_caption_position_reads_back_what_position_phrase_wrote(cy, cx):
    """The dense "where" term reads the place from the caption's words: the band it parses must
    contain the point the phrase was written for, on a grid of any size."""
    bands = words.caption_position(f"a small optic disc {words.position_phrase(cy, cx)} of a fundus photo.")
    assert bands is not None
    for side in (8, 12):
        mask = words.band_mask(bands, side, side)
        row, col = int((cy + 1) / 2 * side), int((cx + 1) / 2 * side)
        assert mask[min(row, side - 1), min(col, side - 1)] and 0 < mask.sum() < side * side


def test_caption_position_is_none_when_the_words_name_no_single_place():
    assert words.caption_position("a fundus photograph of the optic disc; cup-to-disc ratio about 0.5.") is None
    assert words.caption_position("a circle in the upper left and a square on the right.") is None
    assert words.caption_position("the RV, a bright crescent to the left of the LV.") is None  # a relation, no place
