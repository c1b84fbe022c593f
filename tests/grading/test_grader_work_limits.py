"""The grader's own work on a student's request (a callback into a reference) is bounded (issue 9):
CPU time, memory and the size of what it sends back; past a limit the part fails and the grader lives on.
Run against the grader's Session directly, with no sandbox (the limits are the grader's, not the sandbox's)."""

from __future__ import annotations

import time

import pytest
import torch

from rnn_course.checks import CheckFailed
from rnn_course.grading.runner import GraderWorkRefused, Session, WorkLimits


def session(limits: WorkLimits) -> Session:
    work = Session(
        sandbox=None, namespace={}, functions=[], cell_timeout=30.0, limits=limits
    )
    work.start_cell()
    return work


def test_a_callback_that_spins_is_stopped_at_its_cpu_budget():
    work = session(WorkLimits(cpu_seconds=0.5))

    def spin():
        while True:
            pass

    start = time.process_time()
    with pytest.raises(GraderWorkRefused, match="CPU time"):
        work._run_callback(spin, [], {})
    assert time.process_time() - start < 5  # stopped near 0.5 s, not after minutes
    assert "CPU time" in work.work_failure
    with pytest.raises(
        GraderWorkRefused
    ):  # and the rest of that test cell gets nothing more
        work._run_callback(lambda: 1, [], {})
    work.start_cell()
    assert (
        work._run_callback(lambda: 1, [], {}) == 1
    )  # the next test cell starts afresh


def test_a_callback_that_swallows_exceptions_is_stopped_all_the_same():
    work = session(WorkLimits(cpu_seconds=0.3))

    def stubborn():
        while True:
            try:
                while True:
                    pass
            except Exception:  # noqa: BLE001 (what a careless reference might do)
                pass

    with pytest.raises(GraderWorkRefused):
        work._run_callback(stubborn, [], {})


def test_a_request_that_needs_more_memory_than_allowed_is_refused():
    work = session(WorkLimits(memory_bytes=256 << 20))
    x, w = torch.ones(16384, 1), torch.ones(16384, 1)  # 128 KiB of arguments ...
    with pytest.raises(GraderWorkRefused, match="memory limit"):
        work._run_callback(lambda a, b: a @ b.T, [x, w], {})  # ... for a 1 GiB product
    assert torch.equal(
        session(WorkLimits())._run_callback(torch.add, [x, w], {}), x + w
    )  # within limits


def test_a_result_larger_than_allowed_is_refused_before_it_is_sent():
    work = session(WorkLimits(result_bytes=1 << 20))
    with pytest.raises(GraderWorkRefused, match="send back more"):
        work._run_callback(
            lambda: torch.zeros(1).expand(1 << 28), [], {}
        )  # 1 GiB view, no memory


def test_the_refusal_fails_the_part_even_when_the_students_code_swallows_it():
    work = session(WorkLimits(result_bytes=1 << 10))
    with pytest.raises(GraderWorkRefused):
        work._run_callback(lambda: torch.zeros(1 << 12), [], {})

    class AnsweringSandbox:  # the student's function caught the refusal and returned normally
        killed_at_deadline = False

        def call(self, *args, **kwargs):
            from rnn_course.grading import protocol

            return {"ok": True, "value": 1.0}, protocol.Decoder([]), protocol.Encoder()

    work.sandbox = AnsweringSandbox()
    with pytest.raises(CheckFailed, match=r"send back\s+more than its limit of 1 KiB"):
        work.call("memory_cell_step", (), {})
