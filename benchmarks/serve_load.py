"""Load test of `vitkit serve` on loopback: batching off, dynamic batching (one worker, then more) and the offline
batched ceiling (`vitkit bench`, same backend and batch), with 1, 8 and 32 concurrent httpx clients; LitServe
serving the same model, decoding and forward beside it when `import litserve` works.

    python benchmarks/serve_load.py                 # tiny CIFAR ViT and ViT-S/16 (~15 min on 2 cores, at most ~40)
    python benchmarks/serve_load.py --model vit_cifar_patch4_32 --requests 32 --clients 1 8 --workers 1 \\
        --no-litserve --min-time 0.2 --repeats 1                          # a quick look (~1 min)

Every server starts on a free loopback port (127.0.0.1 only) and each cell sends a fixed number of requests
(--requests) or stops sending after --max-seconds, whichever comes first. Every request sent is accounted for:
answered 200 or refused with an explicit 503 or 504; any other answer, and any request lost to a connection error,
is counted and makes the run fail (exit 1), as does a vitkit server whose /metrics counts other 200s than the
clients saw. Each cell reports images/s (200s per wall second), p50/p95/p99 latency of the 200s, the share of the
offline ceiling and the p99 bound max_wait_ms + 3 x one batch's compute time (batch / ceiling img/s). The first
server resolves --backend auto; every later server, LitServe and the ceiling use the backend it chose. The load
generator shares the machine's cores with the server. Prints a table and the issue's targets; writes
benchmarks/results/serve_load.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import torch
from PIL import Image

from vitkit import create_model, save_pretrained
from vitkit.models import is_preset
from vitkit.report import format_table, write_json
from vitkit.serve.process import ServerProcess

from side_by_side import environment

HERE = Path(__file__).parent


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["vit_cifar_patch4_32", "vit_small_patch16_224"],
                        help="presets (seed-0 weights) or checkpoints/run folders")
    parser.add_argument("--requests", type=int, default=256, help="requests per cell")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="stop sending after this long per cell")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts for the dynamic-batching server (the cores are split between them)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--backend", default="auto", help="auto or a backend name (see `vitkit serve --help`)")
    parser.add_argument("--image", help="image file every request sends (default: a synthetic JPEG at the size the "
                                        "model resizes to before its centre crop)")
    parser.add_argument("--no-litserve", action="store_true", help="skip the LitServe peer even if installed")
    parser.add_argument("--min-time", type=float, default=2.0, help="`vitkit bench` seconds per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="`vitkit bench` timed repeats")
    parser.add_argument("--out", default=str(HERE / "results" / "serve_load.json"))
    return parser.parse_args()


# ----- what is served ------------------------------------------------------------------------------------------------
def checkpoint_for(model: str, scratch: Path) -> tuple[Path, str | None]:
    """A checkpoint folder for --model (a preset is saved with seed-0 weights) and its preset name (for bench)."""
    if Path(model).exists():
        from vitkit.checkpoints import resolve_checkpoint

        folder = resolve_checkpoint(model)
        config = folder / "config.json" if folder.is_dir() else None
        preset = json.loads(config.read_text()).get("preset") if config and config.is_file() else None
        return folder, preset
    if not is_preset(model):
        raise SystemExit(f"--model {model}: neither a path nor a preset (see `vitkit models`)")
    torch.manual_seed(0)
    return save_pretrained(create_model(model), scratch / model), model


def request_image(path: str | None, checkpoint: Path) -> bytes:
    """--image's bytes, else a smooth synthetic JPEG as large as the model's eval resize (what a client would send
    after a sensible client-side resize)."""
    if path:
        return Path(path).read_bytes()
    from vitkit.checkpoints import from_pretrained
    from vitkit.data.transforms import scale_size

    model = from_pretrained(checkpoint)
    height, width = scale_size(model.cfg.img_size, model.preprocess.crop_pct)
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    buffer = io.BytesIO()
    Image.fromarray((smooth[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ----- the load ------------------------------------------------------------------------------------------------------
async def drive(url: str, image: bytes, clients: int, requests: int, max_seconds: float,
                timeout: float) -> tuple[list[tuple[str, float]], float]:
    """`clients` concurrent httpx clients sending multipart uploads until `requests` are sent or time is up;
    (outcome, seconds) for every request sent, outcome a status code or an error's name; and the wall time."""
    outcomes: list[tuple[str, float]] = []
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds

        async def one_client() -> None:
            nonlocal sent
            while sent < requests and loop.time() < deadline:
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, files={"file": ("image.jpg", image, "image/jpeg")})
                    outcomes.append((str(response.status_code), time.perf_counter() - start))
                except httpx.HTTPError as error:
                    outcomes.append((type(error).__name__, time.perf_counter() - start))
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - start
    assert len(outcomes) == sent, f"{sent} sent but {len(outcomes)} accounted for"
    return outcomes, wall


def summarise(outcomes: list[tuple[str, float]], wall: float) -> dict[str, Any]:
    """Counts by outcome, images/s of the 200s, and their latency percentiles in ms."""
    latencies = np.array([seconds for outcome, seconds in outcomes if outcome == "200"]) * 1000
    kinds = [outcome for outcome, _ in outcomes]
    counts = {"sent": len(kinds), "ok": kinds.count("200"), "refused_503": kinds.count("503"),
              "timed_out_504": kinds.count("504")}
    counts["other_status"] = sum(o.isdigit() and o not in ("200", "503", "504") for o in kinds)
    counts["lost"] = sum(not o.isdigit() for o in kinds)  # no answer at all: a connection error
    counts["unexpected"] = sorted({o for o in kinds if o not in ("200", "503", "504")})
    percentiles = np.percentile(latencies, [50, 95, 99]) if len(latencies) else [float("nan")] * 3
    return counts | {"img_s": counts["ok"] / wall, "wall_s": wall, "p50_ms": percentiles[0], "p95_ms": percentiles[1],
                     "p99_ms": percentiles[2]}


def served_200s(url: str) -> float:
    """The /v1/classify 200s the server itself counted (its Prometheus counter)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "vitkit_requests_total" and s.labels.get("endpoint") == "/v1/classify"
               and s.labels.get("status") == "200")


def measure(name: str, base: str, path: str, image: bytes, args: argparse.Namespace, **facts: Any) -> list[dict]:
    """Every client count against one running server (warmed up first), as records."""
    records = []
    asyncio.run(drive(base + path, image, max(args.clients), 2 * max(args.clients), 60, 120))  # warm-up
    for clients in args.clients:
        before = served_200s(base) if name != "litserve" else None
        outcomes, wall = asyncio.run(drive(base + path, image, clients, args.requests, args.max_seconds, 120))
        record = dict(server=name, clients=clients, **facts, **summarise(outcomes, wall))
        if before is not None:
            record["server_counted_ok"] = served_200s(base) - before
        records.append(record)
        print(f"  {name:>13} x{facts.get('workers', 1)} clients {clients:>3}: {record['img_s']:7.1f} img/s, "
              f"p99 {record['p99_ms']:8.1f} ms, {record['ok']}/{record['sent']} ok", flush=True)
    return records


# ----- the servers ---------------------------------------------------------------------------------------------------
def vitkit_flags(args: argparse.Namespace, backend: str, batch: int, wait: float, workers: int) -> list[str]:
    return ["--backend", backend, "--max-batch-size", str(batch), "--max-wait-ms", str(wait), "--workers",
            str(workers), "--max-queue", str(max(256, 2 * max(args.clients))), "--no-access-log"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def litserve_server(checkpoint: Path, backend: str, args: argparse.Namespace) -> Iterator[str]:
    """serve_litserve.py: LitServe with one inference worker around vitkit's decoding and forward; its base URL."""
    port = free_port()
    command = [sys.executable, str(HERE / "serve_litserve.py"), str(checkpoint), "--port", str(port), "--backend",
               backend, "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"LitServe did not come up:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base
    finally:  # LitServe runs its API server and inference worker as child processes: stop the whole group
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


# ----- the ceiling ---------------------------------------------------------------------------------------------------
def offline_ceiling(preset: str | None, backend: str, batch: int, args: argparse.Namespace,
                    scratch: Path) -> tuple[float | None, str]:
    """`vitkit bench PRESET --backend BACKEND --batch B`: images/s with no HTTP, no decoding, no waiting."""
    if preset is None:
        return None, "no preset recorded in the checkpoint: `vitkit bench` needs one, no ceiling"
    out = scratch / "bench.json"
    command = [sys.executable, "-m", "vitkit", "bench", preset, "--backend", backend, "--batch", str(batch),
               "--json", str(out), "--min-time", str(args.min_time), "--repeats", str(args.repeats)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    records = json.loads(out.read_text())
    rate = next(r["img_s"] for r in records if r["impl"].split()[0] == backend)
    return rate, " ".join(command[2:-6])


# ----- one model ------------------------------------------------------------------------------------------------------
def load_test(model: str, args: argparse.Namespace, litserve_note: str | None) -> list[dict]:
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        checkpoint, preset = checkpoint_for(model, scratch)
        image = request_image(args.image, checkpoint)
        backend = args.backend
        print(f"{model}: {len(image) / 1024:.1f} KB per request", flush=True)
        settings = [("batching off", 1, 0.0, 1)] + [("dynamic", args.max_batch_size, args.max_wait_ms, workers)
                                                    for workers in args.workers]
        for name, batch, wait, workers in settings:
            with ServerProcess([str(checkpoint), *vitkit_flags(args, backend, batch, wait, workers)]) as server:
                backend = httpx.get(f"{server.url}/v1/model").json()["backend"]  # auto resolved once, then kept
                records += measure(name, server.url, "/v1/classify", image, args, workers=workers, batch=batch,
                                   wait_ms=wait)
        if litserve_note is None:
            with litserve_server(checkpoint, backend, args) as base:
                records += measure("litserve", base, "/predict", image, args, workers=1, batch=args.max_batch_size,
                                   wait_ms=args.max_wait_ms)
        ceiling, command = offline_ceiling(preset, backend, args.max_batch_size, args, scratch)
    for record in records:
        record.update(model=model, backend=backend, ceiling_img_s=ceiling, ceiling_command=command)
        record["ceiling_share"] = record["img_s"] / ceiling if ceiling else None
        batch_ms = 1000 * args.max_batch_size / ceiling if ceiling else None
        record["p99_bound_ms"] = args.max_wait_ms + 3 * batch_ms if batch_ms else None
    return records


def verdicts(records: list[dict], args: argparse.Namespace) -> list[str]:
    """The issue's targets, each checked where this run measured it."""
    lines = []
    top = max(args.clients)
    for model in dict.fromkeys(r["model"] for r in records):
        cells = {(r["server"], r["workers"], r["clients"]): r for r in records if r["model"] == model}
        dynamic, off = cells.get(("dynamic", 1, top)), cells.get(("batching off", 1, top))
        if dynamic and dynamic["ceiling_share"] is not None:
            lines.append(f"{model}: dynamic batching at {top} clients reaches {100 * dynamic['ceiling_share']:.0f} % "
                         f"of the offline ceiling ({dynamic['ceiling_img_s']:.1f} img/s; target >= 85 % for ViT-S/16)")
        if dynamic and off:
            lines.append(f"{model}: dynamic batching is {dynamic['img_s'] / off['img_s']:.2f}x the batch-1 server at "
                         f"{top} clients (target >= 2x on the tiny model)")
        if dynamic and dynamic["p99_bound_ms"] is not None:
            verdict = "within" if dynamic["p99_ms"] <= dynamic["p99_bound_ms"] else "OVER"
            lines.append(f"{model}: p99 {dynamic['p99_ms']:.0f} ms at {top} clients, bound "
                         f"{dynamic['p99_bound_ms']:.0f} ms (max_wait_ms + 3 batches): {verdict}")
        peer = cells.get(("litserve", 1, top))
        if dynamic and peer and peer["img_s"] > 0:
            lines.append(f"{model}: vitkit serve / LitServe = {dynamic['img_s'] / peer['img_s']:.2f}x img/s, p99 "
                         f"{dynamic['p99_ms']:.0f} vs {peer['p99_ms']:.0f} ms at {top} clients (goal: ahead)")
        scaled = [r for r in records if r["model"] == model and r["server"] == "dynamic" and r["clients"] == top]
        if len(scaled) > 1:
            lines.append(f"{model}: workers at {top} clients: " + ", ".join(
                f"{r['workers']} -> {r['img_s']:.1f} img/s" for r in sorted(scaled, key=lambda r: r["workers"])))
    return lines


def main() -> int:
    args = parse()
    litserve_note = "skipped (--no-litserve)" if args.no_litserve else None
    if litserve_note is None:
        try:
            importlib.import_module("litserve")
        except ImportError as error:
            litserve_note = f"skipped: litserve does not import ({error}); `pip install litserve` to compare"
    records = [record for model in args.model for record in load_test(model, args, litserve_note)]
    rows = [[r["model"], r["server"], r["workers"], r["clients"], r["sent"], r["ok"], r["refused_503"],
             r["timed_out_504"], r["other_status"] + r["lost"], round(r["img_s"], 1),
             "n/a" if r["ceiling_share"] is None else round(100 * r["ceiling_share"], 1), round(r["p50_ms"], 1),
             round(r["p95_ms"], 1), round(r["p99_ms"], 1),
             "n/a" if r["p99_bound_ms"] is None else round(r["p99_bound_ms"], 1)] for r in records]
    print(format_table(rows, ["model", "server", "workers", "clients", "sent", "200", "503", "504", "other", "img/s",
                              "% ceiling", "p50 ms", "p95 ms", "p99 ms", "p99 bound ms"]))
    for model in dict.fromkeys(r["model"] for r in records):
        first = next(r for r in records if r["model"] == model)
        ceiling = "n/a" if first["ceiling_img_s"] is None else f"{first['ceiling_img_s']:.1f} img/s"
        print(f"{model}: backend {first['backend']}, offline ceiling {ceiling} ({first['ceiling_command']})")
    lines = verdicts(records, args)
    print("\n".join(lines))
    print(f"LitServe: {litserve_note or 'measured (same ServedModel, its own batching)'}")
    problems = [f"{r['model']} {r['server']} x{r['workers']} {r['clients']} clients: {r['lost']} lost, "
                f"{r['other_status']} other answers ({', '.join(r['unexpected'])})" for r in records
                if r["lost"] or r["other_status"]]
    problems += [f"{r['model']} {r['server']} x{r['workers']} {r['clients']} clients: the server counted "
                 f"{r['server_counted_ok']:.0f} 200s, the clients {r['ok']}" for r in records
                 if r.get("server_counted_ok") is not None and r["server_counted_ok"] != r["ok"]]
    print("\n".join(problems) if problems else "every request sent was answered 200, 503 or 504; none lost")
    env = environment(cpu_count=os.cpu_count(), litserve=litserve_note or "measured", targets=lines)
    print(f"\nwritten to {write_json(args.out, dict(environment=env, results=records))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
