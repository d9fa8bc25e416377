"""What happens around each training step: NaN stop, logs, validation and best weights, checkpoints.

`trainer.TrainingLoop` runs the steps and hands each hook a `StepResult` after every step, in
the order the hooks were given; `after_train` follows the last step. A hook that raises stops
the run there, and `after_train` is then not called: a failed run writes no final checkpoint.
Each hook holds only what it acts on (a checkpoint manager, a writer, a file, a scoring
function), so a test drives it with fakes and no model.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf
from tqdm.auto import tqdm

from gsfc_tf import conventions, evaluation

__all__ = [
    "CsvHistory",
    "Hook",
    "NonFiniteLossStop",
    "PeriodicCheckpointer",
    "ProgressBar",
    "StepResult",
    "TensorBoardLosses",
    "Validation",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one training step produced.

    Attributes:
        step: steps done, this one included (the first step is 1).
        epoch: the epoch the step belongs to (the first is 1).
        losses: global-batch means of `models.faster_rcnn.LOSS_NAMES` and `loss`, their sum.
        learning_rate: the optimiser's rate after the step.
    """

    step: int
    epoch: int
    losses: Mapping[str, float]
    learning_rate: float


class Hook:
    """A no-op at every point of the run; subclasses override the points they act at."""

    def before_train(self, step: int) -> None:
        """Called once before the first step; `step` is the number of steps already done (a resumed run's)."""

    def after_step(self, result: StepResult) -> None:
        """Called after every step."""

    def after_train(self, step: int) -> None:
        """Called once after the last step (`step`), only when every step succeeded."""


class NonFiniteLossStop(Hook):
    """Stops the run when a loss is NaN or infinite, naming the last good checkpoint.

    Comes first among the hooks, so that none logs, validates or checkpoints the diverged model.

    Args:
        checkpoints: anything with a `latest_checkpoint` (a `tf.train.CheckpointManager`).
    """

    def __init__(self, checkpoints: tf.train.CheckpointManager):
        self.checkpoints = checkpoints

    def after_step(self, result: StepResult) -> None:
        """Stops the run if a loss of `result` is not finite.

        Raises:
            FloatingPointError: naming the loss, the step and the last good checkpoint.
        """
        if all(math.isfinite(value) for value in result.losses.values()):
            return
        latest = self.checkpoints.latest_checkpoint or "none (no checkpoint was written yet)"
        raise FloatingPointError(
            f"Loss became {result.losses['loss']} at step {result.step}; stopped. The last good checkpoint is {latest}."
        )


class TensorBoardLosses(Hook):
    """Writes every step's losses (`loss/<name>`) and learning rate (`learning_rate`) to TensorBoard."""

    def __init__(self, writer: tf.summary.SummaryWriter):
        self.writer = writer

    def after_step(self, result: StepResult) -> None:
        with self.writer.as_default(step=result.step):
            for name, value in result.losses.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("learning_rate", result.learning_rate)


class CsvHistory(Hook):
    """`history.csv`: one row per step (`step`, each loss, `learning_rate`).

    Rows are appended, so the file survives restarts; a resumed run first drops the rows of the
    steps it is about to repeat.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def before_train(self, step: int) -> None:
        self.drop_after(step)

    def drop_after(self, step: int) -> None:
        """Drops the rows of steps after `step`, which a run resumed from that step repeats.

        A row cut short by a kill (fewer fields than the header) goes too.
        """
        if not self.path.exists():
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

    def after_step(self, result: StepResult) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", *result.losses, "learning_rate"])
            writer.writerow([result.step, *(f"{v:.6g}" for v in result.losses.values()), f"{result.learning_rate:.6g}"])


class ProgressBar(Hook):
    """A tqdm bar over the run's steps that shows the loss and the epoch."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps
        self.bar = None

    def before_train(self, step: int) -> None:
        self.bar = tqdm(total=self.total_steps, initial=step, desc="train", unit="step")

    def after_step(self, result: StepResult) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{result.losses['loss']:.3f}", epoch=result.epoch)

    def after_train(self, step: int) -> None:
        self.bar.close()


class Validation(Hook):
    """Scores the model every `every` steps and at the last step; keeps the best weights.

    Best means the highest `conventions.operating_score` (min(completeness, purity) at the
    operating point). Each validation writes `validation/completeness`, `validation/purity` and
    `validation/operating_threshold` to TensorBoard and logs one line.

    Args:
        evaluate: returns the `evaluation.evaluate_detections` metrics of the model as it is now.
        every: steps between validations.
        last_step: the run's last step, which is always validated.
        writer: the TensorBoard writer (a no-op one on workers other than the chief).
        best_score: the checkpointed best score so far (-inf before any), so that a resumed run
            keeps weights only when they beat every validation before the resume.
        save_best: saves the weights (`best.weights.h5`) when they beat `best_score`; None on
            workers other than the chief, which neither save weights nor update `best_score`.
        metrics_path: where `after_train` writes the last metrics (`validation.json`); None: nowhere.

    Attributes:
        metrics: the last validation's metrics; None before the first.
    """

    def __init__(
        self,
        evaluate: Callable[[], dict[str, Any]],
        *,
        every: int,
        last_step: int,
        writer: tf.summary.SummaryWriter,
        best_score: tf.Variable,
        save_best: Callable[[], None] | None,
        metrics_path: str | os.PathLike | None,
    ):
        self.evaluate, self.every, self.last_step, self.writer = evaluate, every, last_step, writer
        self.best_score, self.save_best = best_score, save_best
        self.metrics_path = None if metrics_path is None else Path(metrics_path)
        self.metrics: dict[str, Any] | None = None

    def after_step(self, result: StepResult) -> None:
        if result.step % self.every and result.step != self.last_step:
            return
        self.metrics = self.evaluate()
        self._report(result.step)
        score = conventions.operating_score(self.metrics)
        if self.save_best is not None and score > float(self.best_score.numpy()):
            self.best_score.assign(score)
            self.save_best()

    def after_train(self, step: int) -> None:
        if self.metrics_path is not None and self.metrics is not None:
            evaluation.write_metrics_json(self.metrics, self.metrics_path)

    def _report(self, step: int) -> None:
        metrics = self.metrics
        if metrics["completeness"] is None:
            log.warning("step %d: the validation split has no clumps; nothing to score.", step)
            return
        threshold = metrics["operating_point"]["threshold"]
        with self.writer.as_default(step=step):
            tf.summary.scalar("validation/completeness", metrics["completeness"])
            tf.summary.scalar("validation/purity", metrics["purity"])
            tf.summary.scalar("validation/operating_threshold", threshold)
        log.info(
            "step %d: validation completeness %.3f, purity %.3f (score >= %.2f)",
            step, metrics["completeness"], metrics["purity"], threshold,
        )


class PeriodicCheckpointer(Hook):
    """Saves a checkpoint every `every` steps, and after the last step unless that one was just saved.

    Runs on every worker: under `MultiWorkerMirroredStrategy` saving is collective, so workers
    other than the chief save too, into a manager that writes to a temporary folder.

    Args:
        manager: writes and prunes the checkpoints.
        step_variable: the checkpointed step counter, set to the step before each save.
        every: steps between checkpoints.
    """

    def __init__(self, manager: tf.train.CheckpointManager, step_variable: tf.Variable, *, every: int):
        self.manager, self.step_variable, self.every = manager, step_variable, every

    def after_step(self, result: StepResult) -> None:
        if result.step % self.every == 0:
            self.save(result.step)

    def after_train(self, step: int) -> None:
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            self.save(step)

    def save(self, step: int) -> None:
        self.step_variable.assign(step)
        self.manager.save(checkpoint_number=step)
