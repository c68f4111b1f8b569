"""INT8 through the bindings when things go wrong: exceptions raised by a
Python kiln.Calibrator reach the caller as themselves, bad batches are
ValueErrors naming the input, misuse is a UsageError."""
import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from int8_support import SHAPE, ListCalibrator, make_batches  # noqa: E402


# ---- (4) Python exceptions reach the caller ----------------------------------------


class Boom(Exception):
    pass


class FailingCalibrator(ListCalibrator):
    """Gives `good` batches, then raises `error` from next_batch."""

    def __init__(self, arrays, good, error):
        super().__init__(arrays)
        self.good, self.error = good, error

    def next_batch(self):
        if self.given == self.good:
            raise self.error
        return super().next_batch()


@pytest.mark.parametrize("good", [0, 2])
def test_next_batch_exception_reaches_calibrate(exact_model, good):
    net = kiln.parse_onnx(exact_model)
    err = Boom("no more images")
    with pytest.raises(Boom) as info:
        kiln.calibrate(net, FailingCalibrator(make_batches(4, exact=True), good, err), progress=True)
    assert info.value is err  # the very object raised, not a copy or a kiln.Error
    assert "next_batch" in [entry.name for entry in info.traceback]
    # The module is still usable afterwards (GIL and state intact).
    assert kiln.calibrate(net, ListCalibrator(make_batches(2, exact=True)), method="minmax")


def test_next_batch_exception_reaches_build(exact_model):
    err = KeyError("missing file")
    builder = kiln.Builder(int8=True, calibrator=FailingCalibrator(make_batches(4, exact=True), 1, err))
    with pytest.raises(KeyError) as info:
        builder.build(kiln.parse_onnx(exact_model))
    assert info.value is err


def test_batch_count_and_rewind_exceptions_propagate(exact_model):
    class BadCount(ListCalibrator):
        def batch_count(self):
            return 1 // 0

    with pytest.raises(ZeroDivisionError):
        kiln.calibrate(kiln.parse_onnx(exact_model), BadCount(make_batches(2, exact=True)), progress=True)

    class BadRewind(ListCalibrator):
        def rewind(self):
            raise Boom("tape jammed")

    with pytest.raises(Boom, match="tape jammed"):
        kiln.Builder(int8=True, calibrator=BadRewind(make_batches(2, exact=True)),
                     int8_guard=True).build(kiln.parse_onnx(exact_model))


# ---- (5) bad batches are ValueErrors naming the input -------------------------------


class OneBatch(kiln.Calibrator):
    def __init__(self, batch):
        super().__init__()
        self.batch, self.done = batch, False

    def next_batch(self):
        if self.done:
            return None
        self.done = True
        return self.batch


@pytest.mark.parametrize("batch,needles", [
    ({"x": np.zeros(SHAPE, np.float64)}, ["'x'", "float64"]),
    ({"x": np.zeros(SHAPE, np.int32)}, ["'x'", "int32"]),
    ({"x": np.zeros((1, 3, 8, 8), np.float32)}, ["'x'", "[1,3,8,8]", "[2,3,8,8]"]),
    ({}, ["'x'"]),
    ({"x": np.zeros(SHAPE, np.float32), "extra": np.zeros(1, np.float32)}, ["'extra'"]),
    ({"x": object()}, ["'x'", "object"]),
])
def test_bad_batch_is_value_error_naming_the_input(exact_model, batch, needles):
    with pytest.raises(ValueError) as info:
        kiln.calibrate(kiln.parse_onnx(exact_model), OneBatch(batch))
    assert isinstance(info.value, kiln.BadInputError) and info.value.code == "bad_input"
    for n in needles:
        assert n in str(info.value), (n, str(info.value))
    assert "batch 0" in str(info.value)


def test_next_batch_must_return_a_dict_of_str(exact_model):
    net = kiln.parse_onnx(exact_model)
    with pytest.raises(kiln.BadInputError, match="list.*dict"):
        kiln.calibrate(net, OneBatch([np.zeros(SHAPE, np.float32)]))
    with pytest.raises(kiln.BadInputError, match="str"):
        kiln.calibrate(net, OneBatch({0: np.zeros(SHAPE, np.float32)}))


def test_usage_errors(exact_model, tmp_path):
    net = kiln.parse_onnx(exact_model)
    with pytest.raises(kiln.UsageError, match="calibrator"):
        kiln.calibrate(net)  # neither batches nor a cache
    with pytest.raises(kiln.UsageError, match="minmax"):
        kiln.calibrate(net, ListCalibrator(make_batches(1, exact=True)), method="kl")
    with pytest.raises(kiln.UsageError, match="minmax"):
        kiln.Builder(int8=True, calib_method="max")
    with pytest.raises(kiln.UsageError, match="no batch"):
        kiln.calibrate(net, ListCalibrator([]))
    with pytest.raises(kiln.UsageError, match="next_batch"):
        kiln.calibrate(net, kiln.Calibrator())  # a subclass must define next_batch
    with pytest.raises(TypeError):
        kiln.calibrate(net, calibrator=[np.zeros(SHAPE, np.float32)])  # not a kiln.Calibrator
    with pytest.raises(kiln.UsageError, match="scales"):
        kiln.Builder(int8=True).build(net)
    with pytest.raises(ValueError, match="no_such.cache"):
        kiln.calibrate(net, cache=tmp_path / "no_such.cache")


def test_progress_bar_uses_batch_count(exact_model, capfd):
    kiln.calibrate(kiln.parse_onnx(exact_model), ListCalibrator(make_batches(3, exact=True)), progress=True)
    assert "3/3 batches" in capfd.readouterr().err
