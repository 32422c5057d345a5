"""`vitkit serve` in a child process, as load tests and integration tests start it: on a free port (--port 0), its
URL read from the first log lines, its log kept, returned once /readyz answers."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

URL_LINE = re.compile(r"serving .* at (http://\S+) \(")


class ServerProcess:
    """A running `python -m vitkit serve ARGS --port 0`; a context manager that stops it (SIGTERM) on exit."""

    def __init__(self, args: Sequence[str], ready_timeout: float = 300.0) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "vitkit", "serve", *args, "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self.url = ""
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            if match := URL_LINE.search(line):
                self.url = match.group(1)
                break
        threading.Thread(target=self._keep_log, daemon=True).start()
        if not self.url:
            self.stop()
            raise RuntimeError(f"vitkit serve exited without serving:\n{self.log()}")
        self._wait_ready(ready_timeout)

    def log(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.lines)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains its queue first), then its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _keep_log(self) -> None:
        self.lines.extend(self.process.stdout)  # type: ignore[arg-type]

    def _wait_ready(self, timeout: float) -> None:
        """Polls /readyz: the port opens once the model is loaded and warmed up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vitkit serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"vitkit serve was not ready after {timeout:g} s:\n{self.log()}")
