"""Every preparation rule of the `clump_scout/sdss` config, on hand-made inputs."""

import gzip
import io
import math

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from tfds_clumpscout.clump_scout import preparation as prep

RULES = prep.PreparationRules()
CROP_HEADER = "local_ids,label,x1,x2,y1,y2\n"
CONSENSUS_HEADER = "local_ids,x1,x2,y1,y2,mean_tool,false_pos_prob,ra,dec,redshift\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_detect_form_accepts_both_and_names_missing_columns():
    assert prep.detect_form(["local_ids", "label", "x1", "x2", "y1", "y2", "extra"]) == "crop"
    assert prep.detect_form(prep.CATALOGUE_FORMS["consensus"]) == "consensus"
    with pytest.raises(ValueError) as err:
        prep.detect_form(["local_ids", "x1", "x2", "y1"])
    message = str(err.value)
    assert "crop form" in message and "['label', 'y2']" in message
    assert "consensus form" in message and "['y2', 'mean_tool', 'false_pos_prob']" in message


@pytest.mark.parametrize(
    ("box", "status"),
    [
        ((60, 76, 70, 86), "kept"),
        ((math.nan, 76, 70, 86), "bad_coordinates"),
        ((76, 60, 70, 86), "bad_coordinates"),  # inverted
        ((60, 60, 70, 86), "bad_coordinates"),  # zero width
        ((-40, -20, 90, 110), "outside_crop"),
        ((200, 216, 90, 110), "outside_crop"),
        ((92.1, 107.9, 92.1, 107.9), "bulge"),  # centre (100, 100)
        ((99.0, 115.0, 80.0, 96.0), "kept"),  # x near the centre, y 12 px off: not a bulge
        ((20.0, 36, 60, 76), "edge"),  # edge exactly at the margin is dropped
        ((20.01, 36, 60, 76), "kept"),
        ((150, 180.0, 60, 76), "edge"),
        ((150, 179.9, 60, 76), "kept"),
        ((-5, 10, 60, 76), "edge"),  # partly outside
    ],
)
def test_box_rules(box, status):
    x1, x2, y1, y2 = box
    assert prep.box_status(x1, x2, y1, y2, RULES)[0] == status


def test_bulge_radius_is_strict():
    # Centre 8 px right of the crop centre: the notebook's `< 0.02` keeps it.
    assert prep.box_status(100, 116, 92, 108, RULES)[0] == "kept"
    assert prep.box_status(99.9, 115.9, 92, 108, RULES)[0] == "bulge"


def test_without_edge_rule_partial_boxes_are_clipped():
    rules = prep.PreparationRules(edge_margin_px=0)
    status, box = prep.box_status(-5, 10, 190, 215, rules)
    assert status == "kept" and box == (190, 0.0, 200.0, 10)
    assert prep.box_status(-20, -5, 50, 60, rules)[0] == "outside_crop"


def test_read_crop_form(tmp_path):
    path = _write(
        tmp_path,
        "a.csv",
        CROP_HEADER + "7,1,60,76,70,86\n7,2,120,136,110,126\n7,3,60,76,70,86\n,1,60,76,70,86\n",
    )
    rows = prep.read_catalogue(path, RULES)
    assert [r.status for r in rows] == ["kept", "kept", "bad_label", "bad_id"]
    assert [r.class_id for r in rows[:2]] == [0, 1]
    assert rows[0].box_yxyx == (70, 60, 86, 76) and rows[0].row_id == "a.csv:2"
    assert math.isnan(rows[0].ra)


def test_read_consensus_form_shifts_to_crop_and_folds_improbable_into_odd(tmp_path):
    path = _write(
        tmp_path,
        "b.csv",
        CONSENSUS_HEADER
        + "8,150,166,170,186,0.5,0.7,150.5,2.5,0.1\n"  # thresholds are strict: clump
        + "8,150,166,170,186,0.51,0.1,,,\n"  # odd
        + "8,150,166,170,186,0.1,0.71,,,\n"  # improbable -> odd
        + "8,150,166,170,186,0.1,,,,\n"  # missing vote fraction
        + "8,192,208,192,208,0.1,0.1,,,\n",  # bulge at the cutout centre
    )
    rows = prep.read_catalogue(path, RULES)
    assert [r.class_id for r in rows[:3]] == [0, 1, 1]
    assert rows[0].box_yxyx == (70, 50, 86, 66)
    assert (rows[0].ra, rows[0].dec, rows[0].redshift) == (150.5, 2.5, 0.1)
    assert [r.status for r in rows[3:]] == ["bad_label", "bulge"]


def test_read_catalogue_rejects_unknown_header(tmp_path):
    with pytest.raises(ValueError, match="match no accepted form"):
        prep.read_catalogue(_write(tmp_path, "c.csv", "id,x,y\n1,2,3\n"), RULES)


def test_kept_and_dropped_galaxies(tmp_path):
    path = _write(
        tmp_path, "a.csv", CROP_HEADER + "2,1,60,76,70,86\n2,2,30,46,40,56\n1,1,95,105,95,105\n3,2,60,76,70,86\n"
    )
    rows = prep.drop_galaxies(prep.read_catalogue(path, RULES), {"3": "missing_image"})
    assert [r.status for r in rows] == ["kept", "kept", "bulge", "missing_image"]
    galaxies = prep.kept_galaxies(rows)
    assert list(galaxies) == ["2"]  # 1 lost its only box, 3 its image
    np.testing.assert_array_equal(galaxies["2"].boxes_yxyx, [[70, 60, 86, 76], [40, 30, 56, 46]])
    np.testing.assert_array_equal(galaxies["2"].labels, [0, 1])
    assert galaxies["2"].boxes_yxyx.dtype == np.float32


def test_stratum_is_more_odd_than_normal():
    assert prep.stratum(np.array([1, 1, 0])) == 1
    assert prep.stratum(np.array([1, 0])) == 0
    assert prep.stratum(np.array([0])) == 0


def test_stratified_split_partitions_and_stratifies():
    ids = [f"g{i:03d}" for i in range(150)]
    strata = [0] * 100 + [1] * 50
    splits = prep.stratified_split(ids, strata, seed=75)
    assert sorted(sum(splits.values(), [])) == ids
    in_stratum_1 = {g for g, s in zip(ids, strata) if s}
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [105, 30, 15]
    assert [len(set(splits[k]) & in_stratum_1) for k in ("train", "validation", "test")] == [35, 10, 5]


def test_stratified_split_is_deterministic_and_order_free():
    ids = [f"g{i}" for i in range(40)]
    strata = [i % 3 == 0 for i in range(40)]
    first = prep.stratified_split(ids, strata, seed=75)
    assert prep.stratified_split(ids[::-1], strata[::-1], seed=75) == first
    assert prep.stratified_split(ids, strata, seed=76) != first


def test_split_allocation_uses_largest_remainder():
    # 7 -> 4.9 / 1.4 / 0.7; 4 -> 2.8 / 0.8 / 0.4 (tie goes to the earlier split).
    sizes = lambda n: [len(v) for v in prep.stratified_split([str(i) for i in range(n)], [0] * n).values()]
    assert sizes(7) == [5, 1, 1]
    assert sizes(4) == [3, 1, 0]
    assert sizes(10) == [7, 2, 1]


def test_stratified_split_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        prep.stratified_split(["a", "a"], [0, 0])
    with pytest.raises(ValueError, match="2 ids but 1 strata"):
        prep.stratified_split(["a", "b"], [0])
    with pytest.raises(ValueError, match="summing to 1"):
        prep.stratified_split(["a"], [0], fractions=(0.5, 0.2, 0.1))


def test_rules_validate():
    with pytest.raises(ValueError, match="even"):
        prep.PreparationRules(crop_size=199)
    with pytest.raises(ValueError, match="sum to 1"):
        prep.PreparationRules(split_fractions=(0.7, 0.2, 0.2))


def test_center_crop():
    image = np.arange(6 * 6).reshape(6, 6, 1)
    np.testing.assert_array_equal(prep.center_crop(image, 2)[..., 0], [[14, 15], [20, 21]])
    with pytest.raises(ValueError, match=r"\(5, 6, 1\)"):
        prep.center_crop(image[:5], 2)


def _png(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return path


def test_load_png_crops_centre_and_drops_alpha(tmp_path):
    rgba = np.zeros((400, 400, 4), np.uint8)
    rgba[100:300, 100:300, :3] = 200
    rgba[..., 3] = 7
    crop = prep.load_cutout(_png(tmp_path, "a.png", rgba, "RGBA"), RULES)
    assert crop.shape == (200, 200, 3) and crop.dtype == np.uint8
    assert (crop == 200).all()
    ready = np.full((200, 200, 3), 9, np.uint8)
    np.testing.assert_array_equal(prep.load_cutout(_png(tmp_path, "b.png", ready), RULES), ready)


def test_load_rejects_wrong_size_and_corrupt_files(tmp_path):
    with pytest.raises(prep.UnreadableImageError, match="size 300x300"):
        prep.load_cutout(_png(tmp_path, "c.png", np.zeros((300, 300, 3), np.uint8)), RULES)
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(prep.UnreadableImageError, match="d.png"):
        prep.load_cutout(tmp_path / "d.png", RULES)
    (tmp_path / "e.fits").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(prep.UnreadableImageError, match="e.fits"):
        prep.load_cutout(tmp_path / "e.fits", RULES)


def _gri(size=400):
    """g, r, i planes; only i has light, in the top-left (sky) corner = last FITS rows."""
    planes = np.zeros((3, size, size), np.float32)
    planes[2, -150:, :150] = 5.0
    return planes


def test_fits_cube_and_three_hdus_give_the_same_lupton_rgb(tmp_path):
    cube = tmp_path / "cube.fits.gz"
    buffer = io.BytesIO()
    fits.PrimaryHDU(_gri()).writeto(buffer)
    cube.write_bytes(gzip.compress(buffer.getvalue()))
    hdus = tmp_path / "hdus.fits"
    fits.HDUList([fits.PrimaryHDU(_gri()[0]), *(fits.ImageHDU(p) for p in _gri()[1:])]).writeto(hdus)
    a, b = prep.load_cutout(cube, RULES), prep.load_cutout(hdus, RULES)
    np.testing.assert_array_equal(a, b)
    # i -> R only; FITS's last rows land at the top of the image (rows 0..49 of the crop).
    assert a[:50, :50, 0].min() > 0 and a[..., 1:].max() == 0
    assert a[60:, :, 0].max() == 0


def test_fits_with_wrong_layout_is_unreadable(tmp_path):
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((400, 400), np.float32)), fits.ImageHDU(np.zeros((400, 400)))]).writeto(path)
    with pytest.raises(prep.UnreadableImageError, match="g,r,i"):
        prep.load_cutout(path, RULES)


def test_find_cutout_prefers_png(tmp_path):
    assert prep.find_cutout(tmp_path, "x") is None
    (tmp_path / "x.fits").write_bytes(b"")
    assert prep.find_cutout(tmp_path, "x").name == "x.fits"
    (tmp_path / "x.png").write_bytes(b"")
    assert prep.find_cutout(tmp_path, "x").name == "x.png"


def test_report_counts_and_json_round_trip():
    rows = [
        prep.BoxRow("a:2", "1", (1, 2, 3, 4), 0, "kept"),
        prep.BoxRow("a:3", "1", (1, 2, 3, 4), 0, "edge"),
        prep.BoxRow("a:4", "2", (1, 2, 3, 4), 1, "missing_image"),
    ]
    report = prep.PreparationReport.build(
        rows, {"train": ["1"], "validation": [], "test": []}, rules=RULES, catalogues=["a"]
    )
    assert report.counts["kept"] == 1 and report.counts["edge"] == 1 and report.counts["bulge"] == 0
    assert report.rows[0]["split"] == "train" and report.rows[1]["split"] is None
    again = prep.PreparationReport.from_json(report.to_json())
    assert again == report
    assert "3 catalogue rows" in report.summary()
