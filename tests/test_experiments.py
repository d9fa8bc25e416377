"""The training-set-size experiment: one run per size, a table and a plot, resumable."""

import csv
import json

from gsfc_tf import cli


def test_train_size_experiment_writes_table_and_plot(tmp_path, synthetic_small_data_dir):
    out = tmp_path / "experiment"
    arguments = [
        "experiment", "train-size", "--sizes", "16,8", "--split", "test[:8]", "--data-dir", synthetic_small_data_dir,
        "--out", str(out), "--set", "steps=2", "--set", "validation_size=8", "--set", "batch_size_per_replica=4",
    ]
    assert cli.main(arguments) == 0
    with open(out / "train_size.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["train_size"]) for r in rows] == [8, 16]
    for row in rows:
        assert 0.0 <= float(row["completeness"]) <= 1.0 and 0.0 <= float(row["purity"]) <= 1.0
        # A centre match accepts every IoU-0.5 match of these small boxes and more.
        assert float(row["centre_completeness"]) >= float(row["completeness"])
        assert json.loads((tmp_path / "experiment" / f"size_{row['train_size']}" / "config.json").read_text())[
            "train_size"
        ] == int(row["train_size"])
    assert (out / "train_size.png").stat().st_size > 10_000
    assert json.loads((out / "train_size.json").read_text())[0]["train_size"] == 8

    # A finished size is not trained again: the rerun leaves its checkpoints untouched.
    checkpoint = out / "size_8" / "checkpoints" / "checkpoint"
    before = checkpoint.stat().st_mtime_ns
    assert cli.main(arguments) == 0
    assert checkpoint.stat().st_mtime_ns == before
