"""`make demo` runs the whole chain: data → train → evaluate → export (here with a tiny budget)."""

import json

import tensorflow as tf

from gsfc_tf import cli


def test_demo_chain_writes_every_artefact(tmp_path, synthetic_small_data_dir, capsys):
    out = tmp_path / "demo"
    arguments = ["demo", "--out", str(out), "--data-dir", synthetic_small_data_dir,
                 "--set", "steps=2", "--set", "validation_size=8"]
    assert cli.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "test completeness" in printed and "purity" in printed
    assert (out / "galaxies.png").stat().st_size > 10_000
    assert (out / "run" / "model.keras").exists()
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"completeness", "purity", "coco", "fixed_threshold"} <= set(metrics)
    for plot in ("completeness_purity", "detections", "completeness_by_size"):
        assert (out / "evaluation" / f"{plot}.png").exists()
    loaded = tf.saved_model.load(str(out / "export" / "gsfc_tf" / "1"))
    assert {"serving_default", "serving_tensor"} <= set(loaded.signatures)
