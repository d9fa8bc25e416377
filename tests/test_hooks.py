"""Each training hook alone, driven by fakes: no model, no data, no training run."""

import json
import logging
import math

import pytest
import tensorflow as tf

from gsfc_tf.hooks import (
    CsvHistory,
    NonFiniteLossStop,
    PeriodicCheckpointer,
    ProgressBar,
    StepResult,
    TensorBoardLosses,
    Validation,
)


def _result(step, loss=0.5, epoch=1, learning_rate=1e-3):
    return StepResult(step=step, epoch=epoch, losses={"rpn_box": loss / 2, "loss": loss}, learning_rate=learning_rate)


class _FakeManager:
    """A CheckpointManager that records the step variable's value at each save."""

    def __init__(self, step_variable=None, latest=None):
        self.step_variable, self.latest_checkpoint, self.saved = step_variable, latest, []

    def save(self, checkpoint_number):
        self.saved.append((checkpoint_number, int(self.step_variable.numpy())))
        self.latest_checkpoint = f"run/checkpoints/ckpt-{checkpoint_number}"


def _metrics(completeness, purity=None, threshold=0.4):
    if completeness is None:
        return {"completeness": None, "purity": None, "operating_point": {"threshold": None}}
    return {"completeness": completeness, "purity": purity, "operating_point": {"threshold": threshold}}


def test_non_finite_loss_stops_naming_the_step_and_the_last_good_checkpoint():
    stop = NonFiniteLossStop(_FakeManager(latest="run/checkpoints/ckpt-4"))
    stop.after_step(_result(4))
    with pytest.raises(FloatingPointError, match=r"^Loss became nan at step 5; stopped\. The last good checkpoint is run/checkpoints/ckpt-4\.$"):
        stop.after_step(_result(5, loss=math.nan))
    with pytest.raises(FloatingPointError, match="Loss became 0.5 at step 1.*is none \\(no checkpoint was written yet\\)"):
        NonFiniteLossStop(_FakeManager()).after_step(
            StepResult(step=1, epoch=1, losses={"rpn_box": math.inf, "loss": 0.5}, learning_rate=1e-3)
        )


def test_tensorboard_losses_writes_every_loss_and_the_learning_rate_at_each_step(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    hook = TensorBoardLosses(writer)
    hook.after_step(_result(1, loss=0.5, learning_rate=1e-3))
    hook.after_step(_result(2, loss=0.25, learning_rate=2e-3))
    writer.flush()
    written = {
        (value.tag, event.step): float(tf.make_ndarray(value.tensor))
        for path in tmp_path.glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert written == pytest.approx(
        {
            ("loss/rpn_box", 1): 0.25, ("loss/loss", 1): 0.5, ("learning_rate", 1): 1e-3,
            ("loss/rpn_box", 2): 0.125, ("loss/loss", 2): 0.25, ("learning_rate", 2): 2e-3,
        }
    )


def test_csv_history_appends_rows_and_drops_the_steps_a_resume_repeats(tmp_path):
    path = tmp_path / "history.csv"
    history = CsvHistory(path)
    history.before_train(0)  # nothing to drop, and no file made
    assert not path.exists()
    for step in (1, 2, 3):
        history.after_step(_result(step, loss=1 / step))
    assert path.read_text().splitlines() == [
        "step,rpn_box,loss,learning_rate", "1,0.5,1,0.001", "2,0.25,0.5,0.001", "3,0.166667,0.333333,0.001"
    ]
    with path.open("a") as f:
        f.write("4,0.1\n")  # a row cut short by a kill
    CsvHistory(path).before_train(2)
    assert path.read_text().splitlines()[1:] == ["1,0.5,1,0.001", "2,0.25,0.5,0.001"]
    CsvHistory(path).after_step(_result(3, loss=0.2))
    assert path.read_text().splitlines()[-1] == "3,0.1,0.2,0.001"
    unchanged = path.read_text()
    CsvHistory(path).before_train(3)
    assert path.read_text() == unchanged


def test_progress_bar_counts_from_the_resumed_step_and_shows_loss_and_epoch():
    bar = ProgressBar(total_steps=10)
    bar.before_train(4)
    bar.after_step(_result(5, loss=0.1234, epoch=2))
    assert (bar.bar.n, bar.bar.total) == (5, 10)
    assert bar.bar.postfix == "epoch=2, loss=0.123"
    bar.after_train(5)
    assert bar.bar.disable  # closed


def _validation(scores, *, best=-math.inf, chief=True, metrics_path=None):
    saved, best_score = [], tf.Variable(best, dtype=tf.float64)
    hook = Validation(
        lambda: scores.pop(0),
        every=2,
        last_step=5,
        writer=tf.summary.create_noop_writer(),
        best_score=best_score,
        save_best=(lambda: saved.append(float(best_score.numpy()))) if chief else None,
        metrics_path=metrics_path,
    )
    return hook, saved, best_score


def test_validation_runs_every_n_steps_and_at_the_last_and_keeps_the_best_operating_score(tmp_path, caplog):
    scores = [_metrics(0.5, 0.6), _metrics(0.9, 0.4), _metrics(0.7, 0.8, threshold=0.35)]
    hook, saved, best_score = _validation(scores, metrics_path=tmp_path / "validation.json")
    with caplog.at_level(logging.INFO, logger="gsfc_tf.hooks"):
        for step in range(1, 6):
            hook.after_step(_result(step))
    assert not scores, "validated at steps 2 and 4 (every 2) and 5 (the last)"
    # min(completeness, purity): 0.5, then 0.4 (no better, kept weights stay), then 0.7.
    assert saved == [0.5, 0.7] and float(best_score.numpy()) == 0.7
    assert "step 5: validation completeness 0.700, purity 0.800 (score >= 0.35)" in caplog.text
    hook.after_train(5)
    assert json.loads((tmp_path / "validation.json").read_text()) == _metrics(0.7, 0.8, threshold=0.35)
    assert hook.metrics == _metrics(0.7, 0.8, threshold=0.35)


def test_validation_compares_with_the_best_score_before_a_resume_and_skips_a_split_without_clumps(caplog):
    hook, saved, best_score = _validation([_metrics(0.6, 0.6), _metrics(None)], best=0.65)
    with caplog.at_level(logging.WARNING, logger="gsfc_tf.hooks"):
        hook.after_step(_result(2))
        hook.after_step(_result(4))
    assert saved == [] and float(best_score.numpy()) == 0.65
    assert "step 4: the validation split has no clumps; nothing to score." in caplog.text
    hook.after_train(4)  # no metrics_path: writes nothing


def test_validation_on_other_workers_scores_but_neither_saves_nor_updates_the_best_score():
    hook, saved, best_score = _validation([_metrics(0.9, 0.9)], chief=False)
    hook.after_step(_result(2))
    assert hook.metrics == _metrics(0.9, 0.9) and saved == [] and float(best_score.numpy()) == -math.inf


def test_checkpointer_saves_every_n_steps_and_the_last_step_once():
    step_variable = tf.Variable(0, dtype=tf.int64)
    manager = _FakeManager(step_variable)
    checkpointer = PeriodicCheckpointer(manager, step_variable, every=3)
    for step in range(1, 8):
        checkpointer.after_step(_result(step))
    checkpointer.after_train(7)
    assert manager.saved == [(3, 3), (6, 6), (7, 7)]  # each saved with its own step in the checkpoint
    checkpointer.after_train(7)  # a resumed run with nothing left to do saves nothing new
    assert manager.saved[-1] == (7, 7) and len(manager.saved) == 3
