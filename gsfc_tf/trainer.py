"""Training under `tf.distribute`: one custom loop for every strategy.

Keras 3.15 `fit` breaks under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so the
trainer owns the loop (`strategy.run`, losses reduced over the global batch) and uses it for
one device, several GPUs, several machines and TPUs alike.

A run directory holds `config.json`, `checkpoints/` (every `checkpoint_every` steps and at the
end), `best.weights.h5` (best validation score), `logs/` (TensorBoard), `history.csv` (one row
per step), `validation.json` and the final `model.keras`.

A new run refuses a directory that already holds files unless told to overwrite them; a resumed
run continues from the last checkpoint with the saved config, where only `RESUMABLE_CHANGES` may
differ, and drops from `history.csv` the steps it is about to repeat.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from gsfc_tf import data, evaluation, inference
from gsfc_tf.config import TrainConfig, config_from_dict
from gsfc_tf.models import build_detector
from gsfc_tf.models.faster_rcnn import LOSS_NAMES

__all__ = [
    "RESUMABLE_CHANGES",
    "RUN_FILES",
    "TrainResult",
    "load_split",
    "make_strategy",
    "replica_losses_and_gradients",
    "resumable_run_config",
    "resumed_config",
    "train",
]

log = logging.getLogger(__name__)

# Config keys a resumed run may change: how long it trains (a total below the checkpoint's step is
# refused when the run starts) and when it validates, checkpoints and prunes checkpoints. None of
# them changes what a step computes (except the length of a decaying learning-rate schedule, so a
# run with `final_learning_rate_fraction` < 1 keeps its length), so the resumed run is the run
# that was asked for. Anything
# else (model, data, optimiser, seed, precision, strategy and so the global batch) would silently
# make the steps before and after the resume belong to different runs.
RESUMABLE_CHANGES = ("steps", "epochs", "validate_every", "checkpoint_every", "keep_checkpoints")
# What `train` writes into a run directory; `overwrite=True` removes exactly these first.
RUN_FILES = ("config.json", "checkpoints", "best.weights.h5", "logs", "history.csv", "validation.json", "model.keras")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    steps: int
    model_path: Path
    validation: dict[str, Any] | None


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the `tf.distribute` strategy called `name`.

    `auto` picks a TPU if one is attached, several workers if `TF_CONFIG` names them, all local
    GPUs if there are several, else the default one-device strategy.
    """
    if name == "auto":
        if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
            name = "tpu"
        elif len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or None
        if devices is None and len(tf.config.list_logical_devices("CPU")) > 1:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose auto, default, one_device, mirrored, multi_worker or tpu.")


def load_split(
    config: TrainConfig, split: str, *, data_dir: str | None = None, manual_dir: str | None = None
) -> tuple[tf.data.Dataset, int]:
    """Prepares `config.dataset` if needed; returns (uint8 examples with padded targets, count).

    Examples keep the dataset's image size; `data.batch_examples` resizes them to the model's.
    """
    dataset = data.load_tfds_split(config.dataset, split, data_dir=data_dir, manual_dir=manual_dir)
    count = int(dataset.cardinality())
    return data.tfds_examples(dataset, max_clumps=config.detector.max_clumps), count


def _learning_rate(config: TrainConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to `learning_rate`, then a cosine decay to `final_learning_rate_fraction` of it."""
    # alpha=1 never decays: the constant schedule of the authors' setup.
    warmup_steps = max(config.warmup_steps, 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate * 1e-3,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=config.final_learning_rate_fraction,
        warmup_target=config.learning_rate,
        warmup_steps=warmup_steps,
    )


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


class _History:
    """Appends one CSV row per step; survives restarts by appending."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def drop_after(self, step: int) -> None:
        """Drops the rows of steps after `step`, which a run resumed from that step repeats.

        A row cut short by a kill (fewer fields than the header) goes too.
        """
        if not self.enabled or not self.path.exists():
            return
        with self.path.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        kept = [row for row in rows if len(row) == len(header) and int(row[0]) <= step]
        if len(kept) == len(rows):
            return
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(partial, self.path)

    def write(self, step: int, losses: dict[str, float], learning_rate: float) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", *losses, "learning_rate"])
            writer.writerow([step, *(f"{v:.6g}" for v in losses.values()), f"{learning_rate:.6g}"])


def replica_losses_and_gradients(
    model: keras.Model,
    images: tf.Tensor,
    targets: dict[str, tf.Tensor],
    *,
    weight_decay: float,
    num_replicas: int,
    scale_loss=None,
) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
    """One replica's losses and its share of the global-batch gradient.

    The model's losses are means over the replica's images; with equal per-replica batches,
    dividing by the replica count makes the all-reduced (summed) gradient the gradient of the
    global-batch mean. The coupled L2 term (`weight_decay * w` in the gradient) is what
    torch.optim.Adam(weight_decay=...) does in the authors' setup.

    Returns:
        (losses: `LOSS_NAMES` plus `loss`, their sum, without L2; gradients in
        `model.trainable_variables` order).
    """
    with tf.GradientTape() as tape:
        losses = model.compute_losses(images, targets, training=True)
        total = tf.add_n([losses[name] for name in LOSS_NAMES])
        l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in model.trainable_variables])
        objective = (total + 0.5 * weight_decay * l2) / num_replicas
        if scale_loss is not None:
            objective = scale_loss(objective)
    return {**losses, "loss": total}, tape.gradient(objective, model.trainable_variables)


def resumable_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The saved config (`config.json`) of the run in `run_dir`, checked to have a checkpoint.

    Raises:
        FileNotFoundError: `run_dir` has no checkpoint to resume from, or no `config.json`.
    """
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    if tf.train.latest_checkpoint(str(checkpoint_dir)) is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}.")
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise FileNotFoundError(f"--resume: {saved} is missing; without it the run's config is unknown.")
    return config_from_dict(json.loads(saved.read_text()))


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    """`override`-style keys (`learning_rate`, `detector.image_size`) and their values."""
    values = dataclasses.asdict(config)
    detector = values.pop("detector")
    return {**values, **{f"detector.{key}": value for key, value in detector.items()}}


def resumed_config(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """`requested`, after checking it differs from the run's `saved` config only in `RESUMABLE_CHANGES`.

    Raises:
        ValueError: other keys differ; one line names each with its saved and requested values.
    """
    saved_values, requested_values = _flat_config(saved), _flat_config(requested)
    resumable = RESUMABLE_CHANGES
    if saved.final_learning_rate_fraction != 1.0:
        # The cosine decay spans the run's length: a new length would change every later step's rate.
        resumable = tuple(key for key in RESUMABLE_CHANGES if key not in ("steps", "epochs"))
    refused = [
        f"{key} (saved {saved_values[key]!r}, requested {requested_values[key]!r})"
        for key in saved_values
        if key not in resumable and saved_values[key] != requested_values[key]
    ]
    if refused:
        raise ValueError(
            f"--resume cannot change {', '.join(refused)}; only {', '.join(resumable)} may change "
            "when resuming (start a new run in another directory to change the rest)."
        )
    return requested


def _prepare_new_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Refuses a run directory that holds files unless `overwrite`; then removes the old run's files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} is a file, not a run directory.")
    held = sorted(path.name for path in run_dir.iterdir()) if run_dir.is_dir() else []
    if not held:
        return
    if not overwrite:
        resumable = tf.train.latest_checkpoint(str(run_dir / "checkpoints")) is not None
        raise FileExistsError(
            f"{run_dir} is not empty ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}); "
            + ("pass resume=True (--resume) to continue its run, " if resumable else "")
            + "pass overwrite=True (--overwrite) to replace its training files, or choose a new directory."
        )
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
) -> TrainResult:
    """Trains the detector of `config` and writes the run directory.

    Args:
        config: the resolved training config; with `resume`, the run's saved config with any
            `RESUMABLE_CHANGES` (e.g. more `steps`) applied (`resumable_run_config` reads it).
        run_dir: where everything is written; must be empty (or missing) unless `resume` or
            `overwrite`.
        data_dir: TFDS data dir (default: TFDS's).
        manual_dir: the manual dir of the `sdss` config.
        resume: continue from the last checkpoint in `run_dir` (step, optimizer state, data position).
        overwrite: start a new run in a non-empty `run_dir`, removing the `RUN_FILES` there first.
        strategy: a `tf.distribute` strategy; default `make_strategy(config.strategy)`.
        progress: show a progress bar.

    Raises:
        FileExistsError: `run_dir` holds files, and neither `resume` nor `overwrite` was given.
        FileNotFoundError: `resume` without a checkpoint or `config.json` in `run_dir`.
        ValueError: `resume` with a config that differs from the saved one outside
            `RESUMABLE_CHANGES`, or with fewer total steps than the checkpoint has done.
        FloatingPointError: a loss became NaN or infinite; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run, or replace it.")
    if resume:
        config = resumed_config(resumable_run_config(run_dir), config)
    strategy = strategy or make_strategy(config.strategy)
    chief = _is_chief(strategy)
    # Other workers of a multi-worker run write only to their own temporary folders.
    if chief and not resume:
        _prepare_new_run_dir(run_dir, overwrite=overwrite)
    if config.precision != "float32":
        keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    train_examples, num_train = load_split(config, config.train_split, data_dir=data_dir, manual_dir=manual_dir)
    if config.train_size is not None:
        if config.train_size > num_train:
            raise ValueError(f"train_size {config.train_size} exceeds the {num_train} training galaxies.")
        train_examples, num_train = train_examples.take(config.train_size), config.train_size
    global_batch = config.batch_size_per_replica * strategy.num_replicas_in_sync
    steps_per_epoch = num_train // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train} training galaxies make no batch of {global_batch}.")
    total_steps = config.steps or config.epochs * steps_per_epoch
    validate_every = config.validate_every or steps_per_epoch
    train_examples = train_examples.cache()
    validation = None
    if config.validation_split:
        validation_examples, _ = load_split(config, config.validation_split, data_dir=data_dir, manual_dir=manual_dir)
        if config.validation_size is not None:
            validation_examples = validation_examples.take(config.validation_size)
        validation = validation_examples.cache().batch(config.batch_size_per_replica)

    with strategy.scope():
        model = build_detector(config.detector)
        inner = keras.optimizers.Adam(learning_rate=_learning_rate(config, total_steps), global_clipnorm=config.clip_norm)
        optimizer = keras.optimizers.LossScaleOptimizer(inner) if config.precision == "mixed_float16" else inner
        optimizer.build(model.trainable_variables)
        step_variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_score")
    # The sampler's seed state is a Keras SeedGenerator, which TF's checkpoint tracking does not
    # reach through the model; without it a resumed run would draw different RPN/ROI samples.
    checkpoint = tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        step=step_variable,
        best_score=best_score,
        sampling_seed=model.seed_generator.state,
    )
    write_dir = checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="gsfc-worker-"))
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=config.keep_checkpoints)
    if resume:
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        checkpoint.restore(latest).assert_existing_objects_matched()
        log.info("Resumed from %s at step %d.", latest, int(step_variable.numpy()))
    step = int(step_variable.numpy())
    if step > total_steps:
        raise ValueError(f"--resume: {run_dir} is at step {step}, past the {total_steps} steps asked for.")

    def save_checkpoint() -> None:
        step_variable.assign(step)
        manager.save(checkpoint_number=step)

    def epoch_batches(epoch: int, skip_batches: int) -> tf.data.Dataset:
        # Each epoch is shuffled with its own seed, so a resumed run sees exactly the batches
        # the interrupted one would have seen, from the same position.
        dataset = data.batch_examples(
            train_examples,
            batch_size=global_batch,
            image_size=config.detector.image_size,
            augment=config.augment,
            shuffle_buffer=num_train,
            seed=config.seed + epoch,
            skip_batches=skip_batches,
        )
        # Shard by element: a small TFDS split is one file, too few to shard by file.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return strategy.experimental_distribute_dataset(dataset.with_options(options))

    scale_loss = optimizer.scale_loss if config.precision == "mixed_float16" else None

    def replica_step(images, targets):
        losses, gradients = replica_losses_and_gradients(
            model,
            images,
            targets,
            weight_decay=config.weight_decay,
            num_replicas=strategy.num_replicas_in_sync,
            scale_loss=scale_loss,
        )
        optimizer.apply(gradients, model.trainable_variables)
        return losses

    @tf.function
    def distributed_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    detector = inference.Detector.from_model(model)
    writer = tf.summary.create_file_writer(str(run_dir / "logs")) if chief else tf.summary.create_noop_writer()
    history = _History(run_dir / "history.csv", enabled=chief)
    history.drop_after(step)
    validation_result = None
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not (progress and chief))
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        iterator = iter(epoch_batches(epoch, offset))
        for _ in range(min(steps_per_epoch - offset, total_steps - step)):
            losses = {k: float(v) for k, v in distributed_step(iterator).items()}
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(
                    f"Loss became {losses['loss']} at step {step + 1}; stopped. The last good checkpoint "
                    f"is {manager.latest_checkpoint or 'none (no checkpoint was written yet)'}."
                )
            step += 1
            learning_rate = float(inner.learning_rate)
            with writer.as_default(step=step):
                for name, value in losses.items():
                    tf.summary.scalar(f"loss/{name}", value)
                tf.summary.scalar("learning_rate", learning_rate)
            history.write(step, losses, learning_rate)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", epoch=epoch + 1)
            if step % config.checkpoint_every == 0:
                save_checkpoint()
            if validation is not None and (step % validate_every == 0 or step == total_steps):
                validation_result = _validate(detector, validation, writer, step)
                score = _validation_score(validation_result)
                if chief and score > float(best_score.numpy()):
                    best_score.assign(score)
                    model.save_weights(str(run_dir / "best.weights.h5"))
    bar.close()
    if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{step}"):
        save_checkpoint()
    model_path = run_dir / "model.keras"
    if chief:
        model.save(model_path)
        if validation_result is not None:
            evaluation.write_metrics_json(validation_result, run_dir / "validation.json")
    else:
        tf.io.gfile.rmtree(str(write_dir))
    return TrainResult(run_dir=run_dir, steps=step, model_path=model_path, validation=validation_result)


def _validation_score(metrics: dict[str, Any]) -> float:
    """min(completeness, purity) at the operating point; -inf when the split has no clumps."""
    if metrics["completeness"] is None:
        return float("-inf")
    return min(metrics["completeness"], metrics["purity"])


def _validate(detector, validation: tf.data.Dataset, writer, step: int) -> dict[str, Any]:
    """Scores the detector on batches of (uint8 crops, padded targets) as `gsfc-tf evaluate` would."""
    truths, predictions = [], []
    for images, targets in validation:
        predictions += detector.detect_boxes(images)
        truths += evaluation.from_padded_batch(targets["boxes_yxyx"].numpy(), targets["labels"].numpy())
    metrics = evaluation.evaluate_detections(truths, predictions)
    if metrics["completeness"] is None:
        log.warning("step %d: the validation split has no clumps; nothing to score.", step)
        return metrics
    with writer.as_default(step=step):
        tf.summary.scalar("validation/completeness", metrics["completeness"])
        tf.summary.scalar("validation/purity", metrics["purity"])
        tf.summary.scalar("validation/operating_threshold", metrics["operating_point"]["threshold"])
    log.info(
        "step %d: validation completeness %.3f, purity %.3f (score >= %.2f)",
        step, metrics["completeness"], metrics["purity"], metrics["operating_point"]["threshold"],
    )
    return metrics
