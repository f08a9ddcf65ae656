"""Serving benchmark: in-process latency/throughput, then Gunicorn over HTTP at concurrency
1, 8 and 32, with memory per worker, for the TensorFlow and LiteRT runtimes, with the model's
input gate on and off (``CHESTX_GATE``).

    .venv/bin/python benchmarks/serve_bench.py [--model DIR] [--runtimes tensorflow litert]
                                               [--gate on off] [--json out.json]

Not a test: it prints real measurements of this machine and checks them against the targets
of the web-service issue:
  * HTTP throughput at concurrency 32 >= 0.8 x in-process batched images/s
  * HTTP p50 at concurrency 1 <= in-process single-image latency + 15 ms
  * ready (GET /readyz = 200) within 15 s of start
  * the input gate adds <= 3 ms per image at concurrency 1 (in-process single-image p50, gate
    on minus off) and costs <= 10 % of HTTP throughput at concurrency 32

"In-process" means the same work per image as the server does: decode + resize + CLAHE
(``Predictor.prepare``) and the model (``predict_batch``); model-only figures are printed too.
Throughputs are the best of a few trials, in-process and over HTTP alike, because a shared
machine's other load only ever makes a run slower.
Without a shipped model (``chestx/default_model``) it benchmarks an untrained chestnet of the
default architecture and size, which is exactly as fast as a trained one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRIALS = 3  # throughput: best of this many runs in-process, best of 2 per HTTP level
XRAYS = REPO / "tests" / "resources" / "xrays"


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))  # ms


def rss_mb(pid: int | None = None) -> dict:
    import psutil

    p = psutil.Process(pid)
    info = p.memory_full_info()
    return {
        "rss": info.rss / 2**20,
        "pss": getattr(info, "pss", info.rss) / 2**20,
        "uss": info.uss / 2**20,
    }


def ensure_model(path: str | None, workdir: Path) -> Path:
    from chestx import config

    model_dir = config.model_dir(path)
    if (model_dir / "card.json").is_file():
        return model_dir
    print(
        f"# no model at {model_dir}: building an untrained chestnet "
        f"{config.DEFAULT_IMAGE_SIZE} px (same architecture and speed as the shipped one)"
    )
    import keras

    from chestx.litert import export_litert
    from chestx.modeldir import save_model
    from chestx.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("chestnet", config.DEFAULT_IMAGE_SIZE)
    out = workdir / "untrained-chestnet"
    save_model(
        model,
        out,
        {
            "name": "chestnet-untrained",
            "version": "bench",
            "image_size": config.DEFAULT_IMAGE_SIZE,
            "intensity": config.DEFAULT_INTENSITY,
            "threshold": 0.5,
        },
        h5=False,
    )
    export_litert(model, out)
    return out


# -- in-process ----------------------------------------------------------------------------
def in_process(
    model_dir: Path, runtime: str, files: list[bytes], batch: int, repeats: int, gate: bool = True
) -> dict:
    """Run in a child process so each runtime's memory is measured alone."""
    code = f"""
import json, sys, time, numpy as np
sys.path.insert(0, {str(REPO / "benchmarks")!r})
from serve_bench import _in_process_child
print(json.dumps(_in_process_child({str(model_dir)!r}, {runtime!r}, {batch}, {repeats},
                                   {gate!r})))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in_process_child(
    model_dir: str, runtime: str, batch: int, repeats: int, gate: bool = True
) -> dict:
    from chestx.predict import Predictor

    files = [p.read_bytes() for p in sorted(XRAYS.glob("*/*.jpeg"))]
    t0 = time.perf_counter()
    predictor = Predictor(model_dir, runtime=runtime, gate=gate)
    predictor.warm_up()
    load_s = time.perf_counter() - t0
    for data in files[:3]:
        predictor.predict_bytes(data)
    # Interleaved, so both figures see the same load from whatever else runs on the machine.
    image = predictor.prepare(files[0])[np.newaxis]
    single, model_single = [], []
    for i in range(repeats):
        data = files[i % len(files)]
        t = time.perf_counter()
        predictor.predict_bytes(data)
        single.append(time.perf_counter() - t)
        t = time.perf_counter()
        predictor.predict_batch(image)
        model_single.append(time.perf_counter() - t)
    stream = (files * (1 + 8 * batch // len(files)))[: 8 * batch]
    images = np.stack([predictor.prepare(d) for d in stream])
    predictor.predict_batch(images[:batch])  # trace the batch shape
    batched, model_batched = [], []
    for _ in range(TRIALS):  # best of TRIALS: the least disturbed run
        t = time.perf_counter()
        for start in range(0, len(stream), batch):
            chunk = stream[start : start + batch]
            predictor.predict_batch(np.stack([predictor.prepare(d) for d in chunk]))
        batched.append(len(stream) / (time.perf_counter() - t))
        t = time.perf_counter()
        for start in range(0, len(images), batch):
            predictor.predict_batch(images[start : start + batch])
        model_batched.append(len(images) / (time.perf_counter() - t))
    batched, model_batched = max(batched), max(model_batched)
    gate_cost = _gate_cost(predictor, files, stream, batch, repeats) if predictor.gating else None
    return {
        "runtime": runtime,
        "gate": predictor.gate_info["status"],
        "load_s": load_s,
        "gate_cost": gate_cost,
        "single_p50_ms": percentile(single, 50),
        "single_p95_ms": percentile(single, 95),
        "model_single_p50_ms": percentile(model_single, 50),
        "batched_ips": batched,
        "model_batched_ips": model_batched,
        "memory_mb": rss_mb(),
        "batch": batch,
    }


def _gate_cost(
    predictor, files: list[bytes], stream: list[bytes], batch: int, repeats: int
) -> dict:
    """The gate's cost, measured with the gate on and off *interleaved* in one process, so both
    sides see the same load from whatever else runs on the machine: single-image latency
    (median of paired differences) and batched images/s (best of TRIALS each)."""

    def single() -> float:
        t = time.perf_counter()
        predictor.predict_bytes(data)
        return time.perf_counter() - t

    diffs, on_ms, off_ms = [], [], []
    for i in range(repeats):
        data = files[i % len(files)]
        predictor.gate_enabled = True
        on = single()
        predictor.gate_enabled = False
        off = single()
        diffs.append(on - off)
        on_ms.append(on)
        off_ms.append(off)
    rates = {True: [], False: []}
    for _ in range(TRIALS):
        for enabled in (True, False):
            predictor.gate_enabled = enabled
            t = time.perf_counter()
            for start in range(0, len(stream), batch):
                chunk = stream[start : start + batch]
                predictor.predict_batch(np.stack([predictor.prepare(d) for d in chunk]))
            rates[enabled].append(len(stream) / (time.perf_counter() - t))
    predictor.gate_enabled = True
    return {
        "single_on_p50_ms": percentile(on_ms, 50),
        "single_off_p50_ms": percentile(off_ms, 50),
        "single_added_ms": percentile(diffs, 50),
        "batched_on_ips": max(rates[True]),
        "batched_off_ips": max(rates[False]),
    }


# -- over HTTP -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="x.jpeg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


class Server:
    def __init__(
        self,
        model_dir: Path,
        runtime: str,
        workers: int,
        threads: int,
        batch: int,
        log: Path,
        gate: bool = True,
    ):
        self.port = free_port()
        env = {
            **os.environ,
            "CHESTX_MODEL_DIR": str(model_dir),
            "CHESTX_RUNTIME": runtime,
            "CHESTX_GATE": "on" if gate else "off",
            "CHESTX_WORKERS": str(workers),
            "CHESTX_THREADS": str(threads),
            "CHESTX_BATCH_SIZE": str(batch),
            "CHESTX_BIND": f"127.0.0.1:{self.port}",
            "CHESTX_ACCESS_LOG": "0",
            "CHESTX_MAX_REQUESTS": "0",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = open(log, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chestx", "serve"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def wait_ready(self, timeout=120.0) -> float:
        while time.monotonic() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited; see its log")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    # every worker ready: the metrics gauge sums over workers
                    return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server not ready")

    def workers_ready(self, n: int, timeout=120.0) -> None:
        while time.monotonic() - self.t0 < timeout:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            for line in text.splitlines():
                if line.startswith("chestx_worker_ready ") and float(line.split()[1]) >= n:
                    return
            time.sleep(0.2)
        raise TimeoutError("not all workers became ready")

    def memory(self) -> dict:
        import psutil

        master = psutil.Process(self.proc.pid)
        workers = [rss_mb(c.pid) for c in master.children()]
        return {"master": rss_mb(self.proc.pid), "workers": workers}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def load(port: int, bodies: list[tuple[bytes, str]], concurrency: int, requests: int) -> dict:
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, ctype = bodies[i % len(bodies)]
            t = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status != 200:
                    errors.append(resp.status)
                    continue
                json.loads(payload)
            except OSError as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def over_http(
    model_dir: Path,
    runtime: str,
    workers: int,
    threads: int,
    batch: int,
    files: list[bytes],
    scale: float,
    logdir: Path,
    gate: bool = True,
) -> dict:
    server = Server(
        model_dir,
        runtime,
        workers,
        threads,
        batch,
        logdir / f"server-{runtime}-{workers}w-gate{int(gate)}.log",
        gate,
    )
    try:
        ready = server.wait_ready()
        server.workers_ready(workers)
        bodies = [multipart(d) for d in files]
        load(server.port, bodies, 4, 40)  # warm every worker's threads and batch shapes
        levels = []
        for concurrency, n in ((1, 100), (8, 240), (32, 480)):
            trials = [
                load(server.port, bodies, concurrency, max(concurrency, int(n * scale)))
                for _ in range(2)
            ]
            levels.append(max(trials, key=lambda t: t["rps"]))
        memory = server.memory()
        return {
            "runtime": runtime,
            "workers": workers,
            "threads": threads,
            "ready_s": ready,
            "levels": levels,
            "memory_mb": memory,
        }
    finally:
        server.stop()


# -- report --------------------------------------------------------------------------------
def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB "
        f"RAM, no GPU, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, load average at start "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", f"Model: {results['model']}", ""]
    lines.append(
        "| runtime | in-process single p50 (model only) | in-process batched img/s "
        "(model only) | ready | c | req/s | p50 | p95 | p99 | RSS/worker (PSS) | "
        "master RSS |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for rt, r in results["runtimes"].items():
        ip, h = r["in_process"], r["http"]
        workers = h["memory_mb"]["workers"]
        rss = " / ".join(f"{w['rss']:.0f} ({w['pss']:.0f})" for w in workers)
        head = [
            f"{rt} ({h['workers']} w, gate {ip['gate']})",
            f"{ip['single_p50_ms']:.1f} ms ({ip['model_single_p50_ms']:.1f})",
            f"{ip['batched_ips']:.0f} ({ip['model_batched_ips']:.0f})",
            f"{h['ready_s']:.1f} s",
        ]
        tail = [rss + " MB", f"{h['memory_mb']['master']['rss']:.0f} MB"]
        for i, lv in enumerate(h["levels"]):
            cells = head if i == 0 else [""] * len(head)
            cells = cells + [
                str(lv["concurrency"]),
                f"{lv['rps']:.1f}",
                f"{lv['p50_ms']:.1f} ms",
                f"{lv['p95_ms']:.1f} ms",
                f"{lv['p99_ms']:.1f} ms",
            ]
            cells += tail if i == 0 else [""] * len(tail)
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for rt, r in results["runtimes"].items():
        ip, h = r["in_process"], r["http"]
        c1 = h["levels"][0]
        c32 = h["levels"][-1]
        checks = [
            (
                f"c32 throughput {c32['rps']:.1f} >= 0.8 x in-process {ip['batched_ips']:.1f} "
                f"= {0.8 * ip['batched_ips']:.1f}",
                c32["rps"] >= 0.8 * ip["batched_ips"],
            ),
            (
                f"c1 p50 {c1['p50_ms']:.1f} ms <= single {ip['single_p50_ms']:.1f} + 15 ms",
                c1["p50_ms"] <= ip["single_p50_ms"] + 15,
            ),
            (f"ready in {h['ready_s']:.1f} s <= 15 s", h["ready_s"] <= 15),
            (
                f"no failed requests ({sum(lv['errors'] for lv in h['levels'])})",
                not any(lv["errors"] for lv in h["levels"]),
            ),
        ]
        cost = ip.get("gate_cost")
        if cost:
            ratio = cost["batched_on_ips"] / cost["batched_off_ips"]
            checks += [
                (
                    f"gate adds {cost['single_added_ms']:.2f} ms per image "
                    f"(in-process, gate on/off interleaved: single p50 "
                    f"{cost['single_on_p50_ms']:.1f} vs "
                    f"{cost['single_off_p50_ms']:.1f} ms) <= 3 ms",
                    cost["single_added_ms"] <= 3,
                ),
                (
                    f"gate keeps {ratio:.3f} of batched throughput (in-process, interleaved: "
                    f"{cost['batched_on_ips']:.1f} vs {cost['batched_off_ips']:.1f} img/s) >= 0.9",
                    ratio >= 0.9,
                ),
            ]
        off = results["runtimes"].get(f"{rt}, gate off") if not rt.endswith("gate off") else None
        if off and ip["gate"] == "on":
            added = ip["single_p50_ms"] - off["in_process"]["single_p50_ms"]
            c32_off = off["http"]["levels"][-1]["rps"]
            checks += [
                (
                    f"gate adds {added:.2f} ms <= 3 ms (in-process single p50, separate runs)",
                    added <= 3,
                ),
                (
                    f"gate c32 HTTP throughput {c32['rps']:.1f} >= 0.9 x gate-off {c32_off:.1f} "
                    f"= {0.9 * c32_off:.1f}",
                    c32["rps"] >= 0.9 * c32_off,
                ),
            ]
        for text, ok in checks:
            lines.append(f"{rt}: {'PASS' if ok else 'FAIL'} {text}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: shipped)")
    parser.add_argument(
        "--runtimes", nargs="+", default=["tensorflow", "litert"], choices=["tensorflow", "litert"]
    )
    parser.add_argument(
        "--gate",
        nargs="+",
        default=["on", "off"],
        choices=["on", "off"],
        help="run with the input gate on, off, or both (CHESTX_GATE)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Gunicorn workers (default: CHESTX_WORKERS or 2)"
    )
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument(
        "--batch", type=int, default=16, help="micro-batch size (server) and in-process batch size"
    )
    parser.add_argument("--repeats", type=int, default=60, help="single-image repetitions")
    parser.add_argument("--scale", type=float, default=1.0, help="scale the request counts")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    workers = args.workers or int(os.environ.get("CHESTX_WORKERS", "2"))

    work = Path(tempfile.mkdtemp(prefix="chestx-bench-"))
    model_dir = ensure_model(args.model, work)
    card = json.loads((model_dir / "card.json").read_text())
    files = [p.read_bytes() for p in sorted(XRAYS.glob("*/*.jpeg"))]
    results = {
        "machine": machine(),
        "model": f"{card.get('name')} {card.get('version')} "
        f"({card['image_size']} px) from {model_dir}",
        "runtimes": {},
    }
    for runtime in args.runtimes:
        if runtime == "litert" and not (model_dir / "model.tflite").is_file():
            print(f"# skipping litert: {model_dir} has no model.tflite")
            continue
        for gate in args.gate:
            key = runtime if gate == "on" else f"{runtime}, gate off"
            print(f"# {key}: in-process ...", flush=True)
            ip = in_process(model_dir, runtime, files, args.batch, args.repeats, gate == "on")
            print(f"# {key}: over HTTP with {workers} worker(s) ...", flush=True)
            h = over_http(
                model_dir,
                runtime,
                workers,
                args.threads,
                args.batch,
                files,
                args.scale,
                work,
                gate == "on",
            )
            results["runtimes"][key] = {"in_process": ip, "http": h}
    text = report(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
