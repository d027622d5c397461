#!/usr/bin/env python3
"""Quarry's CPU path against onnxruntime on the same ONNX files, same thread count, alternating.

For every model and batch size (files from bench/make_peer_models.py: NAME.onnx with a symbolic
batch, else NAME_bB.onnx) it times
onnxruntime (intra_op_num_threads = --threads, sequential execution, all graph optimisations) in
this process and `quarry bench FILE --batch B --device cpu --cpu-threads T --json --no-profile` in
a subprocess, one after the other, --rounds times, and prints the best items/s of each and their
ratio. With --check it first runs every file once through `quarry run` on .npy inputs and compares
the outputs with onnxruntime's (max |quarry - ort| / max |ort|, and the largest element-wise
relative error where |ort| is above 1e-3 of the largest value).

    swift build -c release --product quarry
    python3 bench/make_peer_models.py --out bench/out/peer --dynamic
    python3 bench/peer_onnxruntime.py --dir bench/out/peer --check

The machine may be shared: both engines see the same load only on average, so repeat (--rounds)
and read the ratio, not the absolute figures.

With --baseline OTHER_QUARRY, another build of the tool (an earlier commit's) joins the alternation,
and the table adds quarry/baseline: a change's effect measured in the same run as the peer.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

MODELS = ["resnet50", "mobilenet_v2", "vgg16", "bert_base", "lstm"]


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def inputs_for(sess, batch, seed=1):
    """Random inputs like quarry bench's: token ids below 1000, masks of ones, floats N(0, 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        if "int64" in i.type:
            if "mask" in i.name.lower():
                feeds[i.name] = np.ones(shape, np.int64)
            else:
                feeds[i.name] = rng.integers(0, 1000, shape, dtype=np.int64)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_ort(sess, feeds, batch, seconds, warmup=2, min_iterations=5):
    for _ in range(warmup):
        sess.run(None, feeds)
    n, start = 0, time.perf_counter()
    latencies = []
    while n < min_iterations or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
        n += 1
    total = time.perf_counter() - start
    return batch * n / total, float(np.median(latencies)) * 1e3


def time_quarry(quarry, path, batch, seconds, threads, precision="fp32"):
    cmd = [quarry, "bench", path, "--batch", str(batch), "--device", "cpu", "--cpu-threads", str(threads),
           "--json", "--no-profile", "--seconds", str(seconds), "--precision", precision]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()[-3000:]}")
    report = json.loads(r.stdout.strip().splitlines()[-1])
    return report["items_per_second"], report["median_ms"]


def check(quarry, path, sess, batch, threads, precision="fp32"):
    """Quarry's outputs against onnxruntime's (fp32) on the same inputs. In fp32 the verdict is on
    the largest difference (1e-4 of the largest value); in a reduced precision on the cosine
    similarity of every item's output to onnxruntime's (at least 0.999)."""
    feeds = inputs_for(sess, batch, seed=7)
    expected = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    with tempfile.TemporaryDirectory() as tmp:
        args = [quarry, "run", path, "--output-dir", os.path.join(tmp, "out"), "--cpu-threads", str(threads),
                "--precision", precision]
        for k, v in feeds.items():
            f = os.path.join(tmp, k + ".npy")
            np.save(f, v)
            args += ["--input", f"{k}={f}"]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            return f"quarry run failed ({r.returncode}): {r.stderr.strip()[-3000:]}"
        lines = []
        for name, e in zip(names, expected):
            got = np.load(os.path.join(tmp, "out", name + ".npy"))
            if got.shape != e.shape:
                lines.append(f"{name}: shape {got.shape} != onnxruntime {e.shape}")
                continue
            scale = float(np.abs(e).max())
            diff = np.abs(got.astype(np.float64) - e)
            big = np.abs(e) > 1e-3 * scale
            elem = float((diff[big] / np.abs(e[big])).max()) if big.any() else 0.0
            rel = float(diff.max()) / max(scale, 1e-30)
            if precision == "fp32":
                verdict = "ok" if rel <= 1e-4 else "MISMATCH"
                lines.append(f"{name}: max|diff|/max|ort| = {rel:.2e}, max element rel = {elem:.2e} ({verdict})")
            else:
                # Items along the batch dimension (the first whose size is the batch).
                axis = next((i for i, d in enumerate(e.shape) if d == batch), 0)
                g = np.moveaxis(got.astype(np.float64), axis, 0).reshape(e.shape[axis], -1)
                w = np.moveaxis(e.astype(np.float64), axis, 0).reshape(e.shape[axis], -1)
                cos = (g * w).sum(1) / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1), 1e-300)
                verdict = "ok" if cos.min() >= 0.999 else "BELOW 0.999"
                lines.append(f"{name}: {precision} cosine to onnxruntime fp32 per item min {cos.min():.6f} "
                             f"mean {cos.mean():.6f}, max|diff|/max|ort| = {rel:.2e} ({verdict})")
        return "; ".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="bench/out/peer")
    p.add_argument("--quarry", default=".build/release/quarry")
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="alternations of onnxruntime and quarry per model and batch")
    p.add_argument("--seconds", type=float, default=3, help="timed seconds per measurement")
    p.add_argument("--check", action="store_true", help="compare outputs with onnxruntime first")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--precision", default="fp32", help="quarry's --precision (fp32, or bf16 on AVX512_BF16 hosts); onnxruntime runs fp32")
    p.add_argument("--baseline", help="another quarry build to time in the same alternation (e.g. the commit before a change)")
    a = p.parse_args()

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"onnxruntime {ort.__version__} (fp32), quarry {a.precision}, {a.threads} threads, "
          f"load average {load:.1f} at start", flush=True)
    rows = []
    for model in a.models:
        for batch in a.batches:
            path = os.path.join(a.dir, f"{model}.onnx")
            if not os.path.exists(path):
                path = os.path.join(a.dir, f"{model}_b{batch}.onnx")
            if not os.path.exists(path):
                print(f"{path}: missing (run bench/make_peer_models.py)", flush=True)
                continue
            sess = session(path, a.threads)
            if a.check:
                print(f"{model} b{batch} check: {check(a.quarry, path, sess, batch, a.threads, a.precision)}", flush=True)
            feeds = inputs_for(sess, batch)
            best_o, best_q, best_b, err = 0.0, 0.0, 0.0, None
            for r in range(a.rounds):
                # Alternate which engine goes first so that neither always follows a warm cache.
                order = ["ort", "quarry"] + (["baseline"] if a.baseline else [])
                if r % 2 == 1:
                    order.reverse()
                for engine in order:
                    if engine == "ort":
                        ips, ms = time_ort(sess, feeds, batch, a.seconds)
                        best_o = max(best_o, ips)
                    elif engine == "baseline":
                        try:
                            ips, ms = time_quarry(a.baseline, path, batch, a.seconds, a.threads)
                            best_b = max(best_b, ips)
                        except RuntimeError as e:
                            print(f"{model} b{batch}: baseline failed: {e}", flush=True)
                            continue
                    elif err is None:
                        try:
                            ips, ms = time_quarry(a.quarry, path, batch, a.seconds, a.threads, a.precision)
                            best_q = max(best_q, ips)
                        except RuntimeError as e:
                            err = str(e)
                            print(f"{model} b{batch}: quarry failed: {err}", flush=True)
                            continue
                    else:
                        continue
                    print(f"  {model} b{batch} round {r + 1} {engine:11s} {ips:9.2f} items/s  median {ms:8.2f} ms", flush=True)
            ratio = best_q / best_o if best_o > 0 and err is None else float("nan")
            row = {"model": model, "batch": batch, "onnxruntime": best_o, "quarry": best_q, "ratio": ratio, "error": err}
            if a.baseline:
                row["baseline"] = best_b
                row["vs_baseline"] = best_q / best_b if best_b > 0 and err is None else float("nan")
            rows.append(row)
            del sess
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"\nbest of {a.rounds} rounds, items/s ({a.threads} threads, load average {load:.1f} at the end):")
    extra = f" {'baseline':>10s} {'quarry/base':>11s}" if a.baseline else ""
    print(f"{'model':14s} {'batch':>5s} {'onnxruntime':>12s} {'quarry':>10s} {'quarry/ort':>11s}{extra}")
    for r in rows:
        q = "failed" if r["error"] else f"{r['quarry']:10.2f}"
        tail = f" {r['baseline']:10.2f} {r['vs_baseline']:11.3f}" if a.baseline else ""
        print(f"{r['model']:14s} {r['batch']:5d} {r['onnxruntime']:12.2f} {q:>10s} {r['ratio']:11.2f}{tail}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["error"] is None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
