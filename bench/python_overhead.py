#!/usr/bin/env python3
"""Per-call time of a model run through Python (quarry.Engine.run) against the command-line tool's
in-process time (`quarry bench`, which times the compiled graph inside the tool), interleaved
round by round on this shared machine.

    python3 bench/python_overhead.py [--model resnet50] [--batch 8] [--rounds 5] [--seconds 4]
    python3 bench/python_overhead.py --model plain_cnn --batch 1     # the cost of a call itself

Needs the package installed (`python3 -m pip install ./python`) and the release tool built with
the same flags (the plain `swift build -c release`, as scripts/build-libquarry.sh builds the library);
QUARRY_CLI names another tool.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

import quarry

REPO = Path(__file__).resolve().parents[1]


def cli_median_ms(cli: str, model: str, batch: int, seconds: float, threads: int) -> float:
    out = subprocess.run([cli, "bench", model, "--batch", str(batch), "--device", "cpu", "--cpu-threads", str(threads),
                          "--seconds", str(seconds), "--no-profile", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    runs = figures["runs"] if isinstance(figures, dict) and "runs" in figures else figures
    return float(runs[0]["median_ms"] if isinstance(runs, list) else runs["median_ms"])


def python_median_ms(engine: quarry.Engine, feed: dict, seconds: float) -> float:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        engine.run(feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cli = os.environ.get("QUARRY_CLI", str(REPO / ".build" / "release" / "quarry"))

    engine = quarry.Engine(args.model, cpu_threads=args.threads)
    name, _, shape = engine.inputs[0]
    feed = {name: np.random.default_rng(1).standard_normal((args.batch, *shape[1:]), dtype=np.float32)}
    for _ in range(2):  # the first run plans memory and packs weights, as bench's warm-up runs
        engine.run(feed)
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    print(f"{args.model} batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s each way; CPU {cpu}")
    ratios, differences = [], []
    for r in range(args.rounds):
        tool = cli_median_ms(cli, args.model, args.batch, args.seconds, args.threads)
        python = python_median_ms(engine, feed, args.seconds)
        ratios.append(python / tool)
        differences.append((python - tool) * 1e3)
        print(f"round {r + 1}: tool in-process median {tool:.3f} ms, Python Engine.run median {python:.3f} ms, "
              f"ratio {python / tool:.4f} (load {os.getloadavg()[0]:.1f})")
    print(f"median ratio Python / tool: {statistics.median(ratios):.4f} "
          f"(min {min(ratios):.4f}, max {max(ratios):.4f}); median difference {statistics.median(differences):.0f} us a call")


if __name__ == "__main__":
    main()
