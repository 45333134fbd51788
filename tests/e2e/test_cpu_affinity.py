"""``tests/fixtures/cpu_affinity.py``: the agreement benchmark binds vLLM's engine loop to its worker's cores.

Real processes named as vLLM 0.21.0's CPU build names them (``/proc/self/comm``); the real server's pinning
is exercised by ``make bench-agreement``, which prints what it bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.cpu_affinity import pin_engine_core_to_worker

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 cores"
)

# A parent that starts an engine loop (two threads) and a worker bound to the first allowed core, as vLLM does.
SERVER = """
import os, subprocess, sys, time
def child(name, code):
    return subprocess.Popen([sys.executable, "-c", f"open('/proc/self/comm', 'w').write({name!r}); {code}"])
core = min(os.sched_getaffinity(0))
engine = child("VLLM::EngineCore", "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
                                   "time.sleep(60)")
worker = child("VLLM::Worker", f"import os, time; os.sched_setaffinity(0, {{{core}}}); time.sleep(60)")
print(engine.pid, worker.pid, core, flush=True)
time.sleep(60)
"""


@pytest.fixture
def server() -> Iterator[tuple[int, int, int]]:
    command = [sys.executable, "-c", SERVER]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        engine, worker, core = map(int, process.stdout.readline().split())
        deadline = time.monotonic() + 10
        while os.sched_getaffinity(worker) != {core} or len(os.listdir(f"/proc/{engine}/task")) < 2:
            assert time.monotonic() < deadline, "the stand-in server did not set itself up"
            time.sleep(0.05)
        yield process.pid, engine, core
    finally:
        os.killpg(process.pid, 9)
        process.wait(10)


def test_the_engine_loop_and_all_its_threads_move_to_the_workers_core(server: tuple[int, int, int]) -> None:
    root, engine, core = server
    assert os.sched_getaffinity(engine) != {core}  # unbound before, as vLLM leaves it
    said = pin_engine_core_to_worker(root)
    threads = [int(t) for t in os.listdir(f"/proc/{engine}/task")]
    assert len(threads) >= 2 and all(os.sched_getaffinity(t) == {core} for t in threads)
    assert said == f"VLLM::EngineCore ({len(threads)} threads) bound to the worker's cores [{core}]"


def test_a_server_without_the_pair_is_named_not_guessed() -> None:
    # A process with no children (not pytest's own PID: the engine tier's real vLLM server may run below it).
    lone = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(RuntimeError, match=rf"expected one VLLM::EngineCore and one VLLM::Worker below {lone.pid}"):
            pin_engine_core_to_worker(lone.pid)
    finally:
        lone.kill()
        lone.wait(10)
