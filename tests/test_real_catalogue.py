"""The `sdss` preparation on the real Clump Scout boxes (skipped when they are absent).

The labels are read from ``<repo>/../shared/data/clumpscout_labels`` at test time only;
expected counts are recomputed here with plain numpy, independently of `preparation`.
"""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfds_clumpscout.clump_scout import preparation as prep

LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clumpscout_labels"
pytestmark = pytest.mark.skipif(not (LABELS / "train.csv").exists(), reason=f"no labels at {LABELS}")


def _expected_status(rows: list[dict]) -> np.ndarray:
    """The paper's rules in crop pixels, first matching reason wins."""
    x1, x2, y1, y2 = (np.array([float(r[k]) for r in rows]) for k in ("x1", "x2", "y1", "y2"))
    label = np.array([float(r["label"]) for r in rows])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    conditions = [
        np.array([not r["local_ids"].strip() for r in rows]),
        ~np.isin(label, [1, 2]),
        ~np.isfinite(x1 + x2 + y1 + y2) | (x2 <= x1) | (y2 <= y1),
        (x2 <= 0) | (y2 <= 0) | (x1 >= 200) | (y1 >= 200),
        (np.abs(cx - 100) < 8) & (np.abs(cy - 100) < 8),
        ~((x1 > 20) & (y1 > 20) & (x2 < 180) & (y2 < 180)),
    ]
    reasons = ["bad_id", "bad_label", "bad_coordinates", "outside_crop", "bulge", "edge"]
    return np.select(conditions, reasons, default="kept")


def _read(name):
    with (LABELS / name).open(newline="") as f:
        return list(csv.DictReader(f))


def test_full_catalogue_rules_match_numpy():
    rows = _read("train.csv") + _read("valid.csv")
    names = ("train.csv", "valid.csv")
    forms, parsed = zip(*(prep.read_catalogue(LABELS / name, prep.PreparationRules()) for name in names))
    assert forms == ("crop", "crop")
    parsed = prep.drop_duplicates(parsed[0] + parsed[1])
    expected = _expected_status(rows)
    # The authors' boxes hold no duplicates (checked by hand too): dropping them changes nothing.
    assert [r.status for r in parsed] == expected.tolist()
    counts = Counter(expected.tolist())
    # Real boxes do hit the edge rules (bulge marks were already removed upstream).
    assert counts["edge"] > 0 and counts["outside_crop"] > 0
    # The paper's catalogue (shared labels README): 18,772 galaxies, 29,619 normal + 10,126 odd.
    galaxies = prep.kept_galaxies(parsed)
    assert len(galaxies) == 18_772
    labels = np.concatenate([g.labels for g in galaxies.values()])
    assert (int((labels == 0).sum()), int((labels == 1).sum())) == (29_619, 10_126)


def test_build_from_sample_accounts_for_every_row(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from tfds_clumpscout.clump_scout import clump_scout_dataset_builder as builder_module

    rows = _read("train.csv")
    ids = sorted({r["local_ids"] for r in rows})
    sample = set(np.random.default_rng(0).choice(ids, size=40, replace=False))
    sample_rows = [r for r in rows if r["local_ids"] in sample]
    manual = tmp_path / "manual"
    manual.mkdir()
    with (manual / "sample.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sample_rows)
    without_image = sorted(sample)[:3]
    placeholder = np.full((400, 400, 3), 40, np.uint8)
    for local_id in sorted(sample)[3:]:
        Image.fromarray(placeholder).save(manual / f"{local_id}.png")

    builder = builder_module.Builder(config="sdss", data_dir=tmp_path / "data")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    report = builder.load_preparation_report()

    expected = _expected_status(sample_rows)
    no_image = np.isin([r["local_ids"] for r in sample_rows], without_image)
    expected = np.where((expected == "kept") & no_image, "missing_image", expected)
    assert report.counts == {s: int((expected == s).sum()) for s in ("kept", *prep.DROP_REASONS)}
    kept_galaxies = {r["local_ids"] for r, s in zip(sample_rows, expected) if s == "kept"}
    assert sum(report.splits.values()) == len(kept_galaxies)
    examples = [
        ex["image/id"].decode()
        for split in report.splits
        for ex in tfds.as_numpy(builder.as_dataset(split=split))
    ]
    assert sorted(examples) == sorted(kept_galaxies)
