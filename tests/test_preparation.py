"""Every preparation rule of the `clump_scout/sdss` config, and its cutout reader (`gsfc_tf.images`), on hand-made inputs."""

import gzip
import io
import math

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from gsfc_tf.images import UnreadableImageError, read_image
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


def test_a_label_column_means_the_crop_form_even_with_vote_fractions():
    both = [*prep.CATALOGUE_FORMS["crop"], "mean_tool", "false_pos_prob"]
    assert prep.detect_form(both) == "crop"
    assert prep.detect_form(both, "consensus") == "consensus"
    with pytest.raises(ValueError, match=r"a 'label' column means the crop form .*lacks \['y2'\]"):
        prep.detect_form([c for c in both if c != "y2"])


def test_forced_form_needs_its_columns_and_a_known_name():
    with pytest.raises(ValueError, match=r"catalogue_form='consensus' needs .*lacks \['mean_tool', 'false_pos_prob'\]"):
        prep.detect_form(prep.CATALOGUE_FORMS["crop"], "consensus")
    with pytest.raises(ValueError, match="catalogue_form must be"):
        prep.detect_form(prep.CATALOGUE_FORMS["crop"], "pixels")


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
    form, rows = prep.read_catalogue(path, RULES)
    assert form == "crop"
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
    form, rows = prep.read_catalogue(path, RULES)
    assert form == "consensus"
    assert [r.class_id for r in rows[:3]] == [0, 1, 1]
    assert rows[0].box_yxyx == (70, 50, 86, 66)
    assert (rows[0].ra, rows[0].dec, rows[0].redshift) == (150.5, 2.5, 0.1)
    assert [r.status for r in rows[3:]] == ["bad_label", "bulge"]


def test_read_catalogue_rejects_unknown_header(tmp_path):
    with pytest.raises(ValueError, match="c.csv: .*match no accepted form"):
        prep.read_catalogue(_write(tmp_path, "c.csv", "id,x,y\n1,2,3\n"), RULES)


def test_crop_form_with_vote_fractions_keeps_crop_pixels(tmp_path):
    path = _write(tmp_path, "a.csv", "local_ids,label,x1,x2,y1,y2,mean_tool,false_pos_prob\n7,1,60,76,70,86,0.9,0.9\n")
    form, rows = prep.read_catalogue(path, RULES)
    assert form == "crop"
    assert (rows[0].status, rows[0].box_yxyx, rows[0].class_id) == ("kept", (70, 60, 86, 76), 0)
    form, rows = prep.read_catalogue(path, RULES, form="consensus")
    assert form == "consensus" and rows[0].status == "outside_crop"


def test_read_catalogue_ignores_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + CROP_HEADER + "7,1,60,76,70,86\n").encode())
    form, rows = prep.read_catalogue(path, RULES)
    assert form == "crop" and rows[0].local_id == "7" and rows[0].status == "kept"


def test_drop_duplicates_keeps_the_first_of_identical_boxes():
    box, other = (70.0, 60.0, 86.0, 76.0), (40.0, 30.0, 56.0, 46.0)
    rows = [
        prep.BoxRow("a.csv:2", "7", box, 0, "kept"),
        prep.BoxRow("a.csv:3", "7", box, 0, "kept"),  # same box twice
        prep.BoxRow("a.csv:4", "7", box, 1, "kept"),  # other class: a different truth
        prep.BoxRow("a.csv:5", "8", box, 0, "kept"),  # other galaxy
        prep.BoxRow("a.csv:6", "7", other, 0, "edge"),
        prep.BoxRow("b.csv:2", "7", other, 0, "kept"),  # a dropped row is no original
        prep.BoxRow("b.csv:3", "7", box, 0, "kept"),  # same box from another file
    ]
    assert [r.status for r in prep.drop_duplicates(rows)] == [
        "kept", "duplicate", "kept", "kept", "edge", "kept", "duplicate",
    ]


def test_a_box_in_both_forms_is_one_truth_and_other_boxes_merge(tmp_path):
    crop = _write(tmp_path, "a.csv", CROP_HEADER + "7,1,60,76,70,86\n")
    consensus = _write(
        tmp_path, "b.csv", CONSENSUS_HEADER + "7,160,176,170,186,0.1,0.1,,,\n7,130,146,140,156,0.1,0.1,,,\n"
    )
    rows = prep.drop_duplicates(prep.read_catalogue(crop, RULES)[1] + prep.read_catalogue(consensus, RULES)[1])
    assert [r.status for r in rows] == ["kept", "duplicate", "kept"]
    np.testing.assert_array_equal(prep.kept_galaxies(rows)["7"].boxes_yxyx, [[70, 60, 86, 76], [40, 30, 56, 46]])


def test_kept_and_dropped_galaxies(tmp_path):
    path = _write(
        tmp_path, "a.csv", CROP_HEADER + "2,1,60,76,70,86\n2,2,30,46,40,56\n1,1,95,105,95,105\n3,2,60,76,70,86\n"
    )
    rows = prep.drop_galaxies(prep.read_catalogue(path, RULES)[1], {"3": "missing_image"})
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


def _tf_decode(path):
    """The SavedModel's decoder: what every reader must match."""
    import tensorflow as tf

    return tf.io.decode_image(path.read_bytes(), channels=3, dtype=tf.uint8, expand_animations=False).numpy()


def _png16(tmp_path, name, array):
    """A 16-bit PNG (Pillow cannot write 16-bit RGB)."""
    import tensorflow as tf

    path = tmp_path / name
    path.write_bytes(tf.io.encode_png(array).numpy())
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_pngs_read_as_tensorflow_decodes_them(tmp_path, channels):
    # Every 16-bit value once, so every rounding rule is tried; most values are above 255.
    values = np.arange(2**16, dtype=np.uint16).reshape(256, 256, 1)
    array = np.concatenate([values, values[::-1], values[:, ::-1], values.transpose(1, 0, 2)][:channels], axis=-1)
    path = _png16(tmp_path, "sixteen.png", array)
    image = read_image(path).rgb
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, _tf_decode(path))
    np.testing.assert_array_equal(image[..., 0], (array[..., 0] >> 8).astype(np.uint8))


def test_8_bit_png_modes_read_as_tensorflow_decodes_them(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    palette = Image.fromarray(grey % 16).convert("P")
    palette.putpalette(rng.integers(0, 256, 768).tolist())
    paths = [
        _png(tmp_path, "grey.png", grey),
        _png(tmp_path, "bits.png", grey > 128),
        _png(tmp_path, "grey_alpha.png", rgba[..., :2], "LA"),
        _png(tmp_path, "rgba.png", rgba, "RGBA"),
    ]
    palette.save(tmp_path / "palette.png")
    palette.save(tmp_path / "palette_alpha.png", transparency=3)
    paths += [tmp_path / "palette.png", tmp_path / "palette_alpha.png"]
    for path in paths:
        np.testing.assert_array_equal(read_image(path)[0], _tf_decode(path), err_msg=path.name)


def test_jpeg_reads_as_tensorflows_accurate_integer_decoder(tmp_path):
    import tensorflow as tf

    y, x = np.mgrid[:64, :64]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "a.jpg", quality=80)
    expected = tf.io.decode_jpeg((tmp_path / "a.jpg").read_bytes(), channels=3, dct_method="INTEGER_ACCURATE")
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg")[0], expected.numpy())


def test_32_bit_images_are_unreadable_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 70000, np.int32), "I").save(tmp_path / "deep.tiff")
    with pytest.raises(UnreadableImageError, match="deep.tiff: I mode"):
        read_image(tmp_path / "deep.tiff")


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
    with pytest.raises(UnreadableImageError, match="size 300x300"):
        prep.load_cutout(_png(tmp_path, "c.png", np.zeros((300, 300, 3), np.uint8)), RULES)
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(UnreadableImageError, match="d.png"):
        prep.load_cutout(tmp_path / "d.png", RULES)
    (tmp_path / "e.fits").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(UnreadableImageError, match="e.fits"):
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
    with pytest.raises(UnreadableImageError, match="g,r,i"):
        prep.load_cutout(path, RULES)


def test_index_cutouts_finds_every_suffix_in_any_case_and_folder(tmp_path):
    names = ["a.png", "b.JPG", "images/c.jpeg", "images/deep/d.FITS.GZ", "e.fit", "a.PNG.txt", "notes.md",
             ".hidden/f.png", "._g.png", "images/h.fts", "x.tiff"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    index = prep.index_cutouts(tmp_path)
    relative = {k: [p.relative_to(tmp_path).as_posix() for p in v] for k, v in index.items()}
    assert relative == {
        "a": ["a.png"], "b": ["b.JPG"], "c": ["images/c.jpeg"], "d": ["images/deep/d.FITS.GZ"],
        "e": ["e.fit"], "h": ["images/h.fts"],
    }


def test_index_cutouts_lists_every_file_of_an_ambiguous_id(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("x.png", "images/x.jpg", "x.fits"):
        (tmp_path / name).write_bytes(b"")
    found = prep.index_cutouts(tmp_path)["x"]
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["images/x.jpg", "x.fits", "x.png"]


def test_find_catalogues_reads_top_level_csvs_in_any_case(tmp_path):
    for name in ("a.csv", "B.CSV", ".c.csv", "sub/d.csv", "e.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert [p.name for p in prep.find_catalogues(tmp_path)] == ["B.CSV", "a.csv"]


def test_fingerprint_tells_what_changed(tmp_path):
    _write(tmp_path, "a.csv", CROP_HEADER)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.png").write_bytes(b"12")
    (tmp_path / "2.png").write_bytes(b"1")
    before = prep.fingerprint(tmp_path)
    assert set(before["catalogues"]) == {"a.csv"} and before["cutouts"] == {"2.png": 1, "images/1.png": 2}
    assert prep.fingerprint_difference(before, prep.fingerprint(tmp_path)) == ""
    _write(tmp_path, "a.csv", CROP_HEADER + "7,1,60,76,70,86\n")
    (tmp_path / "2.png").write_bytes(b"22")
    (tmp_path / "images" / "1.png").unlink()
    (tmp_path / "3.jpg").write_bytes(b"")
    assert prep.fingerprint_difference(before, prep.fingerprint(tmp_path)) == (
        "1 catalogue changed (a.csv); 1 cutout added (3.jpg); 1 cutout removed (images/1.png); "
        "1 cutout changed (2.png)"
    )


def test_report_counts_and_json_round_trip():
    rows = [
        prep.BoxRow("a:2", "1", (1, 2, 3, 4), 0, "kept"),
        prep.BoxRow("a:3", "1", (1, 2, 3, 4), 0, "edge"),
        prep.BoxRow("a:4", "2", (1, 2, 3, 4), 1, "missing_image"),
    ]
    report = prep.PreparationReport.build(
        rows,
        {"train": ["1"], "validation": [], "test": []},
        rules=RULES,
        catalogues={"a": "crop"},
        fingerprint={"catalogues": {"a": "0f"}, "cutouts": {"1.png": 3}},
    )
    assert report.counts["kept"] == 1 and report.counts["edge"] == 1 and report.counts["bulge"] == 0
    assert report.counts["duplicate"] == 0 and report.catalogues == {"a": "crop"}
    assert report.rows[0]["split"] == "train" and report.rows[1]["split"] is None
    again = prep.PreparationReport.from_json(report.to_json())
    assert again == report
    assert "3 catalogue rows" in report.summary()
