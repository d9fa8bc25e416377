"""Training under `tf.distribute`: one custom loop for every strategy.

Keras 3.15 `fit` breaks under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so the
trainer owns the loop (`strategy.run`, losses reduced over the global batch) and uses it for
one device, several GPUs, several machines and TPUs alike. `train` sets the run up (run
directory, data, model, optimiser, checkpoint) and hands the steps to `TrainingLoop`, which
calls the `gsfc_tf.hooks` after each: NaN stop, TensorBoard, `history.csv`, progress bar,
validation with best weights, checkpoints.

A run directory holds `config.json`, `checkpoints/` (every `checkpoint_every` steps and at the
end), `best.weights.h5` (best validation score), `logs/` (TensorBoard), `history.csv` (one row
per step), `validation.json` and the final `model.keras`.

A new run refuses a directory that already holds files unless told to overwrite them; a resumed
run continues from the last checkpoint with the saved config, where only `RESUMABLE_CHANGES` may
differ, and drops from `history.csv` the steps it is about to repeat. A damaged newest
checkpoint (cut short, corrupt, its index lost) is refused by name; `from_last_good` resumes from
the newest intact one instead. Everything a run needs (data, model, checkpoint) is checked before
anything is written, so a run that fails to start leaves its directory as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from gsfc_tf import data, evaluation
from gsfc_tf.config import TrainConfig, config_from_dict
from gsfc_tf.detector import Detector
from gsfc_tf.hooks import (
    CsvHistory,
    Hook,
    NonFiniteLossStop,
    PeriodicCheckpointer,
    ProgressBar,
    StepResult,
    TensorBoardLosses,
    Validation,
)
from gsfc_tf.models import FasterRCNN, build_detector

__all__ = [
    "RESUMABLE_CHANGES",
    "RUN_FILES",
    "TrainResult",
    "TrainingLoop",
    "learning_rate_schedule",
    "load_split",
    "make_strategy",
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
# The files of checkpoint `ckpt-N` (`tf.train.CheckpointManager`'s default name): an index and data shards.
_CHECKPOINT_FILE = re.compile(r"ckpt-(\d+)\.(?:index|data-\d+-of-\d+)")


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


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
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


def resumable_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The saved config (`config.json`) of the run in `run_dir`, checked to have a checkpoint.

    Raises:
        FileNotFoundError: `run_dir` has no checkpoint to resume from, or no `config.json`.
    """
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    if not _saved_checkpoints(checkpoint_dir):
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
        ValueError: other keys differ; one line names each with its saved and requested values,
            and says why a run whose learning rate decays keeps its length.
    """
    saved_values, requested_values = _flat_config(saved), _flat_config(requested)
    length_keys = ("steps", "epochs")
    decaying = saved.final_learning_rate_fraction != 1.0
    resumable = tuple(key for key in RESUMABLE_CHANGES if not (decaying and key in length_keys))
    refused = [key for key in saved_values if key not in resumable and saved_values[key] != requested_values[key]]
    if refused:
        changes = ", ".join(
            f"{key} (saved {saved_values[key]!r}, requested {requested_values[key]!r})" for key in refused
        )
        why = (
            f"; the run's length is fixed because its learning rate decays over it (final_learning_rate_fraction "
            f"{saved.final_learning_rate_fraction}), so a new length would change the rate of every later step"
            if any(key in length_keys for key in refused) else ""
        )
        raise ValueError(
            f"--resume cannot change {changes}{why}; only {', '.join(resumable)} may change "
            "when resuming (start a new run in another directory to change the rest)."
        )
    return requested


def _saved_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The checkpoints (`ckpt-N` prefixes) that have any file in `checkpoint_dir`, newest first.

    Found by their files rather than by `tf.train.latest_checkpoint`, which reads the `checkpoint`
    state file and answers None when the newest checkpoint's index is lost, as if no older
    checkpoint were intact.
    """
    matches = (_CHECKPOINT_FILE.fullmatch(path.name) for path in checkpoint_dir.glob("ckpt-*"))
    numbers = {int(match[1]) for match in matches if match}
    return [checkpoint_dir / f"ckpt-{number}" for number in sorted(numbers, reverse=True)]


def _checkpoint_damage(checkpoint: Path) -> str | None:
    """Why `checkpoint` (a `ckpt-N` prefix) cannot be restored, or None when every tensor in it reads back.

    Reading every tensor checks the data shards' lengths and checksums as a restore would, but
    without building the model, so a damaged checkpoint is found before anything else is done.
    """
    index = checkpoint.with_name(f"{checkpoint.name}.index")
    if not index.is_file():
        return f"its index {index.name} is missing"
    try:
        reader = tf.train.load_checkpoint(str(checkpoint))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError) as error:
        # IndexError is TensorFlow's "Read less bytes than requested" of a data shard cut short.
        reason = (str(error).splitlines() or [""])[0]
        return f"unreadable: {type(error).__name__}: {reason}"
    return None


def _checkpoint_to_resume(checkpoint_dir: Path, *, from_last_good: bool) -> tuple[Path, list[Path]]:
    """The checkpoint a resumed run starts from, checked to read back, and the damaged newer ones it skips.

    Raises:
        ValueError: the newest checkpoint is damaged and `from_last_good` is False (one line naming
            it, why, and the newest intact one), or no checkpoint is intact.
    """
    saved = _saved_checkpoints(checkpoint_dir)
    newest, damage = saved[0], _checkpoint_damage(saved[0])
    if damage is None:
        return newest, []
    intact = next((checkpoint for checkpoint in saved[1:] if _checkpoint_damage(checkpoint) is None), None)
    if intact is None:
        raise ValueError(
            f"--resume: checkpoint {newest} is damaged ({damage}) and no older checkpoint in {checkpoint_dir} "
            "is intact; start the run again with --overwrite."
        )
    if not from_last_good:
        raise ValueError(
            f"--resume: checkpoint {newest} is damaged ({damage}); the newest intact one is {intact}: "
            "pass --resume-from-last-good to resume from it (deleting the damaged newer ones), "
            "or start the run again with --overwrite."
        )
    return intact, saved[: saved.index(intact)]


def _drop_damaged_checkpoints(checkpoint_dir: Path, damaged: Sequence[Path], *, resumed: Path) -> None:
    """Deletes the `damaged` checkpoints' files and their entries in the `checkpoint` state file.

    Left there, a damaged checkpoint would again be the newest at the next resume, and the
    checkpoint manager, which reads the state file, would take it for the latest: the final
    checkpoint of a run ending at its step would not be saved.
    """
    for checkpoint in damaged:
        for path in checkpoint_dir.glob(f"{checkpoint.name}.*"):
            path.unlink()
    state = tf.train.get_checkpoint_state(str(checkpoint_dir))
    if state is None:
        return
    dropped = {checkpoint.name for checkpoint in damaged}
    kept = [
        (Path(path).name, timestamp)
        for path, timestamp in zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps)
        if Path(path).name not in dropped
    ]
    # Written as the manager writes it (paths relative to the folder), keeping the timestamps it
    # prunes by; TF's own writer of this file is deprecated in favour of the manager.
    updated = type(state)(
        model_checkpoint_path=resumed.name,
        all_model_checkpoint_paths=[name for name, _ in kept],
        all_model_checkpoint_timestamps=[timestamp for _, timestamp in kept],
        last_preserved_timestamp=state.last_preserved_timestamp,
    )
    (checkpoint_dir / "checkpoint").write_text(text_format.MessageToString(updated))


def _check_new_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Refuses a run directory that holds files unless `overwrite`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} is a file, not a run directory.")
    held = sorted(path.name for path in run_dir.iterdir()) if run_dir.is_dir() else []
    if held and not overwrite:
        resumable = bool(_saved_checkpoints(run_dir / "checkpoints"))
        raise FileExistsError(
            f"{run_dir} is not empty ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}); "
            + ("pass resume=True (--resume) to continue its run, " if resumable else "")
            + "pass overwrite=True (--overwrite) to replace its training files, or choose a new directory."
        )


def _remove_run_files(run_dir: Path) -> None:
    """Removes the `RUN_FILES` of an earlier run from `run_dir`; other files stay."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class TrainingLoop:
    """Runs a run's remaining steps, epoch by epoch, and calls the hooks around them.

    Args:
        run_step: takes an iterator over the current epoch's batches, runs one step on its next
            batch and returns the step's losses (scalars, `loss` among them).
        epoch_batches: `(epoch, skip_batches)` -> epoch `epoch`'s batches (0-based) from batch
            `skip_batches` on; the same batches each time it is called with the same epoch.
        steps_per_epoch: batches in one epoch.
        total_steps: the step the run ends at.
        learning_rate: returns the optimiser's current learning rate.
        hooks: called in this order after each step (see `gsfc_tf.hooks`).
    """

    def __init__(
        self,
        run_step: Callable[[Iterator], dict[str, Any]],
        epoch_batches: Callable[[int, int], Any],
        *,
        steps_per_epoch: int,
        total_steps: int,
        learning_rate: Callable[[], float],
        hooks: Sequence[Hook],
    ):
        self.run_step, self.epoch_batches, self.learning_rate = run_step, epoch_batches, learning_rate
        self.steps_per_epoch, self.total_steps, self.hooks = steps_per_epoch, total_steps, list(hooks)

    def run(self, step: int) -> int:
        """Trains from `step` (the steps already done) to `total_steps`; returns the last step."""
        for hook in self.hooks:
            hook.before_train(step)
        while step < self.total_steps:
            epoch, offset = divmod(step, self.steps_per_epoch)
            batches = iter(self.epoch_batches(epoch, offset))
            for _ in range(min(self.steps_per_epoch - offset, self.total_steps - step)):
                losses = {name: float(value) for name, value in self.run_step(batches).items()}
                step += 1
                result = StepResult(step=step, epoch=epoch + 1, losses=losses, learning_rate=self.learning_rate())
                for hook in self.hooks:
                    hook.after_step(result)
        for hook in self.hooks:
            hook.after_train(step)
        return step


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    resume: bool = False,
    from_last_good: bool = False,
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
) -> TrainResult:
    """Trains the detector of `config` and writes the run directory.

    Two settings are process-wide: Keras's global dtype policy is `config.precision` during the
    run and restored afterwards (also when the run fails); the random seeds stay set
    (`keras.utils.set_random_seed(config.seed)`: Python, NumPy and TensorFlow), since
    TensorFlow's global seed and the op-seed counter behind it cannot be read back to restore.

    Args:
        config: the resolved training config; with `resume`, the run's saved config with any
            `RESUMABLE_CHANGES` (e.g. more `steps`) applied (`resumable_run_config` reads it).
        run_dir: where everything is written; must be empty (or missing) unless `resume` or
            `overwrite`.
        data_dir: TFDS data dir (default: TFDS's).
        manual_dir: the manual dir of the `sdss` config.
        resume: continue from the last checkpoint in `run_dir` (step, optimizer state, data position).
        from_last_good: with `resume`, when the newest checkpoints are damaged, continue from the
            newest intact one and delete the damaged ones.
        overwrite: start a new run in a non-empty `run_dir`, removing the `RUN_FILES` there first.
        strategy: a `tf.distribute` strategy; default `make_strategy(config.strategy)`.
        progress: show a progress bar.

    Every error below but the last is raised before anything is written into `run_dir`.

    Raises:
        FileExistsError: `run_dir` holds files, and neither `resume` nor `overwrite` was given.
        FileNotFoundError: `resume` without a checkpoint or `config.json` in `run_dir`; a
            `data_dir` or `manual_dir` that does not exist.
        ValueError: `resume` with a config that differs from the saved one outside
            `RESUMABLE_CHANGES`, with fewer total steps than the checkpoint has done, or with a
            damaged newest checkpoint and not `from_last_good`; an unknown dataset; too few
            training galaxies.
        FloatingPointError: a loss became NaN or infinite; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run, or replace it.")
    if from_last_good and not resume:
        raise ValueError("from_last_good (--resume-from-last-good) applies only to a resumed run.")
    if resume:
        config = resumed_config(resumable_run_config(run_dir), config)
        checkpoint, damaged = _checkpoint_to_resume(run_dir / "checkpoints", from_last_good=from_last_good)
    strategy = strategy or make_strategy(config.strategy)
    chief = _is_chief(strategy)
    # Other workers of a multi-worker run write only to their own temporary folders.
    if chief and not resume:
        _check_new_run_dir(run_dir, overwrite=overwrite)
    with _global_dtype_policy(config.precision):
        keras.utils.set_random_seed(config.seed)
        inputs = _load_training_data(config, strategy, data_dir=data_dir, manual_dir=manual_dir)
        state = _build_state(config, strategy, inputs.total_steps)
        start = _restore(state, checkpoint, total_steps=inputs.total_steps) if resume else 0
        # Only now, with the data, model and checkpoint known good, is the run directory changed.
        if chief:
            if resume and damaged:
                _drop_damaged_checkpoints(run_dir / "checkpoints", damaged, resumed=checkpoint)
            elif overwrite:
                _remove_run_files(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        steps, metrics = _run_steps(config, inputs, state, run_dir, start=start, chief=chief, progress=progress)
        model_path = run_dir / "model.keras"
        if chief:
            state.model.save(model_path)
    return TrainResult(run_dir=run_dir, steps=steps, model_path=model_path, validation=metrics)


def _restore(state: _TrainingState, checkpoint: Path, *, total_steps: int) -> int:
    """Restores `checkpoint` into `state`; returns its step.

    Raises:
        ValueError: the checkpoint is past `total_steps`.
    """
    state.checkpoint.restore(str(checkpoint)).assert_existing_objects_matched()
    step = int(state.step.numpy())
    if step > total_steps:
        raise ValueError(
            f"--resume: {checkpoint} is at step {step}, past the {total_steps} steps asked for; "
            f"ask for at least {step} steps (--set steps={step} or more)."
        )
    log.info("Resumed from %s at step %d.", checkpoint, step)
    return step


def _run_steps(
    config: TrainConfig,
    inputs: _TrainingData,
    state: _TrainingState,
    run_dir: Path,
    *,
    start: int,
    chief: bool,
    progress: bool,
) -> tuple[int, dict[str, Any] | None]:
    """Runs the steps from `start` (the steps already done) to the end with the run's hooks.

    Returns:
        (the last step, the last validation's metrics or None).
    """
    with _checkpoint_manager(state.checkpoint, run_dir, chief=chief, keep=config.keep_checkpoints) as manager:
        hooks, validation = _hooks(config, inputs, state, manager, run_dir, chief=chief, progress=progress)
        loop = TrainingLoop(
            _distributed_step(config, state, inputs.strategy),
            inputs.epoch_batches,
            steps_per_epoch=inputs.steps_per_epoch,
            total_steps=inputs.total_steps,
            learning_rate=lambda: float(state.adam.learning_rate),
            hooks=hooks,
        )
        steps = loop.run(start)
    return steps, None if validation is None else validation.metrics


@contextlib.contextmanager
def _global_dtype_policy(precision: str) -> Iterator[None]:
    """Makes `precision` Keras's global dtype policy inside the block, and the previous one after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclasses.dataclass(frozen=True)
class _TrainingData:
    """The run's examples and batches, and its length in steps.

    Attributes:
        config: the run's config.
        strategy: the strategy the batches are distributed over.
        examples: the cached uint8 training examples with padded targets (`train_size` of them).
        count: how many `examples` there are.
        validation: batches of `batch_size_per_replica` (uint8 crops, padded targets) to validate
            on; None without a `validation_split`.
    """

    config: TrainConfig
    strategy: tf.distribute.Strategy
    examples: tf.data.Dataset
    count: int
    validation: tf.data.Dataset | None

    @property
    def global_batch(self) -> int:
        return self.config.batch_size_per_replica * self.strategy.num_replicas_in_sync

    @property
    def steps_per_epoch(self) -> int:
        return self.count // self.global_batch

    @property
    def total_steps(self) -> int:
        return self.config.steps or self.config.epochs * self.steps_per_epoch

    @property
    def validate_every(self) -> int:
        return self.config.validate_every or self.steps_per_epoch

    def epoch_batches(self, epoch: int, skip_batches: int) -> tf.distribute.DistributedDataset:
        """Epoch `epoch`'s batches (0-based) from batch `skip_batches` on, split over the replicas.

        Each epoch is shuffled and augmented with its own seed, so a resumed run sees exactly the
        batches the interrupted one would have seen, from the same position.
        """
        dataset = data.batch_examples(
            self.examples,
            batch_size=self.global_batch,
            image_size=self.config.detector.image_size,
            augment=self.config.augment,
            shuffle_buffer=self.count,
            seed=self.config.seed + epoch,
            skip_batches=skip_batches,
        )
        return self.strategy.experimental_distribute_dataset(dataset.with_options(_epoch_options()))


def _epoch_options() -> tf.data.Options:
    """The tf.data options of every epoch's training batches."""
    options = tf.data.Options()
    # Shard by element: a small TFDS split is one file, too few to shard by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning thread: deleting an epoch's iterator, which the loop leaves before its end,
    # waited for it, stalling training for 12-42 s at about one epoch end in three (2 CPU cores,
    # measured; iterators run to their end, as validation's, were deleted at once). Untuned, the
    # parallel maps use every core, and the step rate stayed the same.
    options.autotune.enabled = False
    return options


def _load_training_data(
    config: TrainConfig, strategy: tf.distribute.Strategy, *, data_dir: str | None, manual_dir: str | None
) -> _TrainingData:
    """Loads the training (and validation) split of `config.dataset`.

    Raises:
        ValueError: `train_size` exceeds the training split, or the split makes no global batch.
    """
    examples, count = load_split(config, config.train_split, data_dir=data_dir, manual_dir=manual_dir)
    if config.train_size is not None:
        if config.train_size > count:
            raise ValueError(f"train_size {config.train_size} exceeds the {count} training galaxies.")
        examples, count = examples.take(config.train_size), config.train_size
    validation = None
    if config.validation_split:
        validation, _ = load_split(config, config.validation_split, data_dir=data_dir, manual_dir=manual_dir)
        if config.validation_size is not None:
            validation = validation.take(config.validation_size)
        validation = validation.cache().batch(config.batch_size_per_replica)
    inputs = _TrainingData(config, strategy, examples.cache(), count, validation)
    if inputs.steps_per_epoch == 0:
        raise ValueError(f"{count} training galaxies make no batch of {inputs.global_batch}.")
    return inputs


@dataclasses.dataclass(frozen=True)
class _TrainingState:
    """The model and what a checkpoint saves with it.

    Attributes:
        model: the detector being trained.
        adam: the Adam optimiser, which holds the learning-rate schedule.
        optimizer: what applies the gradients: `adam`, or a `LossScaleOptimizer` around it
            under mixed_float16.
        step: the steps done, as saved in the checkpoint.
        best_score: the best validation score so far (-inf before any).
        checkpoint: all of the above, and the sampler's seed state.
    """

    model: FasterRCNN
    adam: keras.optimizers.Adam
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable
    best_score: tf.Variable
    checkpoint: tf.train.Checkpoint


def _build_state(config: TrainConfig, strategy: tf.distribute.Strategy, total_steps: int) -> _TrainingState:
    """A new model and optimiser under `strategy`, with their checkpoint (nothing restored yet)."""
    with strategy.scope():
        model = build_detector(config.detector)
        adam = keras.optimizers.Adam(learning_rate=learning_rate_schedule(config, total_steps), global_clipnorm=config.clip_norm)
        optimizer = keras.optimizers.LossScaleOptimizer(adam) if config.precision == "mixed_float16" else adam
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_score")
    # The sampler's seed state is a Keras SeedGenerator, which TF's checkpoint tracking does not
    # reach through the model; without it a resumed run would draw different RPN/ROI samples.
    checkpoint = tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        step=step,
        best_score=best_score,
        sampling_seed=model.seed_generator.state,
    )
    return _TrainingState(model, adam, optimizer, step, best_score, checkpoint)


@contextlib.contextmanager
def _checkpoint_manager(
    checkpoint: tf.train.Checkpoint, run_dir: Path, *, chief: bool, keep: int
) -> Iterator[tf.train.CheckpointManager]:
    """The manager of `run_dir/checkpoints`; on other workers, of a temporary folder removed after the block.

    Workers other than the chief save too (saving is collective under
    `MultiWorkerMirroredStrategy`) but must not write into the run directory.
    """
    if chief:
        yield tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=keep)
        return
    folder = tempfile.mkdtemp(prefix="gsfc-worker-")
    try:
        yield tf.train.CheckpointManager(checkpoint, folder, max_to_keep=keep)
    finally:
        tf.io.gfile.rmtree(folder)


def _distributed_step(
    config: TrainConfig, state: _TrainingState, strategy: tf.distribute.Strategy
) -> Callable[[Iterator], dict[str, tf.Tensor]]:
    """One optimiser step on the next global batch of an iterator; returns the losses averaged over replicas."""
    model, optimizer = state.model, state.optimizer

    def replica_step(images, targets):
        losses, gradients = model.losses_and_gradients(
            images,
            targets,
            weight_decay=config.weight_decay,
            num_replicas=strategy.num_replicas_in_sync,
            scale_loss=optimizer.scale_loss,
        )
        optimizer.apply(gradients, model.trainable_variables)
        return losses

    @tf.function
    def distributed_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return distributed_step


def _hooks(
    config: TrainConfig,
    inputs: _TrainingData,
    state: _TrainingState,
    manager: tf.train.CheckpointManager,
    run_dir: Path,
    *,
    chief: bool,
    progress: bool,
) -> tuple[list[Hook], Validation | None]:
    """The run's hooks in the order they act after a step, and the validation hook among them.

    Only the chief logs and saves best weights. The checkpointer comes after validation, so a
    checkpoint saved at a validation step holds that step's best score.

    Returns:
        (hooks, the `Validation` hook or None without a validation split).
    """
    writer = tf.summary.create_file_writer(str(run_dir / "logs")) if chief else tf.summary.create_noop_writer()
    hooks: list[Hook] = [NonFiniteLossStop(manager)]
    if chief:
        hooks += [TensorBoardLosses(writer), CsvHistory(run_dir / "history.csv")]
    if chief and progress:
        hooks.append(ProgressBar(inputs.total_steps))
    validation = None
    if inputs.validation is not None:
        detector = Detector.from_model(state.model)
        validation = Validation(
            lambda: _validation_metrics(detector, inputs.validation),
            every=inputs.validate_every,
            last_step=inputs.total_steps,
            writer=writer,
            best_score=state.best_score,
            save_best=(lambda: state.model.save_weights(str(run_dir / "best.weights.h5"))) if chief else None,
            metrics_path=run_dir / "validation.json" if chief else None,
        )
        hooks.append(validation)
    hooks.append(PeriodicCheckpointer(manager, state.step, every=config.checkpoint_every))
    return hooks, validation


def _validation_metrics(detector: Detector, batches: tf.data.Dataset) -> dict[str, Any]:
    """Scores `detector` on batches of (uint8 crops, padded targets) as `gsfc-tf evaluate` would."""
    truths, predictions = [], []
    for images, targets in batches:
        predictions += detector.detect_boxes(images)
        truths += evaluation.from_padded_batch(targets["boxes_yxyx"].numpy(), targets["labels"].numpy())
    return evaluation.evaluate_detections(truths, predictions)
