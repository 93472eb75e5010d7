"""Errors cross process boundaries intact: a batch's worker sends them back pickled."""

from __future__ import annotations

import pickle

import pytest

from slimcodec.errors import WeightsFileError, WeightsMismatchError, WorkerStartError

ERRORS = [
    WeightsMismatchError(b"\x01" * 8, b"\x02" * 8),
    WeightsMismatchError(b"\x01" * 8, b"\x02" * 8, not_shipped=True),
    WeightsFileError("w.pt", "not a slimcodec weights file"),
    WorkerStartError("the weights failed to load"),
]


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: f"{type(e).__name__}-{len(str(e))}")
def test_an_error_pickled_and_unpickled_keeps_its_message_and_fields(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and vars(back) == vars(exc)


class _FieldsOnlyError(Exception):
    def __init__(self, a: int, b: int):
        super().__init__(f"needs {a} and {b}")


def _raise_fields_only_error(job):
    raise _FieldsOnlyError(1, 2)


def test_a_worker_error_that_cannot_be_unpickled_comes_back_as_its_message():
    from slimcodec.cli.parallel import run_job
    from slimcodec.errors import SlimError

    with pytest.raises(SlimError, match="needs 1 and 2"):
        run_job(_raise_fields_only_error, None)
