#!/usr/bin/env python3
"""Runs ONNX's backend node tests through `quarry run` and compares the outputs at the suite's
tolerances (onnx.backend.test.loader: rtol 1e-3, atol 1e-7 unless a case says otherwise).

    python3 -m pip install onnx numpy            # onnxruntime too for --onnxruntime
    python3 bench/onnx_node_tests.py --device cpu
    python3 bench/onnx_node_tests.py --device opencl:0 --ops Conv,MaxPool --onnxruntime
    python3 bench/onnx_node_tests.py --device cpu --ops Relu,Gemm --min-passed 12   # CI: exit 1 below 12

The cases are the node tests of the installed onnx package (onnx/backend/test/data/node/test_*/:
model.onnx and test_data_set_0/{input,output}_*.pb) whose one node is one of the op types below,
"_expanded" variants (the op written as a function of other ops) left out. Wheels that ship
without that folder get it generated from onnx.backend.test.case.node (the same code that
writes the shipped data) into a cache folder, once per onnx version.

Each case's inputs are written as .npy files with their own dtype (bfloat16, which .npy cannot
name, widened to float32, and the 4- and 2-bit integers to int8 / uint8, both exact);
`quarry run` computes in float32,
so its outputs come back as float32 .npy files. Float outputs are compared as the suite's runner
compares them (numpy assert_allclose); integer outputs (MaxPool's Indices) must be whole numbers
equal to the reference. The last line is exactly `N passed, M failed`.
"""
import argparse, collections, concurrent.futures, json, os, re, shutil, subprocess, sys, tempfile, time, warnings

import numpy as np

OPS = ("Conv ConvTranspose Gemm MatMul BatchNormalization MaxPool AveragePool GlobalAveragePool Relu LeakyRelu "
       "Sigmoid Tanh Softmax LayerNormalization Attention LSTM GRU Concat Resize Upsample Add Mul Reshape "
       "Transpose Flatten Gelu Mish HardSwish").split()
# Op types run only when --ops names them (the default set, and so its count, stays as it was).
EXTRA_OPS = "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSumExp ReduceSumSquare".split()
EXTRA_OPS += "Sin Cos Floor Ceil Round Softplus Elu Selu Not Sign Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor Mod Where Div".split()
EXTRA_OPS += "ArgMax ArgMin TopK CumSum Gather GatherElements GatherND ScatterND".split()
EXTRA_OPS += "Tile DepthToSpace SpaceToDepth Einsum RMSNormalization RotaryEmbedding If".split()
EXTRA_OPS += "Abs Log Reciprocal Sum Mean Max Min Softsign Celu ThresholdedRelu Shrink IsNaN IsInf Trilu Hardmax GroupNormalization LpNormalization MeanVarianceNormalization QuantizeLinear DequantizeLinear".split()
# ml_dtypes' sub-byte integer types, which .npy cannot name.
SUB_BYTE_INTEGERS = ("int4", "uint4", "int2", "uint2")
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def node_data_folder(cache):
    """The folder of node-test case folders: the onnx package's, else generated into `cache`."""
    import onnx
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if os.path.isdir(shipped) and os.listdir(shipped):
        return shipped
    folder = os.path.join(cache, f"onnx-{onnx.__version__}", "node")
    stamp = os.path.join(folder, ".complete")
    if os.path.exists(stamp):
        return folder
    print(f"onnx {onnx.__version__} ships no node test data; generating it into {folder}", file=sys.stderr)
    from onnx import numpy_helper, TensorProto
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx.backend.test.case.node as node_cases
        cases = node_cases.collect_testcases()
    if os.path.exists(folder):
        shutil.rmtree(folder)
    for case in cases:
        d = os.path.join(folder, case.name)
        data = os.path.join(d, "test_data_set_0")
        os.makedirs(data)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        with open(os.path.join(d, "data.json"), "w") as f:
            json.dump({"rtol": case.rtol, "atol": case.atol}, f)
        # Only tensor-typed cases: the ops here take and give tensors (as cmd_tools writes them).
        if not all(v.type.HasField("tensor_type") for v in list(case.model.graph.input) + list(case.model.graph.output)):
            continue
        inputs, outputs = case.data_sets[0]
        for kind, values, infos in (("input", inputs, case.model.graph.input), ("output", outputs, case.model.graph.output)):
            for j, v in enumerate(values):
                t = v if isinstance(v, TensorProto) else numpy_helper.from_array(v, infos[j].name)
                with open(os.path.join(data, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
    open(stamp, "w").close()
    return folder


def collect(folder, ops):
    """(name, op type, case folder) of the single-node cases whose op is in `ops`."""
    import onnx
    out = []
    for name in sorted(os.listdir(folder)):
        d = os.path.join(folder, name)
        if not name.startswith("test_") or "_expanded" in name or not os.path.exists(os.path.join(d, "model.onnx")):
            continue
        m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
        if len(m.graph.node) == 1 and m.graph.node[0].op_type in ops and m.graph.node[0].domain in ("", "ai.onnx"):
            out.append((name, m.graph.node[0].op_type, d))
    return out


class NoTensorData(Exception):
    """A case whose inputs or outputs are sequences or optionals: the generated data holds none."""


def load_case(d):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
    data = os.path.join(d, "test_data_set_0")
    inits = {t.name for t in m.graph.initializer}
    in_names = [v.name for v in m.graph.input if v.name not in inits]
    inputs, outputs = {}, {}
    for j, name in enumerate(in_names):
        t = onnx.TensorProto()
        if not os.path.exists(os.path.join(data, f"input_{j}.pb")):
            raise NoTensorData("inputs or outputs are sequences or optionals; no tensor data for the case")
        with open(os.path.join(data, f"input_{j}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        inputs[name] = numpy_helper.to_array(t)
    for j, v in enumerate(m.graph.output):
        p = os.path.join(data, f"output_{j}.pb")
        if not os.path.exists(p):
            continue
        t = onnx.TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        outputs[v.name] = numpy_helper.to_array(t)
    return m, inputs, outputs


def compare(got, want, rtol, atol):
    """None when `got` matches `want` as the suite's runner checks it, else the reason."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"wrong shape {list(got.shape)} (expected {list(want.shape)})"
    if want.dtype.name in SUB_BYTE_INTEGERS:
        want = want.astype(np.int8 if want.dtype.name.startswith("int") else np.uint8)
    if want.dtype.kind in "iub":
        g = got.astype(np.float64)
        if not np.array_equal(g, np.round(g)) or not np.array_equal(g, want.astype(np.float64)):
            return "wrong integer values"
        return None
    if want.dtype.kind != "f" and want.dtype.name != "bfloat16":
        return f"output dtype {want.dtype} not compared"
    w = want.astype(np.float64)
    g = got.astype(np.float64)
    # Two bfloat16 ULPs for bfloat16 references, as the suite's runner allows.
    r = max(rtol, 2 ** -6) if want.dtype.name == "bfloat16" else rtol
    try:
        np.testing.assert_allclose(g, w, rtol=r, atol=atol)
    except AssertionError:
        bad = ~np.isclose(g, w, rtol=r, atol=atol, equal_nan=True)
        err = np.abs(g - w)[bad]
        return f"wrong values ({int(bad.sum())}/{w.size} elements, max abs error {np.nanmax(err) if err.size else float('nan'):.3g})"
    return None


def safe_file_name(name):
    # NumPy.fileName(forTensor:) in Sources/QuarryFormats/Tensors/NumPy.swift.
    s = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if s in ("", ".", ".."):
        s = "_" + s
    return s + ".npy"


def first_error_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("warning:")]
    if not lines:
        return "no error message"
    line = lines[0]
    # "…: 1 node(s) cannot be imported:" names the reason on the next line.
    if line.endswith(":") and len(lines) > 1:
        line += " " + lines[1]
    return line


def tolerances(d):
    """The case's rtol and atol: the suite's defaults unless its data.json gives others."""
    rtol, atol = 1e-3, 1e-7
    p = os.path.join(d, "data.json")
    if os.path.exists(p):
        with open(p) as f:
            data = json.load(f)
        rtol, atol = data.get("rtol", rtol), data.get("atol", atol)
    return rtol, atol


def run_quarry(quarry, device, case, tmp, timeout):
    name, op, d = case
    rtol, atol = tolerances(d)
    try:
        m, inputs, expected = load_case(d)
    except NoTensorData as e:
        return str(e), None
    work = os.path.join(tmp, name)
    os.makedirs(work)
    args = [quarry, "run", os.path.join(d, "model.onnx"), "--output-dir", os.path.join(work, "out"), "--device", device,
            "--outputs", ",".join(expected)]
    for k, (n, a) in enumerate(inputs.items()):
        if a.dtype.name == "bfloat16":
            # .npy has no bfloat16 type (ml_dtypes saves it as raw '<V2'); widening to float32 is exact.
            a = a.astype(np.float32)
        elif a.dtype.name in SUB_BYTE_INTEGERS:
            # Likewise the 4- and 2-bit integers ('<V1'), widened exactly to int8 / uint8.
            a = a.astype(np.int8 if a.dtype.name.startswith("int") else np.uint8)
        p = os.path.join(work, f"input_{k}.npy")
        np.save(p, a)
        args += ["--input", f"{n}={p}"]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out", None
    if r.returncode != 0:
        reason = first_error_line(r.stderr or r.stdout).replace(d + "/", "").replace(d, "<case>").replace(work + "/", "")
        return reason, None
    for n, want in expected.items():
        got = np.load(os.path.join(work, "out", safe_file_name(n)))
        why = compare(got, want, rtol, atol)
        if why:
            return f"output '{n}': {why}", None
    return None, None


def run_onnxruntime(case):
    import onnxruntime as ort
    name, op, d = case
    rtol, atol = tolerances(d)
    try:
        m, inputs, expected = load_case(d)
    except NoTensorData as e:
        return str(e)
    try:
        s = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
        res = s.run(list(expected), inputs)
    except Exception as e:  # noqa: BLE001 — any failure is that case's reason
        return first_error_line(str(e)).replace(d + "/", "").replace(d, "<case>")
    for (n, want), got in zip(expected.items(), res):
        if np.asarray(got).dtype != want.dtype and want.dtype.name != "bfloat16":
            return f"output '{n}': dtype {np.asarray(got).dtype} (expected {want.dtype})"
        why = compare(got, want, rtol, atol)
        if why:
            return f"output '{n}': {why}"
    return None


def find_quarry(given):
    if given:
        return given
    release = os.path.join(ROOT, ".build", "release", "quarry")
    if os.path.exists(release):
        return release
    bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(bin_path, "quarry")


def report(title, results, cases):
    by_op = collections.OrderedDict((op, [0, 0]) for op in OPS + EXTRA_OPS)
    reasons = collections.defaultdict(list)
    for (name, op, _), why in zip(cases, results):
        by_op[op][0 if why is None else 1] += 1
        if why is not None:
            reasons[why].append(name)
    print(f"\n{title}")
    print(f"{'op':<20}{'passed':>8}{'failed':>8}")
    for op, (p, f) in by_op.items():
        if p + f:
            print(f"{op:<20}{p:>8}{f:>8}")
    if reasons:
        print("failures by reason:")
        for why, names in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            shown = ", ".join(n[5:] for n in names[:4]) + (", …" if len(names) > 4 else "")
            print(f"  {len(names):4d}  {why}  [{shown}]")
    passed = sum(1 for w in results if w is None)
    return passed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quarry", help="the quarry tool (default .build/release/quarry, else `swift build --show-bin-path`)")
    ap.add_argument("--device", default="cpu", help="cpu, opencl:0, … (passed to quarry run)")
    ap.add_argument("--ops", help="comma-separated op types, or 'extra' for all of the second list (default: all %d; also %s)" % (len(OPS), ",".join(EXTRA_OPS)))
    ap.add_argument("-k", dest="match", help="only cases whose name contains this")
    ap.add_argument("--onnxruntime", action="store_true", help="also run onnxruntime (CPU) on the same cases")
    ap.add_argument("--json", metavar="FILE", help="write per-case results as JSON")
    ap.add_argument("--min-passed", type=int, help="exit 1 when fewer Quarry cases pass")
    ap.add_argument("--data", help="a folder of node test cases (default: the onnx package's)")
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "quarry", "onnx-node-tests"),
                    help="where node test data is generated when the onnx package ships none")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per case")
    args = ap.parse_args()

    ops = OPS
    if args.ops:
        # "extra" stands for every op type of EXTRA_OPS.
        ops = [x for o in args.ops.split(",") if o.strip() for x in (EXTRA_OPS if o.strip() == "extra" else [o.strip()])]
        unknown = [o for o in ops if o not in OPS + EXTRA_OPS]
        if unknown:
            ap.error(f"unknown op type(s) {unknown}; known: {' '.join(OPS + EXTRA_OPS)}")
    folder = args.data or node_data_folder(args.cache)
    cases = collect(folder, set(ops))
    if args.match:
        cases = [c for c in cases if args.match in c[0]]
    if not cases:
        print("no cases", file=sys.stderr)
        return 2
    quarry = find_quarry(args.quarry)
    if not os.path.exists(quarry):
        print(f"no quarry tool at {quarry}; build it (swift build) or pass --quarry", file=sys.stderr)
        return 2
    print(f"{len(cases)} node test cases from {folder}; quarry {quarry} on {args.device}", flush=True)

    start = time.time()
    tmp = tempfile.mkdtemp(prefix="quarry-node-tests-")
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(run_quarry, quarry, args.device, c, tmp, args.timeout) for c in cases]
            quarry_results = [f.result()[0] for f in futures]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.time() - start
    ort_results = None
    if args.onnxruntime:
        import onnxruntime
        ort_results = [run_onnxruntime(c) for c in cases]
        ort_passed = report(f"onnxruntime {onnxruntime.__version__} (CPU)", ort_results, cases)
        print(f"onnxruntime: {ort_passed} passed, {len(cases) - ort_passed} failed")
    passed = report(f"Quarry on {args.device} ({elapsed:.0f} s)", quarry_results, cases)
    if args.json:
        rows = []
        for i, (name, op, d) in enumerate(cases):
            row = {"case": name, "op": op, "quarry": "passed" if quarry_results[i] is None else quarry_results[i]}
            if ort_results is not None:
                row["onnxruntime"] = "passed" if ort_results[i] is None else ort_results[i]
            rows.append(row)
        import onnx
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "onnx": onnx.__version__, "passed": passed,
                       "failed": len(cases) - passed, "onnxruntime_passed": None if ort_results is None else ort_passed,
                       "cases": rows}, f, indent=1)
    print(f"{passed} passed, {len(cases) - passed} failed")
    if args.min_passed is not None and passed < args.min_passed:
        print(f"fewer than --min-passed {args.min_passed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
