"""The smoke detector learns to find synthetic clumps on CPU (not just shapes)."""

import keras
import numpy as np
import pytest

from gsfc_tf.config import smoke
from gsfc_tf.models import build_detector
from tfds_clumpscout.clump_scout.synthetic import generate_galaxies

NUM_TRAIN, NUM_TEST, EPOCHS = 160, 24, 40


def _arrays(galaxies, max_clumps):
    images = np.stack([g.image for g in galaxies]).astype(np.float32) / 255.0
    boxes = -np.ones((len(galaxies), max_clumps, 4), np.float32)
    labels = -np.ones((len(galaxies), max_clumps), np.int32)
    for i, g in enumerate(galaxies):
        boxes[i, : len(g.labels)] = g.boxes_yxyx
        labels[i, : len(g.labels)] = g.labels
    return images, {"boxes_yxyx": boxes, "labels": labels}


def _completeness(truth_boxes, predicted_boxes, iou_threshold=0.5):
    """Fraction of true boxes greedily matched (one-to-one, IoU >= threshold) by the predictions."""
    found = total = 0
    for truth, predicted in zip(truth_boxes, predicted_boxes):
        total += len(truth)
        if not len(truth) or not len(predicted):
            continue
        lo = np.maximum(truth[:, None, :2], predicted[None, :, :2])
        hi = np.minimum(truth[:, None, 2:], predicted[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = lambda b: np.prod(b[:, 2:] - b[:, :2], axis=-1)  # noqa: E731
        iou = inter / (area(truth)[:, None] + area(predicted)[None] - inter)
        used = set()
        for t in range(len(truth)):
            for p in np.argsort(-iou[t]):
                if iou[t, p] < iou_threshold:
                    break
                if p not in used:
                    used.add(p)
                    found += 1
                    break
    return found / total


# About 4 min on 2 shared CPU cores; measured completeness 0.43 at IoU 0.5 (score >= 0.5) after
# 40 epochs at S=128, where clumps are only 3-31 px.
@pytest.mark.slow
def test_smoke_detector_finds_held_out_clumps():
    keras.utils.set_random_seed(0)
    config = smoke()
    size = config.image_size
    train = list(generate_galaxies(NUM_TRAIN, seed=1, image_size=size))
    test = list(generate_galaxies(NUM_TEST, seed=10_000, image_size=size))
    model = build_detector(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    images, targets = _arrays(train, config.max_clumps)
    history = model.fit(images, targets, batch_size=8, epochs=EPOCHS, verbose=0)
    assert history.history["rpn_objectness"][-1] < 0.2 * history.history["rpn_objectness"][0]

    predictions = model.predict(_arrays(test, config.max_clumps)[0], verbose=0)
    keep = [predictions["scores"][i, : predictions["num_detections"][i]] >= 0.5 for i in range(NUM_TEST)]
    predicted = [predictions["boxes"][i, : len(k)][k] for i, k in enumerate(keep)]
    truths = [g.boxes_yxyx for g in test]
    completeness = _completeness(truths, predicted)

    # Baseline: as many random boxes per image, with sides drawn from the training boxes.
    rng = np.random.default_rng(0)
    sides = np.concatenate([g.boxes_yxyx[:, 2] - g.boxes_yxyx[:, 0] for g in train])
    random_boxes = []
    for boxes in predicted:
        side = rng.choice(sides, len(boxes))[:, None]
        corner = rng.uniform(0, size - side, (len(boxes), 2))
        random_boxes.append(np.concatenate([corner, corner + side], axis=1))
    baseline = _completeness(truths, random_boxes)

    num_predicted = sum(len(p) for p in predicted)
    num_true = sum(len(t) for t in truths)
    assert num_predicted <= 3 * num_true, f"{num_predicted} detections for {num_true} clumps is not a detector"
    assert completeness >= 0.3, f"completeness {completeness:.2f} (random baseline {baseline:.2f})"
    assert completeness >= baseline + 0.2, f"completeness {completeness:.2f} vs random baseline {baseline:.2f}"
