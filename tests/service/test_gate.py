"""The CPU gate (service/gate.py): first come first served, re-entrant, bounded wait; over HTTP a request that
waits too long gets 503 with Retry-After."""

from __future__ import annotations

import threading
import time

import pytest

from service.gate import CpuGate, Overloaded


def test_waiters_are_admitted_in_arrival_order():
    gate = CpuGate(1)
    order: list[int] = []
    gate.__enter__()  # the slot is taken: everyone below queues
    threads = []
    for i in range(6):
        t = threading.Thread(target=lambda i=i: (gate.__enter__(), order.append(i), gate.__exit__(None, None, None)))
        t.start()
        threads.append(t)
        while gate.waiting < i + 1:  # each one is in the queue before the next arrives
            time.sleep(0.001)
    gate.__exit__(None, None, None)
    for t in threads:
        t.join(timeout=10)
    assert order == list(range(6)) and gate.busy == 0 and gate.waiting == 0


def test_slots_bound_concurrency_and_the_gate_is_reentrant_in_a_thread():
    gate = CpuGate(2)
    inside, most = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with gate, gate:  # a nested step of the same request passes straight through
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert most[0] == 2 and gate.busy == 0


def test_a_request_that_waits_too_long_is_refused_and_leaves_the_queue():
    gate = CpuGate(1, max_wait=0.2)
    with gate:
        got: list[BaseException] = []
        t = threading.Thread(target=lambda: got.append(pytest.raises(Overloaded, gate.__enter__).value))
        t.start()
        t.join(timeout=10)
        assert got and got[0].retry_after >= 1 and "waited" in str(got[0])
        assert gate.waiting == 0  # it left the queue
    with gate:  # and the gate still works
        assert gate.busy == 1
    with pytest.raises(ValueError, match="at least one slot"):
        CpuGate(0)


def test_an_overloaded_service_answers_503_with_retry_after(make_client):
    client = make_client(max_concurrent=1, queue_timeout=0.3)
    gate = client.app.state.services.gate
    with gate:  # this thread holds the only slot: requests from the server's threads must wait
        r = client.post("/v1/search", json={"query": "parental leave"})
        a = client.post("/v1/ask", json={"question": "How long is parental leave?"})
    for resp in (r, a):
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"] == "overloaded"
    assert client.post("/v1/search", json={"query": "parental leave"}).status_code == 200
