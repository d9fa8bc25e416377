"""Subprocess helpers for the distributed-training tests (one strategy per process).

    python tests/_distributed_worker.py mirrored-equivalence DATA_DIR OUT_JSON
    python tests/_distributed_worker.py multi-worker DATA_DIR RUN_DIR   (TF_CONFIG set by the caller)
"""

import json
import sys

import tensorflow as tf


def _config(extra=()):
    from gsfc_tf import config

    # Every anchor and every proposal is sampled (positive_fraction 1), so the losses do not
    # depend on which replica drew which random numbers; frozen BN (trainable_backbone_layers=0)
    # keeps per-replica batch statistics out of the comparison.
    return config.override(
        config.smoke_training(),
        [
            "detector.image_size=64",
            "detector.trainable_backbone_layers=0",
            "detector.rpn_samples_per_image=680",
            "detector.rpn_positive_fraction=1.0",
            "detector.rpn_post_nms_top_k_train=40",
            "detector.rpn_post_nms_top_k_test=40",
            "detector.rpn_pre_nms_top_k_train=80",
            "detector.roi_samples_per_image=56",
            "detector.roi_positive_fraction=1.0",
            "augment=false",
            *extra,
        ],
    )


def mirrored_equivalence(data_dir, out_json):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from gsfc_tf import data, trainer
    from gsfc_tf.models import build_detector

    config = _config()
    keras.utils.set_random_seed(config.seed)  # the same initial weights every run
    examples, _ = trainer.load_split(config, "train", data_dir=data_dir)
    four = data.batch_examples(examples.take(4), batch_size=4, image_size=config.detector.image_size)
    batch = next(iter(four))

    single = build_detector(config.detector)
    # Each replica normalises its losses by its own sampled count (as torchvision under DDP), so
    # the reference is the mean of one device's losses and gradients on each replica's half.
    halves = [
        single.losses_and_gradients(
            batch[0][half], {k: v[half] for k, v in batch[1].items()}, weight_decay=config.weight_decay, num_replicas=2
        )
        for half in (slice(0, 2), slice(2, 4))
    ]
    losses_1 = {k: (halves[0][0][k] + halves[1][0][k]) / 2 for k in halves[0][0]}
    gradients_1 = [a + b for a, b in zip(halves[0][1], halves[1][1])]
    strategy = trainer.make_strategy("mirrored")
    with strategy.scope():
        mirrored = build_detector(config.detector)
        mirrored.set_weights(single.get_weights())
    distributed = strategy.experimental_distribute_dataset(four)

    @tf.function
    def step(inputs):
        losses, gradients = strategy.run(
            lambda images, targets: mirrored.losses_and_gradients(
                images, targets, weight_decay=config.weight_decay, num_replicas=2
            ),
            args=inputs,
        )
        mean = {k: strategy.reduce("MEAN", v, axis=None) for k, v in losses.items()}
        return mean, [strategy.reduce("SUM", g, axis=None) for g in gradients]

    losses_2, gradients_2 = step(next(iter(distributed)))
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "losses_1": {k: float(v) for k, v in losses_1.items()},
        "losses_2": {k: float(v) for k, v in losses_2.items()},
        "relative_gradient_error": float(
            tf.linalg.global_norm([a - b for a, b in zip(gradients_1, gradients_2)]) / tf.linalg.global_norm(gradients_1)
        ),
        "gradient_norm": float(tf.linalg.global_norm(gradients_1)),
    }
    with open(out_json, "w") as f:
        json.dump(result, f)


def multi_worker(data_dir, run_dir):
    from gsfc_tf import trainer

    config = _config(["steps=3", "checkpoint_every=2", "train_size=32", "validation_size=8", "batch_size_per_replica=2"])
    result = trainer.train(config, run_dir, data_dir=data_dir, strategy=trainer.make_strategy("multi_worker"), progress=False)
    print(json.dumps({"steps": result.steps}))


if __name__ == "__main__":
    {"mirrored-equivalence": mirrored_equivalence, "multi-worker": multi_worker}[sys.argv[1]](*sys.argv[2:])
