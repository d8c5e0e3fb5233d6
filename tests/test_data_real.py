"""Real-data loaders on fake trees in exactly the public layouts (Fundus-DG, M&Ms) + `emclip prepare`."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from emclip.cli import main as cli_main
from emclip.data import get_dataset
from emclip.data.checks import check_tree
from emclip.data.real_fundus import DOMAIN_DIRS, decode_fundus_mask
from emclip.data.splits import mms_split_of
from emclip.errors import DataError


def fundus_arrays(h=30, w=40, shift=0):
    """A fake ROI: RGB image and DoFE grey mask (255 bg, 128 rim, 0 cup) with known label counts."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 2 - shift)
    grey = np.full((h, w), 255, np.uint8)
    grey[r < 10] = 128
    grey[r < 5] = 0
    image = np.stack([np.full((h, w), 200), (r * 4).clip(0, 255), np.full((h, w), 30)], -1).astype(np.uint8)
    return image, grey


def make_fundus_tree(root, n_train=10, n_test=2):
    for folder in DOMAIN_DIRS.values():
        for split, count in (("train", n_train), ("test", n_test)):
            base = root / "Fundus" / folder / split / "ROIs"
            (base / "image").mkdir(parents=True)
            (base / "mask").mkdir(parents=True)
            for i in range(count):
                image, grey = fundus_arrays(shift=i % 3)
                Image.fromarray(image).save(base / "image" / f"g{i:04d}.png")
                Image.fromarray(grey).save(base / "mask" / f"g{i:04d}.png")
    return root


@pytest.fixture
def fundus_root(tmp_path):
    return make_fundus_tree(tmp_path)


def test_fundus_decoding_and_resizing(fundus_root):
    ds = get_dataset("fundus", "domain1", "test", source="real", root=fundus_root, size=30)
    assert len(ds) == 2
    sample = ds[0]
    image, grey = fundus_arrays(shift=0)
    assert sample["image"].shape == (3, 30, 30) and sample["mask"].shape == (30, 30)
    assert sample["domain"] == "domain1" and "g0000" in sample["id"]
    labels = decode_fundus_mask(grey)
    assert (labels == 2).sum() == (grey == 0).sum() and (labels == 1).sum() == (grey == 128).sum()
    assert set(sample["mask"].unique().tolist()) == {0, 1, 2}
    assert float(sample["image"][0].mean()) == pytest.approx(200 / 255, abs=0.01)  # red channel kept
    assert float(sample["image"][2].mean()) == pytest.approx(30 / 255, abs=0.01)
    # nearest-neighbour mask resizing keeps the label proportions (cup / disc area ratio ~ 1/4)
    ratio = float((sample["mask"] == 2).sum()) / float((sample["mask"] > 0).sum())
    assert ratio == pytest.approx((grey == 0).sum() / (grey < 255).sum(), abs=0.08)


def test_fundus_mask_thresholds_follow_dofe():
    grey = np.full((10, 10), 128, np.uint8)  # mostly clean levels; a few anti-aliased edge values
    grey[0, :4] = [0, 50, 51, 128]
    grey[1, :4] = [200, 201, 255, 255]
    labels = decode_fundus_mask(grey)
    assert labels[:2, :4].tolist() == [[2, 2, 1, 1], [1, 0, 0, 0]]


def test_fundus_splits_val_is_every_tenth_train_image(fundus_root):
    train = get_dataset("fundus", "domain3", "train", source="real", root=fundus_root, size=16)
    val = get_dataset("fundus", "domain3", "val", source="real", root=fundus_root, size=16)
    ids_train = {train[i]["id"] for i in range(len(train))}
    assert len(train) == 9 and len(val) == 1 and val[0]["id"] not in ids_train


def test_real_root_from_environment(fundus_root, monkeypatch):
    monkeypatch.setenv("EMCLIP_DATA_DIR", str(fundus_root))
    assert len(get_dataset("fundus", "domain2", "test", source="real", size=16)) == 2
    monkeypatch.delenv("EMCLIP_DATA_DIR")
    with pytest.raises(FileNotFoundError, match="EMCLIP_DATA_DIR"):
        get_dataset("fundus", "domain2", "test", source="real")


def test_fundus_missing_folder(fundus_root):
    import shutil

    shutil.rmtree(fundus_root / "Fundus" / "Domain2" / "test" / "ROIs" / "mask")
    with pytest.raises(FileNotFoundError, match=r"Domain2/test/ROIs/mask.*emclip prepare"):
        get_dataset("fundus", "domain2", "test", source="real", root=fundus_root)


def test_fundus_image_without_mask(fundus_root):
    (fundus_root / "Fundus" / "Domain1" / "test" / "ROIs" / "mask" / "g0001.png").unlink()
    with pytest.raises(DataError, match=r"g0001\.png has no mask"):
        get_dataset("fundus", "domain1", "test", source="real", root=fundus_root)


def test_fundus_unexpected_mask_values(fundus_root):
    bad = fundus_root / "Fundus" / "Domain1" / "test" / "ROIs" / "mask" / "g0000.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)).save(bad)
    ds = get_dataset("fundus", "domain1", "test", source="real", root=fundus_root)
    with pytest.raises(ValueError, match=r"g0000\.png: unexpected mask values.*255 background"):
        ds[0]


def test_fundus_unreadable_file(fundus_root):
    bad = fundus_root / "Fundus" / "Domain4" / "test" / "ROIs" / "image" / "g0000.png"
    bad.write_bytes(b"not a png at all")
    ds = get_dataset("fundus", "domain4", "test", source="real", root=fundus_root)
    with pytest.raises(DataError, match=r"g0000\.png.*download it again"):
        ds[0]


def test_fundus_shape_mismatch(fundus_root):
    mask = fundus_root / "Fundus" / "Domain1" / "test" / "ROIs" / "mask" / "g0000.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(mask)
    ds = get_dataset("fundus", "domain1", "test", source="real", root=fundus_root)
    with pytest.raises(ValueError, match=r"Shape mismatch: image .*g0000\.png is 40x30 but its mask"):
        ds[0]


# ----- M&Ms ------------------------------------------------------------------------------
def codes_for(split, count, prefix):
    found, k = [], 0
    while len(found) < count:
        code = f"{prefix}{k:04d}"
        if mms_split_of(code) == split:
            found.append(code)
        k += 1
    return found


def make_mms_tree(root, vendor="A", split="train", n_subjects=2, shape=(24, 20, 3, 5), ed=0, es=3,
                  table_vendor=None, table_code=str, file_name=str):
    """Fake M&Ms subjects of ``vendor`` in ``split``: slice 0 LV + MYO, slice 1 RV only, slice 2 empty.

    ``table_vendor`` / ``table_code`` / ``file_name`` change how the vendor code, the subject code
    and the file names are spelled (letter case), to test that matching ignores it.
    """
    rng = np.random.default_rng(0)
    codes = codes_for(split, n_subjects, f"{vendor}X")
    with open(root / "201014_M&Ms_Dataset_Information_-_opendataset.csv", "a", newline="") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(["External code", "VendorName", "Vendor", "Centre", "ED", "ES"])
        for code in codes:
            writer.writerow([table_code(code), "Siemens", table_vendor or vendor, 1, ed, es])
    for code in codes:
        folder = root / "Training" / "Labeled" / code
        folder.mkdir(parents=True)
        volume = rng.random(shape).astype(np.float32) * 500
        labels = np.zeros(shape, np.int16)
        frames = (ed, es) if len(shape) == 4 else (Ellipsis,)
        for frame in frames:
            index = (frame,) if frame is not Ellipsis else ()
            labels[(slice(8, 14), slice(8, 12), 0, *index)] = 1  # slice 0: LV + MYO
            labels[(slice(6, 16), slice(6, 8), 0, *index)] = 2
            labels[(slice(8, 12), slice(14, 18), 1, *index)] = 3  # slice 1: RV only; slice 2 empty
        affine = np.diag([1.25, 1.5, 10.0, 1.0])  # in-plane 1.25 x 1.5 mm, 10 mm slices
        nib.save(nib.Nifti1Image(volume, affine), folder / file_name(f"{code}_sa.nii.gz"))
        nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / file_name(f"{code}_sa_gt.nii.gz"))
    return codes


def make_mms_all_splits(root, vendors="ABCD", **kwargs):
    """Two subjects of every vendor in every split; returns {(vendor, split): codes}."""
    return {(v, s): make_mms_tree(root, v, s, **kwargs) for v in vendors for s in ("train", "val", "test")}


def test_mms_slices_and_decoding(tmp_path):
    codes = make_mms_tree(tmp_path, "A", "train")
    make_mms_tree(tmp_path, "B", "train")
    ds = get_dataset("cardiac", "A", "train", source="real", root=tmp_path, size=32)
    assert len(ds) == 2 * 2 * 2  # subjects x (ED, ES) x non-empty slices
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].dtype == torch.int64
    assert sample["domain"] == "A" and sample["id"].startswith(f"mms-{codes[0]}-ED-z00")
    assert set(sample["mask"].unique().tolist()) == {0, 1, 2}
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert torch.equal(sample["image"][0], sample["image"][2])
    assert len(get_dataset("cardiac", "B", "train", source="real", root=tmp_path)) == 8
    # 24 x 20 pixels of 1.25 x 1.5 mm resized to 32 x 32: the header's spacing, rescaled
    assert torch.allclose(sample["spacing"], torch.tensor([1.25 * 24 / 32, 1.5 * 20 / 32]))


def test_mms_distances_come_out_in_mm(tmp_path):
    from emclip.data import make_dataloader
    from emclip.evaluation import evaluate_model
    from emclip.metrics import compute_hd95

    make_mms_tree(tmp_path, "A", "train")
    ds = get_dataset("cardiac", "A", "train", source="real", root=tmp_path, size=32)

    class ShiftedOracle(torch.nn.Module):  # sees the whole data set in one batch: its labels moved 2 columns
        def forward(self, images):
            masks = torch.stack([ds[k]["mask"] for k in range(len(images))])
            return torch.nn.functional.one_hot(torch.roll(masks, 2, dims=-1), 4).permute(0, 3, 1, 2).float()

    model = ShiftedOracle()
    table = evaluate_model(model, "cardiac", make_dataloader(ds, batch_size=len(ds), shuffle=False), device="cpu")
    first = table[(table.id == ds[0]["id"]) & (table.region == "LV")].iloc[0]
    target = ds[0]["mask"] == 1
    pred = torch.roll(ds[0]["mask"], 2, dims=-1) == 1
    in_mm = compute_hd95(pred, target, spacing=ds[0]["spacing"].tolist())
    in_px = compute_hd95(pred, target)
    assert abs(float(first.hd95) - float(in_mm)) < 1e-6
    assert abs(float(in_mm) - float(in_px) * 1.5 * 20 / 32) < 1e-6  # a column shift: column spacing


def test_mms_missing_vendor_table(tmp_path):
    make_mms_tree(tmp_path)
    next(tmp_path.glob("*.csv")).unlink()
    with pytest.raises(FileNotFoundError, match=r"No M&Ms vendor table .*External code"):
        get_dataset("cardiac", "A", "train", source="real", root=tmp_path)


def test_mms_shape_mismatch_and_bad_labels(tmp_path):
    codes = make_mms_tree(tmp_path)
    gt = tmp_path / "Training" / "Labeled" / codes[0] / f"{codes[0]}_sa_gt.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 2, 5), np.int16), np.eye(4)), gt)
    with pytest.raises(ValueError, match=rf"Shape mismatch: .*{codes[0]}_sa.nii.gz"):
        get_dataset("cardiac", "A", "train", source="real", root=tmp_path)
    labels = np.zeros((24, 20, 3, 5), np.int16)
    labels[0, 0, 0, 0] = 7
    nib.save(nib.Nifti1Image(labels, np.eye(4)), gt)
    with pytest.raises(ValueError, match=r"unexpected label values \[0, 7\]"):
        get_dataset("cardiac", "A", "train", source="real", root=tmp_path)


def test_mms_unreadable_volume(tmp_path):
    codes = make_mms_tree(tmp_path)
    (tmp_path / "Training" / "Labeled" / codes[1] / f"{codes[1]}_sa.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"Cannot read NIfTI file .*{codes[1]}_sa.nii.gz"):
        get_dataset("cardiac", "A", "train", source="real", root=tmp_path)


# ----- emclip prepare ----------------------------------------------------------------------
def test_prepare_reports_complete_and_missing(fundus_root, tmp_path, capsys):
    assert cli_main(["prepare", "--task", "fundus", "--root", str(fundus_root)]) == 0
    assert "complete" in capsys.readouterr().out
    (fundus_root / "Fundus" / "Domain3" / "train" / "ROIs" / "mask" / "g0002.png").unlink()
    assert cli_main(["prepare", "--task", "fundus", "--root", str(fundus_root)]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "g0002.png" in out and "Domain3" in out


def test_prepare_mms(tmp_path, capsys):
    mms = tmp_path / "MnM"
    mms.mkdir()
    make_mms_all_splits(mms)
    assert cli_main(["prepare", "--task", "cardiac", "--root", str(tmp_path)]) == 0
    assert "vendor D labelled subjects: 6 (train 2 / val 2 / test 2)" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["prepare", "--task", "cardiac", "--root", str(empty)]) == 1
    assert "No M&Ms vendor table" in capsys.readouterr().out


def test_exercise_checker_decode():
    from emclip.exercises.data import check_decode_fundus_mask

    assert "correct" in check_decode_fundus_mask(decode_fundus_mask)
    with pytest.raises(AssertionError, match="should map to label"):
        check_decode_fundus_mask(lambda g: (g < 128).astype(int))  # wrong thresholds


# ----- reliability: decoding by grey level, one discovery rule, clear errors (issue 16) ---------
def _mask_dir(root, domain="Domain1", split="test"):
    return root / "Fundus" / domain / split / "ROIs" / "mask"


def test_16_bit_fundus_mask_keeps_the_disc_rim(fundus_root):
    """A 16-bit mask stores the DoFE levels x 257; Pillow's 8-bit conversion clipped 128 x 257 to 255."""
    _, grey = fundus_arrays(shift=0)
    Image.fromarray(grey.astype(np.uint16) * 257).save(_mask_dir(fundus_root) / "g0000.png")
    assert Image.open(_mask_dir(fundus_root) / "g0000.png").mode.startswith("I")  # really 16-bit on disk
    ds = get_dataset("fundus", "domain1", "test", source="real", root=fundus_root, size=30)
    from_16_bit = ds[0]["mask"]
    Image.fromarray(grey).save(_mask_dir(fundus_root) / "g0000.png")
    assert torch.equal(from_16_bit, ds[0]["mask"])  # the same labels as the 8-bit file
    assert (from_16_bit == 1).any() and (from_16_bit == 2).any()


def test_16_bit_file_with_8_bit_levels_and_unusable_masks(fundus_root, tmp_path):
    from emclip.data.imageio import read_grey_levels

    _, grey = fundus_arrays(shift=0)
    Image.fromarray(grey.astype(np.uint16)).save(tmp_path / "levels.png")  # 0 / 128 / 255 in a 16-bit file
    assert np.array_equal(read_grey_levels(tmp_path / "levels.png"), grey)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float.tif")
    with pytest.raises(DataError, match=r"float\.tif: a F mask .*8-bit grey PNG"):
        read_grey_levels(tmp_path / "float.tif")
    with pytest.raises(DataError, match="not on the 8-bit scale"):
        decode_fundus_mask(grey.astype(np.int32) * 257)


def test_upper_case_extensions_load_and_prepare_agrees(fundus_root, capsys):
    """Image and mask named .PNG (or mixed case) pair up in the loader exactly as in `emclip prepare`."""
    base = fundus_root / "Fundus" / "Domain2" / "test" / "ROIs"
    (base / "image" / "g0000.png").rename(base / "image" / "g0000.PNG")
    (base / "mask" / "g0000.png").rename(base / "mask" / "g0000.PNG")
    (base / "image" / "g0001.png").rename(base / "image" / "g0001.Png")  # its mask stays .png
    (base / "image" / "._g0001.png").write_bytes(b"macOS resource fork")  # hidden files are not images
    ds = get_dataset("fundus", "domain2", "test", source="real", root=fundus_root, size=16)
    assert [p[0].name for p in ds.pairs] == ["g0000.PNG", "g0001.Png"]
    assert set(ds[0]["mask"].unique().tolist()) == {0, 1, 2}
    report = check_tree("fundus", fundus_root)
    assert report.ok and report.counts["domain2/test"].startswith(f"{len(ds)} images")


def test_prepare_counts_equal_loader_counts_on_a_messy_tree(fundus_root):
    """Whatever the tree holds, `prepare` reports a problem exactly where the loader refuses."""
    for domain in ("Domain1", "Domain3"):
        base = fundus_root / "Fundus" / domain / "train" / "ROIs"
        (base / "image" / "g0003.png").rename(base / "image" / "g0003.TIFF")
        (base / "image" / "notes.txt").write_text("not an image")
    (fundus_root / "Fundus" / "Domain3" / "train" / "ROIs" / "mask" / "g0004.png").unlink()  # an orphan
    report = check_tree("fundus", fundus_root)
    for domain in DOMAIN_DIRS:
        for split in ("train", "val", "test"):
            folder = "test" if split == "test" else "train"
            broken = any(f"{DOMAIN_DIRS[domain]}/{folder}" in p for p in report.problems)
            if broken:
                with pytest.raises(DataError, match="has no mask"):
                    get_dataset("fundus", domain, split, source="real", root=fundus_root)
            else:
                get_dataset("fundus", domain, split, source="real", root=fundus_root)
            if split != "val" and not broken:
                count = len(get_dataset("fundus", domain, split, source="real", root=fundus_root))
                if split == "train":
                    count += len(get_dataset("fundus", domain, "val", source="real", root=fundus_root))
                assert report.counts[f"{domain}/{folder}"].startswith(f"{count} images")
    assert [p for p in report.problems if "Domain3/train" in p] and not report.ok


def test_empty_fundus_folder_says_what_was_found(fundus_root):
    image_dir = fundus_root / "Fundus" / "Domain4" / "test" / "ROIs" / "image"
    for path in image_dir.iterdir():
        path.rename(path.with_suffix(".gif"))
    with pytest.raises(DataError, match=r"No domain4 test images in .*Domain4/test/ROIs/image: looked for files "
                                        r"ending in \.png.* found 2 entries: g0000\.gif, g0001\.gif"):
        get_dataset("fundus", "domain4", "test", source="real", root=fundus_root)


def test_tiny_fundus_train_folder_is_refused_before_training(tmp_path):
    """9 training images leave no validation image: refuse, stating the split rule, before training."""
    from emclip.engine import train_from_profile

    make_fundus_tree(tmp_path, n_train=9)
    with pytest.raises(DataError, match=r"no val images: val is every 10th image .* holds 9 image\(s\); need at least 10"):
        get_dataset("fundus", "domain1", "val", source="real", root=tmp_path)
    assert len(get_dataset("fundus", "domain1", "train", source="real", root=tmp_path)) == 9
    report = check_tree("fundus", tmp_path)
    assert not report.ok and any("too few for a validation split" in p for p in report.problems)
    with pytest.raises(DataError, match="every 10th"):
        train_from_profile("unet", "fundus", ["domain1"], profile="ci", source="real", root=tmp_path, steps=2,
                           progress=False)


def test_lower_case_vendor_and_subject_codes_are_found(tmp_path, capsys):
    codes = make_mms_tree(tmp_path, "A", "train", table_vendor="a", table_code=str.lower)
    make_mms_tree(tmp_path, "B", "train", file_name=str.upper)  # B..._SA.NII.GZ
    ds = get_dataset("cardiac", "A", "train", source="real", root=tmp_path, size=16)
    assert len(ds) == 2 * 2 * 2 and sorted(ds.subjects) == sorted(codes)
    assert len(get_dataset("cardiac", "B", "train", source="real", root=tmp_path, size=16)) == 8
    report = check_tree("cardiac", tmp_path)
    assert report.counts["vendor A labelled subjects"].startswith("2 (train 2")
    assert report.counts["vendor B labelled subjects"].startswith("2 (train 2")


def test_empty_vendor_is_a_data_error_that_says_why(tmp_path):
    make_mms_tree(tmp_path, "A", "train")
    make_mms_tree(tmp_path, "B", "test")
    with pytest.raises(DataError) as err:
        get_dataset("cardiac", "D", "train", source="real", root=tmp_path)
    text = str(err.value)
    assert f"vendor D in split 'train' under {tmp_path}" in text and "70 / 10 / 20 %" in text
    assert "labelled subjects per vendor A 2, B 2, C 0, D 0" in text
    with pytest.raises(DataError, match=r"vendor B by split: train 0, val 0, test 2"):
        get_dataset("cardiac", "B", "val", source="real", root=tmp_path)
    report = check_tree("cardiac", tmp_path)  # prepare flags the same gaps
    assert any("no labelled subjects (with _sa_gt.nii.gz) of vendor D" in p for p in report.problems)
    assert any("vendor B has no labelled subject in split(s) train, val" in p for p in report.problems)


def test_three_d_nifti_is_not_called_a_shape_mismatch(tmp_path):
    codes = make_mms_tree(tmp_path, "A", "test", shape=(24, 20, 3))
    with pytest.raises(DataError) as err:
        get_dataset("cardiac", "A", "test", source="real", root=tmp_path)
    text = str(err.value)
    assert "Shape mismatch" not in text and f"{codes[0]}_sa.nii.gz is a 3-D volume of shape (24, 20, 3)" in text
    assert "4-D (H, W, Z, T)" in text


def test_mms_test_and_val_keep_slices_without_ground_truth(tmp_path):
    """Empty-ground-truth slices stay in val/test (false positives there must count); train drops them."""
    splits = make_mms_all_splits(tmp_path, vendors="C")
    test = get_dataset("cardiac", "C", "test", source="real", root=tmp_path, size=32)
    assert len(test) == 2 * 2 * 3  # subjects x (ED, ES) x every slice
    assert sum(int(test[i]["mask"].sum() == 0) for i in range(len(test))) == 2 * 2  # slice 2 of each volume
    assert len(get_dataset("cardiac", "C", "val", source="real", root=tmp_path)) == 12
    assert len(get_dataset("cardiac", "C", "train", source="real", root=tmp_path)) == 8
    sample = test[5]
    code = splits[("C", "test")][0]
    assert (sample["volume"], sample["slice"]) == (f"{code}-ES", 2) and sample["id"] == f"mms-{code}-ES-z02"
    assert float(sample["slice_thickness"]) == 10.0
    assert torch.allclose(sample["spacing"], torch.tensor([1.25 * 24 / 32, 1.5 * 20 / 32]))
    volumes = {test[i]["volume"] for i in range(len(test))}
    assert len(volumes) == 4  # one per subject and phase


def test_mask_and_image_edges_stay_within_half_a_pixel_after_resizing():
    """`nearest` sampled the mask at i * scale, up to a pixel off the antialiased image; `nearest-exact` aligns."""
    from emclip.data.imageio import resize_pair

    worst = 0.0
    for n_in, n_out in [(40, 16), (30, 64), (37, 23), (96, 64)]:
        for edge in range(3, n_in - 3):
            step = (np.arange(n_in) >= edge).astype(np.float32)
            image = np.broadcast_to(step, (n_in, n_in))
            img, msk = resize_pair(image, image.astype(np.int64), n_out)
            row, labels = img[0, 0].numpy(), msk[0].numpy()
            j = int(np.argmax(row >= 0.5))  # first output pixel at or above half the step
            image_edge = (j - 1) + (0.5 - row[j - 1]) / (row[j] - row[j - 1]) + 0.5  # in pixel-boundary units
            mask_edge = int(np.argmax(labels >= 1))
            worst = max(worst, abs(image_edge - mask_edge))
    assert worst <= 0.5 + 1e-6, worst
