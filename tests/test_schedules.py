"""Learning-rate schedules: values by hand, warmup around each schedule, repr, errors."""

import math

import numpy as np
import pytest

from gradwatch import optim, schedules


def values(schedule, steps, base_lr=1.0):
    return [schedule(step, base_lr) for step in range(steps)]


# --- values by hand -----------------------------------------------------------------------------


def test_constant():
    assert values(schedules.Constant(), 4, 0.3) == [0.3] * 4


def test_step():
    assert values(schedules.Step(step_size=3, gamma=0.5), 8, 2.0) == pytest.approx(
        [2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    )
    assert values(schedules.Step(2), 5) == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_exponential():
    assert values(schedules.Exponential(0.9), 4, 10.0) == pytest.approx([10.0, 9.0, 8.1, 7.29])
    assert values(schedules.Exponential(1.0), 3, 0.5) == [0.5, 0.5, 0.5]


def test_cosine():
    # T = 4: cos(pi t / 4) = 1, sqrt(2)/2, 0, -sqrt(2)/2, -1; then flat at min_lr.
    half = math.sqrt(2) / 2
    expected = [1.0, (1 + half) / 2, 0.5, (1 - half) / 2, 0.0, 0.0, 0.0]
    assert values(schedules.Cosine(4), 7) == pytest.approx(expected, abs=1e-15)
    # With min_lr = 0.1 and base 1.1: 0.1 + 0.5 (1.1 - 0.1)(1 + cos(pi t / 2)).
    assert values(schedules.Cosine(2, min_lr=0.1), 4, 1.1) == pytest.approx([1.1, 0.6, 0.1, 0.1])


def test_linear_warmup_then_constant():
    # W = 4, s = 0.2: base (0.2 + 0.8 t / 4) = 0.2, 0.4, 0.6, 0.8, then base from step 4.
    warmup = schedules.LinearWarmup(4, start_factor=0.2)
    assert values(warmup, 7, 0.5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5])


def test_linear_warmup_default_start_factor_is_one_third():
    assert values(schedules.LinearWarmup(2), 3) == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_linear_warmup_from_zero():
    assert values(schedules.LinearWarmup(2, start_factor=0.0), 3) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("after", [
    schedules.Constant(),
    schedules.Step(2, gamma=0.5),
    schedules.Exponential(0.8),
    schedules.Cosine(5, min_lr=0.01),
    schedules.LinearWarmup(2, schedules.Cosine(3)),
], ids=repr)
def test_linear_warmup_runs_the_wrapped_schedule_from_its_step_zero(after):
    warmup = schedules.LinearWarmup(3, after=after, start_factor=0.1)
    assert values(warmup, 3, 2.0) == pytest.approx([0.2, 0.2 + 0.6, 0.2 + 1.2])
    for step in range(3, 12):
        assert warmup(step, 2.0) == after(step - 3, 2.0)


def test_returns_python_floats_and_accepts_numpy_scalars():
    lr = schedules.Step(2)(np.int64(3), np.float32(0.5))
    assert type(lr) is float and lr == pytest.approx(0.05)


def test_schedule_drives_an_optimiser_lr():
    # What fit does: optimizer.lr = schedule(step, base_lr) before each step.
    sgd = optim.SGD(lr=1.0)
    params = {"w": np.zeros(1)}
    schedule = schedules.LinearWarmup(2, schedules.Step(1, gamma=0.5), start_factor=0.5)
    for step in range(4):
        sgd.lr = schedule(step, 1.0)
        sgd.step(params, {"w": np.ones(1)})
    # rates 0.5, 0.75, 1.0, 0.5
    assert params["w"][0] == pytest.approx(-2.75)


def test_repr():
    assert repr(schedules.Constant()) == "Constant()"
    assert repr(schedules.Step(10)) == "Step(step_size=10, gamma=0.1)"
    assert repr(schedules.Exponential(0.9)) == "Exponential(gamma=0.9)"
    assert repr(schedules.Cosine(100, min_lr=1e-4)) == "Cosine(total_steps=100, min_lr=0.0001)"
    assert repr(schedules.LinearWarmup(5, schedules.Cosine(10), start_factor=0.5)) == (
        "LinearWarmup(warmup_steps=5, after=Cosine(total_steps=10, min_lr=0.0), "
        "start_factor=0.5)"
    )


def test_arguments_are_readable_and_read_only():
    step = schedules.Step(3, gamma=0.5)
    assert step.step_size == 3 and step.gamma == 0.5
    with pytest.raises(AttributeError, match="Step is read-only; create a new schedule"):
        step.gamma = 2.0
    with pytest.raises(AttributeError, match="'Step' object has no attribute 'total_steps'"):
        step.total_steps
    assert step(3, 1.0) == 0.5


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, error, message", [
    (lambda: schedules.Step(0), ValueError, r"step_size must be >= 1, got 0"),
    (lambda: schedules.Step(2.5), TypeError, r"step_size must be an integer, got float"),
    (lambda: schedules.Step(2, gamma=0.0), ValueError, r"gamma must be in \(0, 1\], got 0.0"),
    (lambda: schedules.Step(2, gamma=1.5), ValueError, r"gamma must be in \(0, 1\], got 1.5"),
    (lambda: schedules.Exponential(-0.5), ValueError, r"gamma must be in \(0, 1\]"),
    (lambda: schedules.Exponential(math.nan), ValueError, r"gamma must be finite"),
    (lambda: schedules.Exponential("0.9"), TypeError, r"gamma must be a real number, got str"),
    (lambda: schedules.Cosine(0), ValueError, r"total_steps must be >= 1, got 0"),
    (lambda: schedules.Cosine(True), TypeError, r"total_steps must be an integer, got bool"),
    (lambda: schedules.Cosine(10, min_lr=-0.1), ValueError, r"min_lr must be >= 0, got -0.1"),
    (lambda: schedules.Cosine(10, min_lr=math.inf), ValueError, r"min_lr must be finite"),
    (lambda: schedules.LinearWarmup(0), ValueError, r"warmup_steps must be >= 1, got 0"),
    (lambda: schedules.LinearWarmup(3, after=lambda step, lr: lr), TypeError,
     r"after must be a gradwatch.schedules.Schedule, got function"),
    (lambda: schedules.LinearWarmup(3, start_factor=1.5), ValueError,
     r"start_factor must be in \[0, 1\], got 1.5"),
    (lambda: schedules.LinearWarmup(3, start_factor=-0.1), ValueError,
     r"start_factor must be in \[0, 1\]"),
])
def test_invalid_arguments(factory, error, message):
    with pytest.raises(error, match=message):
        factory()


@pytest.mark.parametrize("step, base_lr, error, message", [
    (-1, 0.1, ValueError, r"step must be >= 0, got -1"),
    (1.0, 0.1, TypeError, r"step must be an integer, got float"),
    (True, 0.1, TypeError, r"step must be an integer, got bool"),
    (0, -0.1, ValueError, r"base_lr must be >= 0, got -0.1"),
    (0, math.inf, ValueError, r"base_lr must be finite"),
    (0, None, TypeError, r"base_lr must be a real number, got NoneType"),
])
def test_invalid_call_arguments(step, base_lr, error, message):
    for schedule in (schedules.Constant(), schedules.LinearWarmup(2, schedules.Cosine(3))):
        with pytest.raises(error, match=message):
            schedule(step, base_lr)


def test_schedule_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        schedules.Schedule()
