"""The smoke preset learns to find synthetic clumps on CPU: real detection skill, not only shapes."""

import keras
import numpy as np

from gsfc_tf import config, evaluation, trainer


def _random_boxes(predictions, sides, size, rng):
    """As many boxes per image as predicted, placed at random, with sides drawn from the truths."""
    baseline = []
    for predicted in predictions:
        side = rng.choice(sides, len(predicted))[:, None]
        corner = rng.uniform(0, size - side, (len(predicted), 2))
        baseline.append(evaluation.ImageBoxes(np.concatenate([corner, corner + side], 1), predicted.labels, predicted.scores))
    return baseline


def test_smoke_preset_finds_held_out_clumps(tmp_path, synthetic_small_data_dir):
    smoke = config.smoke_training()
    result = trainer.train(smoke, tmp_path / "run", data_dir=synthetic_small_data_dir, progress=False)
    assert result.validation["completeness"] > 0.3

    # Held-out galaxies the run never saw, scored at the threshold chosen on validation.
    test_split, _ = trainer.load_split(smoke, "test", data_dir=synthetic_small_data_dir)
    model = keras.saving.load_model(result.model_path)
    batches = trainer.validation_batches(test_split, image_size=smoke.detector.image_size, batch_size=16)
    truths, predictions = trainer.collect_detections(model, batches)
    threshold = result.validation["operating_point"]["threshold"]
    kept = [p.select(p.scores >= threshold) for p in predictions]
    metrics = evaluation.evaluate_detections(truths, kept)
    curves = metrics["curves"]
    completeness, purity = curves["completeness"][0], curves["purity"][0]

    sides = np.concatenate([t.boxes_yxyx[:, 2] - t.boxes_yxyx[:, 0] for t in truths])
    rng = np.random.default_rng(0)
    baseline = evaluation.evaluate_detections(truths, _random_boxes(kept, sides, smoke.detector.image_size, rng))
    baseline_completeness = baseline["curves"]["completeness"][0]

    assert completeness >= 0.5, (completeness, purity)
    assert purity >= 0.4, (completeness, purity)
    assert completeness > baseline_completeness + 0.35, (completeness, baseline_completeness)
