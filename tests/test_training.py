"""fit: batches and order against a hand-written loop, schedules, History, callbacks, early
stopping, non-finite batches, progress bar, argument checks."""

import json
import math
import re
import sys

import numpy as np
import pytest

import gradwatch
from gradwatch import optim, schedules
from gradwatch.training import Callback, EarlyStopping, History, fit


pytestmark = pytest.mark.usefixtures("one_thread")


def make_net(dtype=np.float32, **options):
    options.setdefault("seed", 3)
    return gradwatch.MLP(options.pop("layer_sizes", (5, 8, 3)), dtype=dtype, **options)


def make_data(count=23, features=5, classes=3, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, features)).astype(dtype)
    y = rng.integers(0, classes, size=count)
    return x, y


def assert_same_state(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


def manual_loop(net, x, y, optimizer, epochs, batch_size, orders, schedule=None, **clip):
    """What fit should do, written out: (losses, lrs, grad norms) of the steps."""
    base_lr = optimizer.lr
    losses, lrs, norms = [], [], []
    for epoch in range(epochs):
        order = orders[epoch]
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            if net.batchnorm and len(rows) == 1:
                continue
            if schedule is not None:
                optimizer.lr = schedule(len(losses), base_lr)
            lrs.append(optimizer.lr)
            loss, norm = net.train_step(x[rows], y[rows], optimizer, **clip)
            losses.append(loss)
            norms.append(norm)
    optimizer.lr = base_lr
    return losses, lrs, norms


# --- batches, order and the training step -------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_fit_matches_a_hand_written_loop(dtype, shuffle, batchnorm):
    # 23 = 3 * 7 + 2 samples in batches of 7: the last batch has 2 samples and is used.
    x, y = make_data(dtype=dtype)
    net, reference = make_net(dtype, batchnorm=batchnorm), make_net(dtype, batchnorm=batchnorm)
    history = fit(net, x, y, optimizer=optim.SGD(lr=0.1, momentum=0.9), epochs=3, batch_size=7,
                  shuffle=shuffle, seed=11, progress=False, clip_grad_norm=2.0,
                  clip_grad_value=0.5)
    rng = np.random.default_rng(11)
    orders = [rng.permutation(len(x)) if shuffle else np.arange(len(x)) for _ in range(3)]
    losses, lrs, norms = manual_loop(reference, x, y, optim.SGD(lr=0.1, momentum=0.9), 3, 7,
                                     orders, clip_grad_norm=2.0, clip_grad_value=0.5)
    assert_same_state(net, reference)
    assert history.step_loss == losses and history.step_grad_norm == norms
    assert history.step_lr == lrs == [0.1] * 12
    assert history.steps == 12 and history.epochs == 3 and not history.stopped_early


def test_single_sample_last_batch_is_dropped_with_batchnorm_only():
    # 22 = 3 * 7 + 1: with batch norm the one-sample batch is left out of every epoch.
    x, y = make_data(count=22)
    with_bn = fit(make_net(batchnorm=True), x, y, optimizer=optim.SGD(lr=0.1), epochs=2,
                  batch_size=7, progress=False)
    without_bn = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=7,
                     progress=False)
    assert (with_bn.steps, without_bn.steps) == (6, 8)


def test_batch_larger_than_the_data_is_one_batch():
    x, y = make_data(count=5)
    assert fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=4, batch_size=100,
               progress=False).steps == 4


def test_same_seed_same_run_other_seed_other_run():
    x, y = make_data()
    runs = []
    for seed in (5, 5, 6):
        net = make_net(dropout=0.2)
        runs.append((net, fit(net, x, y, optimizer=optim.Adam(lr=0.01), epochs=3, batch_size=4,
                              seed=seed, progress=False)))
    assert_same_state(runs[0][0], runs[1][0])
    assert runs[0][1].step_loss == runs[1][1].step_loss
    assert runs[0][1].step_loss != runs[2][1].step_loss


def test_lists_and_integer_inputs_are_converted():
    x, y = make_data(count=8)
    net, reference = make_net(), make_net()
    fit(net, x.tolist(), y.astype(np.int32).tolist(), optimizer=optim.SGD(lr=0.1), epochs=1,
        batch_size=8, shuffle=False, progress=False)
    fit(reference, x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=8, shuffle=False,
        progress=False)
    assert_same_state(net, reference)


def test_regression_targets_of_one_output_may_be_one_dimensional():
    x, _ = make_data(count=12)
    target = x.sum(axis=1)
    net, reference = make_net(loss="mse", layer_sizes=(5, 4, 1)), \
        make_net(loss="mse", layer_sizes=(5, 4, 1))
    history = fit(net, x, target, optimizer=optim.SGD(lr=0.01), epochs=2, batch_size=6,
                  shuffle=False, progress=False)
    fit(reference, x, target[:, None], optimizer=optim.SGD(lr=0.01), epochs=2, batch_size=6,
        shuffle=False, progress=False)
    assert_same_state(net, reference)
    assert history.epoch_accuracy == [] and len(history.epoch_loss) == 2


def test_mlp_fit_is_this_fit():
    x, y = make_data()
    net, reference = make_net(), make_net()
    history = net.fit(x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=5, seed=1,
                      progress=False)
    fit(reference, x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=5, seed=1,
        progress=False)
    assert isinstance(history, History)
    assert_same_state(net, reference)


def test_training_reduces_the_loss_of_a_separable_problem():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    net = make_net(layer_sizes=(5, 16, 2))
    history = fit(net, x, y, optimizer=optim.Adam(lr=0.01), epochs=30, batch_size=16, seed=0,
                  progress=False)
    assert history.epoch_loss[-1] < 0.5 * history.epoch_loss[0]
    assert history.epoch_accuracy[-1] > 0.9


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_sets_the_rate_of_every_step_and_is_undone_afterwards():
    x, y = make_data(count=20)
    schedule = schedules.LinearWarmup(3, schedules.Cosine(5), start_factor=0.5)
    net, reference = make_net(), make_net()
    optimizer = optim.SGD(lr=0.2, momentum=0.5)
    history = fit(net, x, y, optimizer=optimizer, epochs=2, batch_size=5, schedule=schedule,
                  shuffle=False, progress=False)
    assert history.step_lr == [schedule(t, 0.2) for t in range(8)]
    assert history.step_lr[0] == 0.1 and history.step_lr[3] == 0.2
    assert optimizer.lr == 0.2
    orders = [np.arange(20)] * 2
    losses, lrs, _ = manual_loop(reference, x, y, optim.SGD(lr=0.2, momentum=0.5), 2, 5, orders,
                                 schedule)
    assert history.step_lr == lrs and history.step_loss == losses
    assert_same_state(net, reference)


def test_rate_is_restored_when_training_fails():
    x, y = make_data(count=10)
    x[7] = np.nan
    optimizer = optim.SGD(lr=0.3)
    with pytest.raises(gradwatch.NonFiniteError):
        fit(make_net(), x, y, optimizer=optimizer, epochs=1, batch_size=5, shuffle=False,
            schedule=schedules.Exponential(0.5), progress=False)
    assert optimizer.lr == 0.3 and optimizer.step_count == 1


# --- History ------------------------------------------------------------------------------------


def test_history_epoch_values(dtype):
    x, y = make_data(count=13, dtype=dtype)
    x_val, y_val = make_data(count=6, dtype=dtype, seed=9)
    net = make_net(dtype, batchnorm=True, dropout=0.3)
    epochs_seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs):
            epochs_seen.append((logs, net.evaluate(x, y), net.evaluate(x_val, y_val)))

    history = fit(net, x, y, optimizer=optim.SGD(lr=0.05), epochs=2, batch_size=5,
                  validation_data=(x_val, y_val), callbacks=[Record()], progress=False)
    # Batches of 5, 5, 3 samples: the epoch loss weighs each step by its batch size.
    for epoch, (logs, train, val) in enumerate(epochs_seen):
        steps = history.step_loss[3 * epoch:3 * epoch + 3]
        assert history.epoch_loss[epoch] == pytest.approx(
            (5 * steps[0] + 5 * steps[1] + 3 * steps[2]) / 13, rel=1e-12)
        assert history.epoch_accuracy[epoch] == train["accuracy"]
        assert history.val_loss[epoch] == val["loss"]
        assert history.val_accuracy[epoch] == val["accuracy"]
        assert logs == {"loss": history.epoch_loss[epoch], "accuracy": train["accuracy"],
                        "val_loss": val["loss"], "val_accuracy": val["accuracy"]}


def test_history_to_dict_is_json():
    x, y = make_data(count=10)
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4,
                  validation_data=(x, y), progress=False)
    record = json.loads(json.dumps(history.to_dict()))
    assert record["step_loss"] == history.step_loss and record["epochs"] == 2
    assert set(record) == {"step_loss", "step_lr", "step_grad_norm", "epoch_loss",
                           "epoch_accuracy", "val_loss", "val_accuracy", "skipped_batches",
                           "epochs", "stopped_early"}
    assert all(type(value) is float for value in record["step_grad_norm"])
    assert repr(history).startswith("History(epochs=2, steps=6, loss=")


def test_mse_validation_has_no_accuracy():
    x, _ = make_data(count=10)
    target = np.stack([x[:, 0], x[:, 1] - x[:, 2]], axis=1)
    history = fit(make_net(loss="mse", layer_sizes=(5, 4, 2)), x, target,
                  optimizer=optim.SGD(lr=0.01), epochs=2, batch_size=5, validation_data=(x, target),
                  progress=False)
    assert len(history.val_loss) == 2 and history.val_accuracy == history.epoch_accuracy == []


# --- callbacks ----------------------------------------------------------------------------------


class Recorder:
    """Every hook, with what it received; optionally stops at a step or an epoch."""

    def __init__(self, stop_step=None, stop_epoch=None):
        self.calls = []
        self.stop_step, self.stop_epoch = stop_step, stop_epoch

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch))

    def on_step_end(self, step, logs):
        self.calls.append(("step", step, logs["epoch"], logs["batch"]))
        return step == self.stop_step

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch))
        return epoch == self.stop_epoch

    def on_train_end(self, logs):
        self.calls.append(("train_end", logs))


def test_callback_hooks_in_order():
    x, y = make_data(count=6)
    recorder = Recorder()
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4,
                  callbacks=[recorder], progress=False)
    assert recorder.calls == [
        ("train_begin", {}),
        ("epoch_begin", 0), ("step", 0, 0, 0), ("step", 1, 0, 1), ("epoch_end", 0),
        ("epoch_begin", 1), ("step", 2, 1, 0), ("step", 3, 1, 1), ("epoch_end", 1),
        ("train_end", {"epochs": 2, "steps": 4}),
    ]
    assert not history.stopped_early


def test_step_logs():
    x, y = make_data(count=6)
    seen = []

    class Logs:
        def on_step_end(self, step, logs):
            seen.append(logs)

    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=3,
                  callbacks=(Logs(),), progress=False)
    assert seen == [{"epoch": 0, "batch": b, "loss": history.step_loss[b], "lr": 0.1,
                     "grad_norm": history.step_grad_norm[b]} for b in range(2)]


def test_returning_true_from_on_step_end_stops_after_that_step():
    x, y = make_data(count=12)
    stopper, other = Recorder(stop_step=4), Recorder()
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=5, batch_size=4,
                  callbacks=[stopper, other], progress=False)
    assert history.steps == 5 and history.epochs == 2 and history.stopped_early
    # Every callback still sees the step, then the end of the interrupted epoch.
    assert other.calls[-3:] == [("step", 4, 1, 1), ("epoch_end", 1),
                                ("train_end", {"epochs": 2, "steps": 5})]


def test_returning_true_from_on_epoch_end_stops_after_that_epoch():
    x, y = make_data(count=12)
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=5, batch_size=4,
                  callbacks=[Recorder(stop_epoch=1)], progress=False)
    assert history.epochs == 2 and history.steps == 6 and history.stopped_early
    last = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4,
               callbacks=[Recorder(stop_epoch=1)], progress=False)
    assert last.epochs == 2 and not last.stopped_early


def test_callback_returning_something_else_is_an_error():
    x, y = make_data(count=4)

    class Bad:
        def on_step_end(self, step, logs):
            return "stop"

    with pytest.raises(TypeError, match=r"Bad.on_step_end must return None, False or True"):
        fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=4,
            callbacks=[Bad()], progress=False)


# --- early stopping -----------------------------------------------------------------------------


def test_early_stopping_counts_epochs_without_improvement():
    stopping = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.1)
    decisions = [stopping.on_epoch_end(epoch, {"val_loss": value})
                 for epoch, value in enumerate([1.0, 0.95, 0.85, 0.8, math.nan])]
    # 0.95 is not 0.1 better than 1.0 (wait 1), 0.85 is (reset), 0.8 and NaN are not.
    assert decisions == [False, False, False, False, True]
    assert (stopping.best, stopping.best_epoch, stopping.stopped_epoch) == (0.85, 2, 4)


def test_early_stopping_maximises_accuracy():
    stopping = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopping.mode == "max"
    assert [stopping.on_epoch_end(e, {"val_accuracy": v}) for e, v in enumerate([0.5, 0.7, 0.7])] \
        == [False, False, True]
    assert EarlyStopping(monitor="accuracy", mode="min").mode == "min"


def test_early_stopping_in_fit_and_reset_between_fits():
    # lr = 0: the validation loss never changes, so only epoch 0 improves on +inf.
    x, y = make_data(count=8)
    stopping = EarlyStopping(patience=3)
    for _ in range(2):
        history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.0), epochs=10, batch_size=4,
                      validation_data=(x, y), callbacks=[stopping], progress=False)
        assert history.epochs == 4 and history.stopped_early
        assert (stopping.best_epoch, stopping.stopped_epoch) == (0, 3)
    assert repr(stopping) == "EarlyStopping(monitor='val_loss', patience=3, min_delta=0.0, " \
                             "mode='min')"


@pytest.mark.parametrize("arguments, error, match", [
    (dict(monitor="val_acc"), ValueError, r"unknown monitor 'val_acc'"),
    (dict(patience=0), ValueError, r"patience must be >= 1"),
    (dict(patience=1.5), TypeError, r"patience must be an integer"),
    (dict(min_delta=-0.1), ValueError, r"min_delta must be finite and >= 0"),
    (dict(min_delta="0"), TypeError, r"min_delta must be a real number"),
    (dict(mode="up"), ValueError, r"unknown mode 'up'"),
])
def test_early_stopping_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**arguments)


# --- non-finite batches ---------------------------------------------------------------------------


def test_nonfinite_batches_raise_or_are_skipped():
    x, y = make_data(count=12)
    x[5, 2] = np.inf  # in the second of three batches of 4
    net = make_net()
    with pytest.raises(gradwatch.NonFiniteError):
        fit(net, x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4, shuffle=False,
            progress=False)
    reference = make_net()
    manual_loop(reference, x[:4], y[:4], optim.SGD(lr=0.1), 1, 4, [np.arange(4)])
    assert_same_state(net, reference)  # the steps before the bad batch stay applied

    net, reference = make_net(), make_net()
    history = fit(net, x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4,
                  shuffle=False, on_nonfinite="skip", progress=False)
    good = np.r_[0:4, 8:12]
    manual_loop(reference, x[good], y[good], optim.SGD(lr=0.1), 2, 4, [np.arange(8)] * 2)
    assert_same_state(net, reference)
    assert history.skipped_batches == 2 and history.steps == 4


def test_an_epoch_of_skipped_batches_has_a_nan_loss():
    x, y = make_data(count=4)
    x[0, 0] = np.nan
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=4,
                  on_nonfinite="skip", progress=False)
    assert history.steps == 0 and history.skipped_batches == 1
    assert math.isnan(history.epoch_loss[0])


# --- progress bar -------------------------------------------------------------------------------


def test_progress_bar_shows_epoch_and_loss(capsys):
    pytest.importorskip("tqdm")
    x, y = make_data(count=8)
    fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=4, progress=True)
    err = capsys.readouterr().err
    # tqdm redraws the bar: the last state shows step 4 of 4, the epoch and the loss.
    assert "4/4" in err and re.search(r"epoch 2/2, loss \d", err)


def test_no_output_without_progress_or_without_tqdm(capsys, monkeypatch):
    x, y = make_data(count=8)
    fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=4, progress=False)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    history = fit(make_net(), x, y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=4,
                  progress=True)
    assert history.steps == 2
    assert capsys.readouterr() == ("", "")


# --- argument checks: raised before anything is trained ------------------------------------------

X, Y = make_data(count=10)


@pytest.mark.parametrize("change, error, match", [
    (dict(optimizer="sgd"), TypeError, r"optimizer must be a gradwatch.optim.Optimizer"),
    (dict(epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    (dict(epochs=2.0), TypeError, r"epochs must be an integer"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1"),
    (dict(batch_size=True), TypeError, r"batch_size must be an integer"),
    (dict(schedule=lambda step, lr: lr), TypeError, r"schedule must be a gradwatch.schedules"),
    (dict(shuffle=1), TypeError, r"shuffle must be True or False"),
    (dict(progress=None), TypeError, r"progress must be True or False"),
    (dict(seed=-1), ValueError, r"seed must be >= 0"),
    (dict(seed=1.0), TypeError, r"seed must be an integer or None"),
    (dict(clip_grad_norm=0.0), ValueError, r"clip_grad_norm must be > 0"),
    (dict(clip_grad_value=math.inf), ValueError, r"clip_grad_value must be finite"),
    (dict(on_nonfinite="ignore"), ValueError, r"unknown on_nonfinite 'ignore'"),
    (dict(x=X[:, :4]), ValueError, r"x must have shape \(N, 5\) .*got \(10, 4\)"),
    (dict(x=X[0]), ValueError, r"x must have shape \(N, 5\)"),
    (dict(x=X[:0]), ValueError, r"x is empty"),
    (dict(x=X.astype(np.float64)), TypeError, r"x must be a float32 array like the network"),
    (dict(x=[["a"] * 5] * 10), TypeError, r"x must hold real numbers"),
    (dict(y=Y[:9]), ValueError, r"y must have shape \(10,\)"),
    (dict(y=Y.astype(np.float32)), TypeError, r"y must hold integer class indices"),
    (dict(y=np.where(Y == 0, 3, Y)), ValueError, r"class indices in \[0, 3\), got .* \[1, 3\]"),
    (dict(y=Y - 1), ValueError, r"class indices in \[0, 3\), got values in \[-1,"),
    (dict(validation_data=X), TypeError, r"validation_data must be a pair"),
    (dict(validation_data=(X, Y[:3])), ValueError, r"validation_data\[1\] must have shape"),
    (dict(validation_data=(X[:, :2], Y)), ValueError, r"validation_data\[0\] must have shape"),
    (dict(callbacks=Recorder()), TypeError, r"callbacks must be a sequence"),
    (dict(callbacks=[print]), TypeError, r"callbacks\[0\] \(builtin_function_or_method\) has "
                                         r"none of the methods"),
    (dict(callbacks=[type("C", (), {"on_step_end": 3})()]), TypeError,
     r"callbacks\[0\].on_step_end must be callable"),
    (dict(callbacks=[EarlyStopping()]), ValueError,
     r"monitors 'val_loss', which this fit does not record \(it needs validation_data\)"),
])
def test_invalid_arguments_change_nothing(change, error, match):
    net = make_net()
    before = net.state_dict()
    optimizer = optim.SGD(lr=0.1)
    arguments = dict(x=X, y=Y, optimizer=optimizer, epochs=2, batch_size=4, progress=False)
    arguments.update(change)
    x, y = arguments.pop("x"), arguments.pop("y")
    with pytest.raises(error, match=match):
        fit(net, x, y, **arguments)
    assert optimizer.step_count == 0
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_net_must_be_an_mlp():
    with pytest.raises(TypeError, match=r"net must be a gradwatch.MLP, got str"):
        fit("net", X, Y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=4)


def test_accuracy_monitor_needs_a_classification_loss():
    x, _ = make_data(count=6)
    with pytest.raises(ValueError, match=r"'accuracy'.*the mse loss has no accuracy"):
        fit(make_net(loss="mse"), x, np.zeros((6, 3), np.float32), optimizer=optim.SGD(lr=0.1),
            epochs=1, batch_size=2, callbacks=[EarlyStopping(monitor="accuracy")],
            progress=False)


def test_batchnorm_needs_batches_of_two():
    net = make_net(batchnorm=True)
    with pytest.raises(ValueError, match=r"batch norm needs batches of at least 2 samples; got "
                                         r"batch_size=1"):
        fit(net, X, Y, optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=1, progress=False)
    with pytest.raises(ValueError, match=r"and 1 sample\(s\) in x"):
        fit(net, X[:1], Y[:1], optimizer=optim.SGD(lr=0.1), epochs=1, batch_size=8,
            progress=False)


def test_optimizer_bound_to_another_dtype():
    optimizer = optim.SGD(lr=0.1)
    fit(make_net(np.float64), X.astype(np.float64), Y, optimizer=optimizer, epochs=1,
        batch_size=10, progress=False)
    with pytest.raises(TypeError, match=r"optimizer is bound to float64 parameters but the "
                                        r"network is float32"):
        fit(make_net(), X, Y, optimizer=optimizer, epochs=1, batch_size=4, progress=False)
