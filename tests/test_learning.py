"""The smoke preset learns to find synthetic clumps on CPU: real detection skill, not only shapes."""

import keras
import numpy as np

from gsfc_tf import config, data, evaluation, trainer
from gsfc_tf.detector import Detector, validation_threshold
from gsfc_tf.split_evaluation import evaluate_examples


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
    detector = Detector.from_model(keras.saving.load_model(result.model_path), run_dir=result.run_dir)
    threshold = validation_threshold(detector)
    test_split = data.load_tfds_split(smoke.dataset, "test", data_dir=synthetic_small_data_dir)
    scored = evaluate_examples(detector, test_split, fixed_threshold=threshold, progress=False)
    completeness = scored.metrics["fixed_threshold"]["completeness"]
    purity = scored.metrics["fixed_threshold"]["purity"]

    kept = [p.select(p.scores >= threshold) for p in scored.predictions]
    sides = np.concatenate([t.boxes_yxyx[:, 2] - t.boxes_yxyx[:, 0] for t in scored.truths])
    crop_size = scored.images[0].shape[0]
    baseline = _random_boxes(kept, sides, crop_size, np.random.default_rng(0))
    baseline_completeness = evaluation.evaluate_detections(scored.truths, baseline)["curves"]["completeness"][0]

    assert completeness >= 0.5, (completeness, purity)
    assert purity >= 0.4, (completeness, purity)
    assert completeness > baseline_completeness + 0.35, (completeness, baseline_completeness)
