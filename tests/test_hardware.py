"""Thread picking: the cores other processes leave free."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vitkit import hardware


def test_pick_threads_leaves_the_busy_cores_alone(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    try:
        monkeypatch.setattr(hardware, "busy_cores", lambda: 1.2)
        assert hardware.pick_threads(torch.device("cpu")) == 3
        monkeypatch.setattr(hardware, "busy_cores", lambda: 9.0)
        assert hardware.pick_threads(torch.device("cpu")) == 1
    finally:
        torch.set_num_threads(previous)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat (Linux)")
def test_busy_cores_sees_a_spinning_process_now():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert hardware.busy_cores() >= 0.6
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_falls_back_to_the_load_average_without_proc(monkeypatch):
    def no_proc():
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(hardware, "_cpu_times", no_proc)
    monkeypatch.setattr("os.getloadavg", lambda: (1.5, 0.0, 0.0))
    assert hardware.busy_cores() == 1.5
