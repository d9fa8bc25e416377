"""`make demo` runs the whole chain: data → train → evaluate → export (here with a tiny budget)."""

import json

import pytest
import tensorflow as tf

from astropy.table import Table

from gsfc_tf import cli
from gsfc_tf.commands.demo import DEMO_CUTOUTS
from gsfc_tf.detector import read_metadata


def test_demo_chain_writes_every_artefact(tmp_path, monkeypatch, capsys):
    # As `make demo` runs it on a fresh clone: default --out, no data dir yet (only the budget is cut).
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--set", "steps=2", "--set", "validation_size=8"]) == 0
    out = tmp_path / "out" / "demo"
    assert (out / "tensorflow_datasets" / "clump_scout" / "synthetic_small").is_dir()
    printed = capsys.readouterr().out
    assert "test completeness" in printed and "purity" in printed
    assert (out / "galaxies.png").stat().st_size > 10_000
    assert (out / "run" / "model.keras").exists()
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"completeness", "purity", "coco", "fixed_threshold"} <= set(metrics)
    for plot in ("completeness_purity", "detections", "completeness_by_size"):
        assert (out / "evaluation" / f"{plot}.png").exists()
    # The second evaluation, under TTA, at the threshold TTA's own scores reach on validation.
    assert "With dihedral test-time augmentation" in printed
    tta_metrics = json.loads((out / "evaluation_tta" / "metrics.json").read_text())
    assert printed.count("test completeness") == 2
    assert f"at score >= {tta_metrics['fixed_threshold']['threshold']:.2f}" in printed
    loaded = tf.saved_model.load(str(out / "export" / "gsfc_tf" / "1"))
    assert {"serving_default", "serving_tensor"} <= set(loaded.signatures)
    # The export carries the validation threshold the demo scored at, for predict/survey on it.
    recorded = read_metadata(out / "export" / "gsfc_tf" / "1")["operating_threshold"]
    assert recorded == pytest.approx(metrics["fixed_threshold"]["threshold"])
    # Step 5: a catalogue of synthetic FITS cutouts with the science columns, beside their truth.
    clumps = Table.read(out / "catalogue" / "clumps.csv", format="ascii.csv")
    assert {"off_host", "flux_u", "flux_ratio_u", "is_clump_8pct", "distance_re"} <= set(clumps.colnames)
    images = Table.read(out / "catalogue" / "clumps.images.csv", format="ascii.csv")
    assert len(images) == DEMO_CUTOUTS and "host_half_light_radius" in images.colnames
    assert (out / "catalogue" / "truth.ecsv").exists() and "[5/5] Cataloguing" in printed
    # The story ends with the headline: completeness and purity on the test split, without and with TTA.
    headline = printed.splitlines()[-1]
    assert headline.startswith("Done: on held-out test galaxies the detector finds")
    for scored in (metrics, tta_metrics):
        fixed = scored["fixed_threshold"]
        assert f"{fixed['completeness']:.1%}" in headline and f"{fixed['purity']:.1%}" in headline
