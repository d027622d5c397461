#!/usr/bin/env python3
"""Quarry's per-layer profile against onnxruntime's own, on the same ONNX file, batch and threads.

Quarry's times come from `quarry bench FILE --batch B --device cpu --cpu-threads T --json` (each
layer's median over the profiled runs; with batch lanes, the first lane's layer times, which run
alongside the other lanes). onnxruntime's come from `SessionOptions.enable_profiling` (sequential
execution, all graph optimisations, T intra-op threads): each node's fastest of --runs runs.

onnxruntime fuses activations and residual adds into its convolutions and renames the result
after the fused output ("/Relu_out_5_nchwc"); each of its nodes is charged to the graph node that
computes its output, found by walking back through Relu, Clip, Add and Sum to the producer (for an
Add, the later one in the file's order, which is the one onnxruntime fuses it into). Quarry's fused
nodes ("a+b+c") are compared with the sum of onnxruntime's times for their parts. Rows are sorted
by how much longer Quarry takes.

    swift build -c release --product quarry
    python3 bench/make_peer_models.py --out bench/out/peer --dynamic
    python3 bench/layers_vs_onnxruntime.py bench/out/peer/resnet50.onnx --batch 8 --threads 2

The two profiles come from different processes a minute apart: on a shared machine compare the
layers' shares, or repeat, before trusting a single layer's figure.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def quarry_layers(quarry, model, batch, threads):
    out = subprocess.run([quarry, "bench", model, "--batch", str(batch), "--device", "cpu",
                          "--cpu-threads", str(threads), "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"quarry bench {model} failed ({out.returncode}): {out.stderr.strip()}")
    lines = out.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"quarry bench {model} printed nothing")
    result = json.loads(lines[-1])
    times = collections.OrderedDict()
    for layer in result.get("layers", []):
        times[layer["node"]] = times.get(layer["node"], 0.0) + layer["ms"]
    return times, result["median_ms"]


def onnxruntime_nodes(model, batch, threads, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for i in session.get_inputs():
            shape = [batch if not isinstance(d, int) else d for d in i.shape]
            if "float" in i.type:
                feeds[i.name] = rng.random(shape, dtype=np.float32)
            else:
                feeds[i.name] = rng.integers(0, 100, shape).astype(np.int64)
        for _ in range(runs + 2):  # the first two warm up; each node's fastest run is kept
            session.run(None, feeds)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    fastest = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            fastest[name] = min(fastest.get(name, float("inf")), e["dur"] / 1000.0)
    return fastest


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=6, help="profiled onnxruntime runs (default 6)")
    p.add_argument("--quarry", default=".build/release/quarry")
    p.add_argument("--top", type=int, default=0, help="print only the N rows where Quarry loses most")
    args = p.parse_args()

    graph = onnx.load(args.model).graph
    order = {n.name: i for i, n in enumerate(graph.node)}
    producer = {o: n for n in graph.node for o in n.output}
    weights = {t.name: list(t.dims) for t in graph.initializer}

    def computing_node(tensor):
        node = producer.get(tensor)
        while node is not None and node.op_type in ("Relu", "Clip", "Add", "Sum"):
            if node.op_type in ("Add", "Sum"):
                inputs = [producer[i] for i in node.input if i in producer]
                if not inputs:
                    break
                node = max(inputs, key=lambda n: order[n.name])
            else:
                node = producer.get(node.input[0])
        return node

    def describe(name):
        node = next((n for n in graph.node if n.name == name), None)
        if node is None or node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            return node.op_type if node is not None else ""
        w = weights[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        k = "x".join(str(d) for d in w[2:])
        return f"conv {w[1] * attrs.get('group', 1)}->{w[0]} k{k} s{attrs.get('strides', [1])[0]} g{attrs.get('group', 1)}"

    q, q_median = quarry_layers(args.quarry, args.model, args.batch, args.threads)
    o_raw = onnxruntime_nodes(args.model, args.batch, args.threads, args.runs)
    o = collections.defaultdict(float)
    for name, ms in o_raw.items():
        tensor = name[: -len("_nchwc")] if name.endswith("_nchwc") else name
        node = computing_node(tensor)
        o[node.name if node is not None else name] += ms
    for fused in [k for k in q if "+" in k]:
        o[fused] = sum(o.pop(part, 0.0) for part in fused.split("+"))

    rows = [(name, describe(name.split("+")[0]) + (" (fused)" if "+" in name else ""), q.get(name, 0.0), o.get(name, 0.0))
            for name in list(q) + [k for k in o if k not in q]]
    rows.sort(key=lambda r: r[3] - r[2])
    tq, to = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"{os.path.basename(args.model)} batch {args.batch}, {args.threads} threads: per-layer sum quarry {tq:.2f} ms "
          f"(its run median {q_median:.2f}), onnxruntime {to:.2f} ms (fastest of {args.runs} runs per node)")
    if q_median > 0 and abs(tq / q_median - 1) > 0.15:
        print(f"note: Quarry's per-layer sum is {tq / q_median:.2f}x its timed runs' median: the profiled runs "
              "ran at another speed (a shared or throttled machine); compare shares, or run again")
    print(f"{'node':32s} {'what':26s} {'quarry ms':>10s} {'ort ms':>8s} {'q - ort':>8s} {'q / ort':>8s}")
    shown = rows[: args.top] if args.top > 0 else rows
    for name, what, a, b in shown:
        ratio = f"{a / b:8.2f}" if b > 0 else "       -"
        print(f"{name[:32]:32s} {what[:26]:26s} {a:10.3f} {b:8.3f} {a - b:+8.3f} {ratio}")


if __name__ == "__main__":
    main()
