#!/usr/bin/env python3
"""Builds the ONNX test fixtures: small graphs made with onnx.helper, one per operator (or
attribute form), with inputs drawn at random and the expected outputs computed by onnxruntime.

    pip install onnx onnxruntime numpy
    python3 scripts/make_onnx_fixtures.py            # writes Tests/Fixtures/onnx/<case>/
    python3 scripts/make_onnx_fixtures.py --big DIR  # ResNet-50, MobileNetV2, BERT-base (random
                                                     # weights, PyTorch-style export) into DIR

Each case folder holds model.onnx, inputs.npz and outputs.npz (np.savez: stored zip members).
The big models are never committed; tests that need them read QUARRY_BIG_ONNX_DIR.
"""
import argparse, os, sys
import numpy as np
import onnx
from onnx import helper as oh, TensorProto as TP, numpy_helper as nh
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "onnx")
rng = np.random.default_rng(20261129)


def rand(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def init(name, arr):
    return nh.from_array(np.asarray(arr), name)


def vi(name, dtype, shape):
    return oh.make_tensor_value_info(name, dtype, shape)


def save(case, nodes, inputs, outputs, inits=(), opset=17, feeds=None, dims=None, extra_models_dir=None, reference="onnxruntime", out_types=None):
    """inputs: dict name -> np array (float32, int64, int32 or bool); outputs: list of names.

    reference "onnxruntime" runs the model with onnxruntime; "float64" runs onnx's reference
    implementation (onnx.reference, the code that writes ONNX's node tests) on the inputs and
    initializers widened to float64, for operators onnxruntime lacks or gets wrong."""
    in_vis = []
    for n, a in inputs.items():
        dt = {np.dtype(np.int64): TP.INT64, np.dtype(np.int32): TP.INT32, np.dtype(np.bool_): TP.BOOL}.get(a.dtype, TP.FLOAT)
        shape = (dims or {}).get(n, list(a.shape))
        in_vis.append(vi(n, dt, shape))
    out_vis = [oh.make_tensor_value_info(o, (out_types or {}).get(o, TP.FLOAT), None) for o in outputs]
    g = oh.make_graph(nodes, case, in_vis, out_vis, initializer=list(inits))
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)], producer_name="quarry-fixtures")
    m.ir_version = 8 if opset <= 18 else 9
    folder = os.path.join(extra_models_dir or ROOT, case)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    onnx.save(m, path)
    if reference == "float64":
        from onnx.reference import ReferenceEvaluator
        m64 = onnx.load(path)
        for t in m64.graph.initializer:
            if t.data_type == TP.FLOAT:
                t.CopyFrom(nh.from_array(nh.to_array(t).astype(np.float64), t.name))
        wide = {k: (a.astype(np.float64) if a.dtype == np.float32 else a) for k, a in inputs.items()}
        res = [np.asarray(r).astype(np.float32) for r in ReferenceEvaluator(m64).run(outputs, wide)]
    else:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        res = sess.run(outputs, inputs)
    np.savez(os.path.join(folder, "inputs.npz"), **inputs)
    np.savez(os.path.join(folder, "outputs.npz"), **{o: np.asarray(r) for o, r in zip(outputs, res)})
    return path


def N(op, ins, outs, name=None, **attrs):
    return oh.make_node(op, ins, outs, name=name or outs[0] + "_node", **attrs)


def small_cases():
    x4 = rand(2, 4, 9, 7)
    # Convolution: explicit pads, strides, dilations, groups, bias; auto_pad forms; 1-D.
    save("conv", [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 2, 0, 1], strides=[2, 1], dilations=[1, 2], group=2)],
         {"x": x4}, ["y"], [init("w", rand(6, 2, 3, 3)), init("b", rand(6))])
    for mode in ["SAME_UPPER", "SAME_LOWER", "VALID"]:
        save(f"conv_{mode.lower()}", [N("Conv", ["x", "w"], ["y"], auto_pad=mode, strides=[2, 2])],
             {"x": x4}, ["y"], [init("w", rand(5, 4, 2, 3))])
    save("conv_depthwise", [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=4)],
         {"x": x4}, ["y"], [init("w", rand(4, 1, 3, 3)), init("b", rand(4))])
    save("conv1d", [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 2], strides=[2])],
         {"x": rand(2, 3, 11)}, ["y"], [init("w", rand(5, 3, 4)), init("b", rand(5))])
    save("conv_transpose", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0], group=2)],
         {"x": rand(2, 4, 5, 6)}, ["y"], [init("w", rand(4, 3, 3, 3)), init("b", rand(6))])
    # Gemm / MatMul.
    save("gemm_transb", [N("Gemm", ["x", "w", "b"], ["y"], transB=1)],
         {"x": rand(3, 10)}, ["y"], [init("w", rand(7, 10)), init("b", rand(7))])
    save("gemm_alpha_beta", [N("Gemm", ["x", "w", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)],
         {"x": rand(10, 3)}, ["y"], [init("w", rand(10, 7)), init("c", rand(3, 7))])
    save("matmul_const", [N("MatMul", ["x", "w"], ["y"])], {"x": rand(2, 5, 8)}, ["y"], [init("w", rand(8, 6))])
    save("matmul_batched", [N("MatMul", ["a", "b"], ["y"])], {"a": rand(2, 3, 4, 5), "b": rand(2, 1, 5, 6)}, ["y"])
    # Normalisation.
    save("batchnorm", [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
         {"x": x4}, ["y"], [init("s", rand(4)), init("b", rand(4)), init("m", rand(4)), init("v", rand(4, lo=0.5, hi=2))])
    save("layernorm", [N("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
         {"x": rand(2, 5, 16)}, ["y"], [init("g", rand(16)), init("b", rand(16))])
    save("instancenorm", [N("InstanceNormalization", ["x", "g", "b"], ["y"], epsilon=1e-5)],
         {"x": x4}, ["y"], [init("g", rand(4)), init("b", rand(4))])
    # Pooling.
    save("maxpool", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], {"x": x4}, ["y"])
    save("maxpool_dilated", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])], {"x": x4}, ["y"])
    save("avgpool_include_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=1)], {"x": x4}, ["y"])
    save("avgpool_exclude_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": x4}, ["y"])
    save("avgpool_same_upper", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")], {"x": x4}, ["y"])
    save("global_pools", [N("GlobalAveragePool", ["x"], ["a"]), N("GlobalMaxPool", ["x"], ["m"])], {"x": x4}, ["a", "m"])
    # Activations and unary maths.
    xa = rand(2, 3, 4, 5, lo=-3, hi=3)
    for op, attrs, opset in [("Relu", {}, 17), ("LeakyRelu", {"alpha": 0.1}, 17), ("Sigmoid", {}, 17),
                             ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 17), ("HardSwish", {}, 17), ("Tanh", {}, 17),
                             ("Mish", {}, 18), ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20), ("Erf", {}, 17),
                             ("Exp", {}, 17), ("Neg", {}, 17)]:
        case = op.lower() + ("_tanh" if attrs.get("approximate") else "")
        save(case, [N(op, ["x"], ["y"], **attrs)], {"x": xa}, ["y"], opset=opset)
    save("sqrt", [N("Sqrt", ["x"], ["y"])], {"x": rand(2, 3, 4, lo=0.1, hi=4)}, ["y"])
    save("prelu", [N("PRelu", ["x", "slope"], ["y"])], {"x": xa}, ["y"], [init("slope", rand(3, 1, 1))])
    save("clip", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": xa}, ["y"], [init("lo", np.float32(-0.5)), init("hi", np.float32(1.5))])
    save("clip_relu6", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": xa * 4}, ["y"], [init("lo", np.float32(0)), init("hi", np.float32(6))])
    save("softmax", [N("Softmax", ["x"], ["y"], axis=1), N("LogSoftmax", ["x"], ["z"], axis=-1)], {"x": rand(2, 5, 7)}, ["y", "z"], opset=13)
    save("softmax_opset11", [N("Softmax", ["x"], ["y"], axis=1)], {"x": rand(2, 5, 7)}, ["y"], opset=11)
    # Binary with broadcasting.
    save("binary", [N("Add", ["a", "b"], ["s"]), N("Sub", ["s", "c"], ["d"]), N("Mul", ["d", "a"], ["m"]),
                    N("Div", ["m", "p"], ["q"]), N("Pow", ["p", "e"], ["w"])],
         {"a": rand(2, 3, 4), "b": rand(3, 1), "p": rand(4, lo=0.5, hi=2)}, ["s", "d", "m", "q", "w"],
         [init("c", rand(1, 1, 4)), init("e", np.float32(1.7))])
    # Reductions.
    save("reduce_mean", [N("ReduceMean", ["x", "axes"], ["y"], keepdims=1)], {"x": x4}, ["y"], [init("axes", np.array([2, 3], np.int64))], opset=18)
    save("reduce_mean_attr", [N("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)], {"x": x4}, ["y"], opset=13)
    save("reduce_sum", [N("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], {"x": x4}, ["y"], [init("axes", np.array([-1], np.int64))], opset=13)
    # Layout.
    save("concat_split", [N("Concat", ["a", "b"], ["c"], axis=1), N("Split", ["c", "sizes"], ["s0", "s1", "s2"], axis=1)],
         {"a": rand(2, 3, 4), "b": rand(2, 5, 4)}, ["c", "s0", "s1", "s2"], [init("sizes", np.array([2, 4, 2], np.int64))], opset=13)
    save("split_num_outputs", [N("Split", ["x"], ["s0", "s1", "s2"], axis=2, num_outputs=3)], {"x": rand(2, 3, 8)}, ["s0", "s1", "s2"], opset=18)
    save("slice", [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": x4}, ["y"],
         [init("st", np.array([1, -1, 0], np.int64)), init("en", np.array([3, -100, 9223372036854775807], np.int64)),
          init("ax", np.array([1, 2, 3], np.int64)), init("sp", np.array([1, -2, 3], np.int64))])
    save("reshape_transpose", [N("Reshape", ["x", "shape"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
                               N("Flatten", ["t"], ["f"], axis=2)],
         {"x": rand(2, 3, 20)}, ["r", "t", "f"], [init("shape", np.array([0, 3, -1, 5], np.int64))])
    save("squeeze_unsqueeze", [N("Unsqueeze", ["x", "ax"], ["u"]), N("Squeeze", ["u", "ax"], ["s"])],
         {"x": rand(3, 4)}, ["u", "s"], [init("ax", np.array([0, -1], np.int64))], opset=13)
    save("squeeze_attr", [N("Squeeze", ["x"], ["y"], axes=[1])], {"x": rand(3, 1, 4)}, ["y"], opset=11)
    # Gather: embedding with run-time ids, constant index into run-time data.
    ids = rng.integers(0, 11, size=(2, 5)).astype(np.int64)
    save("gather_embedding", [N("Gather", ["table", "ids"], ["y"])], {"ids": ids}, ["y"], [init("table", rand(11, 6))])
    save("gather_const_index", [N("Gather", ["x", "i"], ["y"], axis=1), N("Gather", ["x", "j"], ["z"], axis=2)],
         {"x": rand(2, 5, 4)}, ["y", "z"], [init("i", np.array(0, np.int64)), init("j", np.array([3, 0, -1], np.int64))])
    # The shape subgraph PyTorch emits for x.view(x.size(0), -1, 4) and friends.
    nodes = [
        N("Shape", ["x"], ["shp"]),
        N("Gather", ["shp", "zero"], ["b"], axis=0),
        N("Unsqueeze", ["b", "ax0"], ["b1"]),
        N("Concat", ["b1", "tail"], ["target"], axis=0),
        N("Reshape", ["x", "target"], ["y"]),
        N("Cast", ["b"], ["bf"], to=TP.FLOAT),
        N("ConstantOfShape", ["shp"], ["ones"], value=oh.make_tensor("v", TP.FLOAT, [1], [1.0])),
        N("Mul", ["x", "ones"], ["x1"]),
        N("Constant", [], ["k"], value=oh.make_tensor("k", TP.FLOAT, [1], [2.0])),
        N("Mul", ["x1", "k"], ["x2"]),
        N("Identity", ["x2"], ["x3"]),
        N("Dropout", ["x3"], ["x4"]),
        N("Expand", ["bias", "shp"], ["bx"]),
        N("Add", ["x4", "bx"], ["z"]),
        N("Equal", ["shp", "shp"], ["eq"]),
        N("Where", ["mask", "x", "z"], ["w"]),
    ]
    save("shape_subgraph", nodes, {"x": rand(3, 8, 2)}, ["y", "z", "w"],
         [init("zero", np.array(0, np.int64)), init("ax0", np.array([0], np.int64)), init("tail", np.array([-1, 4], np.int64)),
          init("bias", rand(1, 8, 1)), init("mask", rng.integers(0, 2, size=(8, 2)).astype(bool))],
         opset=13, dims={"x": ["batch", 8, 2]})
    # Resize / Upsample.
    xr = rand(1, 2, 4, 5)
    empty = init("roi", np.array([], np.float32))
    save("resize_nearest", [N("Resize", ["x", "roi", "scales"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
         {"x": xr}, ["y"], [empty, init("scales", np.array([1, 1, 2, 3], np.float32))], opset=13)
    save("resize_linear", [N("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel")],
         {"x": xr}, ["y"], [empty, init("sizes", np.array([1, 2, 8, 10], np.int64))], opset=13)
    save("resize_align_corners", [N("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="align_corners")],
         {"x": xr}, ["y"], [empty, init("sizes", np.array([1, 2, 7, 9], np.int64))], opset=13)
    save("upsample", [N("Upsample", ["x", "scales"], ["y"], mode="nearest")], {"x": xr}, ["y"],
         [init("scales", np.array([1, 1, 2, 2], np.float32))], opset=9)
    # Pad.
    for mode in ["constant", "reflect", "edge"]:
        inits = [init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))]
        ins = ["x", "pads"]
        if mode == "constant":
            inits.append(init("v", np.float32(0.25))); ins.append("v")
        save(f"pad_{mode}", [N("Pad", ins, ["y"], mode=mode)], {"x": xr}, ["y"], inits, opset=13)
    # Recurrent layers: ONNX gate orders, both layouts, initial states.
    S, B, I, H = 5, 2, 3, 4
    for direction, layout in [("forward", 0), ("bidirectional", 0), ("reverse", 0)]:
        D = 2 if direction == "bidirectional" else 1
        x = rand(S, B, I) if layout == 0 else rand(B, S, I)
        st = (D, B, H) if layout == 0 else (B, D, H)
        save(f"lstm_{direction}_layout{layout}",
             [N("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["y", "hn", "cn"], hidden_size=H, direction=direction, layout=layout)],
             {"x": x, "h0": rand(*st), "c0": rand(*st)}, ["y", "hn", "cn"],
             [init("W", rand(D, 4 * H, I)), init("R", rand(D, 4 * H, H)), init("B", rand(D, 8 * H))], opset=14)
    for lbr in [0, 1]:
        save(f"gru_lbr{lbr}", [N("GRU", ["x", "W", "R", "B", "", "h0"], ["y", "hn"], hidden_size=H, direction="bidirectional", linear_before_reset=lbr)],
             {"x": rand(S, B, I), "h0": rand(2, B, H)}, ["y", "hn"],
             [init("W", rand(2, 3 * H, I)), init("R", rand(2, 3 * H, H)), init("B", rand(2, 6 * H))], opset=14)
    # Initializers in external data (the file sits next to the model).
    folder = os.path.join(ROOT, "external_data")
    os.makedirs(folder, exist_ok=True)
    w = init("w", rand(6, 10))
    b = init("b", rand(6))
    g = oh.make_graph([N("Gemm", ["x", "w", "b"], ["y"], transB=1)], "ext", [vi("x", TP.FLOAT, [2, 10])], [oh.make_tensor_value_info("y", TP.FLOAT, None)], [w, b])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    # onnx appends to an existing data file, so start from none.
    if os.path.exists(os.path.join(folder, "weights.bin")):
        os.remove(os.path.join(folder, "weights.bin"))
    onnx.save(m, os.path.join(folder, "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    xin = rand(2, 10)
    res = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"]).run(["y"], {"x": xin})
    np.savez(os.path.join(folder, "inputs.npz"), x=xin)
    np.savez(os.path.join(folder, "outputs.npz"), y=res[0])
    # Unsupported operators: the importer must name every one of them.
    g = oh.make_graph([N("Unique", ["x"], ["a"], name="first_bad"), N("Relu", ["a"], ["b"], name="fine_after_bad"),
                       N("Relu", ["x"], ["c"], name="fine"), N("Det", ["c"], ["d"], name="second_bad"),
                       oh.make_node("FusedGemm", ["x", "x"], ["e"], name="third_bad", domain="com.microsoft")],
                      "unsupported", [vi("x", TP.FLOAT, [3, 3])], [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in ["b", "d", "e"]])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)])
    os.makedirs(os.path.join(ROOT, "unsupported"), exist_ok=True)
    onnx.save(m, os.path.join(ROOT, "unsupported", "model.onnx"))
    # Cases added later go last so that the random draws of the ones above stay the same.
    save("gemm_alpha_bias", [N("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=0.75, beta=-1.5)],
         {"x": rand(4, 6)}, ["y"], [init("w", rand(5, 6)), init("b", rand(5))])
    save("where_mask", [N("Where", ["m", "x", "neg"], ["y"]), N("Softmax", ["y"], ["p"], axis=-1)],
         {"x": rand(2, 6)}, ["y", "p"], [init("m", np.array([[1, 1, 0, 1, 0, 1]], bool)), init("neg", np.float32(-np.inf))], opset=13)
    save("cast_ids", [N("Cast", ["ids"], ["f"], to=TP.FLOAT), N("Mul", ["f", "k"], ["y"])],
         {"ids": rng.integers(0, 50, size=(3, 4)).astype(np.int64)}, ["y"], [init("k", np.float32(0.5))])
    # .npz and .npy forms for the format tests.
    fmt = os.path.join(ROOT, "..", "numpy")
    os.makedirs(fmt, exist_ok=True)
    arrays = {"f32": rand(2, 3), "f16": rand(4).astype(np.float16), "f64": rand(3, 1).astype(np.float64),
              "i64": np.arange(-3, 3, dtype=np.int64).reshape(2, 3), "i32": np.arange(5, dtype=np.int32), "b": np.array([True, False, True]),
              "scalar": np.float32(3.5), "empty": np.zeros((0, 4), np.float32)}
    np.savez(os.path.join(fmt, "stored.npz"), **arrays)
    np.savez_compressed(os.path.join(fmt, "compressed.npz"), **arrays, big=np.tile(np.arange(100, dtype=np.float32), 50))
    for k, a in arrays.items():
        np.save(os.path.join(fmt, f"{k}.npy"), a)
    np.save(os.path.join(fmt, "fortran.npy"), np.asfortranarray(rand(3, 4)))
    np.save(os.path.join(fmt, "bigendian.npy"), rand(3).astype(">f4"))
    np.save(os.path.join(fmt, "complex.npy"), np.zeros(3, np.complex64))
    # Narrower and unsigned integer .npy files (read widened to int32 / int64); fixed values.
    for name, dtype, values in [("i8", np.int8, [-128, -1, 0, 127]), ("u8", np.uint8, [0, 1, 255]), ("i16", np.int16, [-32768, 7, 32767]),
                                ("u16", np.uint16, [0, 65535]), ("u32", np.uint32, [4294967295, 3]), ("u64", np.uint64, [9007199254740993, 5])]:
        np.save(os.path.join(fmt, f"narrow_{name}.npy"), np.array(values, dtype).reshape(1, -1))
    np.save(os.path.join(fmt, "narrow_u64_too_big.npy"), np.array([2 ** 63], np.uint64))
    # Cases added after the .npy forms (their draws come last). Attention (opsets 23-25) against
    # onnx's reference in float64: 3-D grouped heads with a bool mask holding a fully masked row;
    # 4-D with a cache, causal frontier, float mask shorter than the total length and softcap;
    # opset 25 sliding window with per-batch nonpad_kv_seqlen; qk_matmul_output in modes 2 and 3.
    mask = rng.integers(0, 2, size=(3, 5)).astype(bool)
    mask[1] = False
    save("attention_3d_gqa_bool_mask", [N("Attention", ["q", "k", "v", "m"], ["y", "", "", "p"], q_num_heads=4, kv_num_heads=2, qk_matmul_output_mode=3)],
         {"q": rand(2, 3, 16), "k": rand(2, 5, 8), "v": rand(2, 5, 12), "m": mask}, ["y", "p"], opset=23, reference="float64")
    save("attention_4d_past_causal_softcap", [N("Attention", ["q", "k", "v", "m", "pk", "pv"], ["y", "kp", "vp", "s"], is_causal=1, softcap=2.0, scale=0.3, qk_matmul_output_mode=2)],
         {"q": rand(1, 2, 3, 4), "k": rand(1, 2, 3, 4), "v": rand(1, 2, 3, 5), "m": rand(1, 1, 3, 4), "pk": rand(1, 2, 2, 4), "pv": rand(1, 2, 2, 5)},
         ["y", "kp", "vp", "s"], opset=24, reference="float64")
    save("attention_window_nonpad", [N("Attention", ["q", "k", "v", "", "", "", "n"], ["y"], is_causal=1, left_window_size=2)],
         {"q": rand(2, 2, 3, 4), "k": rand(2, 2, 6, 4), "v": rand(2, 2, 6, 3), "n": np.array([4, 6], np.int64)}, ["y"], opset=25, reference="float64")
    # LayerNormalization's Mean and InvStdDev outputs (over the axes from 1 on).
    save("layernorm_stats", [N("LayerNormalization", ["x", "g", "b"], ["y", "mean", "inv"], axis=1, epsilon=1e-3)],
         {"x": rand(2, 3, 4, 5)}, ["y", "mean", "inv"], [init("g", rand(3, 4, 5)), init("b", rand(3, 4, 5))])
    # 1-D and 3-D pooling (as 2-D pools), MatMul with 1-D operands (numpy's row / column rule).
    x5 = rand(2, 3, 5, 6, 7)
    save("maxpool3d", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1], dilations=[1, 2, 1], ceil_mode=1)], {"x": x5}, ["y"], opset=22)
    save("avgpool3d_exclude_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 2, 3], strides=[2, 2, 1], pads=[1, 1, 0, 1, 0, 1], ceil_mode=1)], {"x": x5}, ["y"], opset=22)
    save("avgpool3d_include_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2, 2], pads=[1, 0, 1, 0, 1, 1], count_include_pad=1)], {"x": x5}, ["y"], opset=19)
    save("pool1d", [N("MaxPool", ["x"], ["m"], kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER"), N("AveragePool", ["x"], ["a"], kernel_shape=[4], pads=[2, 1])],
         {"x": rand(2, 3, 11)}, ["m", "a"], opset=22)
    save("matmul_1d", [N("MatMul", ["v", "b"], ["vb"]), N("MatMul", ["b", "w"], ["bw"]), N("MatMul", ["v", "u"], ["dot"])],
         {"v": rand(4), "b": rand(2, 3, 4, 5), "w": rand(5), "u": rand(4)}, ["vb", "bw", "dot"], opset=13)
    # Recurrent weights fed as graph inputs (their gate blocks reordered by slices at run time).
    S, B, I, H = 4, 2, 3, 5
    save("lstm_weights_as_inputs", [N("LSTM", ["x", "W", "R", "B"], ["y", "hn", "cn"], hidden_size=H, direction="bidirectional")],
         {"x": rand(S, B, I), "W": rand(2, 4 * H, I), "R": rand(2, 4 * H, H), "B": rand(2, 8 * H)}, ["y", "hn", "cn"], opset=22)
    save("gru_weights_as_inputs", [N("GRU", ["x", "W", "R"], ["y", "hn"], hidden_size=H, linear_before_reset=1)],
         {"x": rand(S, B, I), "W": rand(1, 3 * H, I), "R": rand(1, 3 * H, H)}, ["y", "hn"], opset=22)
    # Operands the import folds, fed as graph inputs (values given with the shapes): a Reshape
    # target and Upsample scales.
    save("reshape_shape_input", [N("Reshape", ["x", "s"], ["y"]), N("Upsample", ["x4", "sc"], ["u"], mode="nearest")],
         {"x": rand(2, 3, 4), "s": np.array([4, -1, 3], np.int64), "x4": rand(1, 2, 3, 3), "sc": np.array([1, 1, 2, 3], np.float32)}, ["y", "u"], opset=9)
    # Resize forms Quarry's upsample op lacks, lowered to one interpolation matrix per axis: cubic
    # with antialias (downsampling), exclude_outside, tf_crop_and_resize with extrapolation on
    # chosen axes, nearest rounding up, keep_aspect_ratio_policy, a rank-3 tensor; scales and sizes
    # fed as graph inputs.
    xr = rand(2, 3, 9, 11)
    save("resize_cubic_antialias", [N("Resize", ["x", "", "scales"], ["y"], mode="cubic", antialias=1, cubic_coeff_a=-0.5, exclude_outside=1)],
         {"x": xr, "scales": np.array([1, 1, 0.6, 0.45], np.float32)}, ["y"], opset=18)
    save("resize_crop_extrapolate", [N("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                        extrapolation_value=-2.5, axes=[3, 2])],
         {"x": xr}, ["y"], [init("roi", np.array([-0.2, 0.1, 0.9, 1.3], np.float32)), init("sizes", np.array([7, 6], np.int64))], opset=18)
    save("resize_nearest_ceil_aspect", [N("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", nearest_mode="round_prefer_ceil",
                                           coordinate_transformation_mode="asymmetric", keep_aspect_ratio_policy="not_smaller", axes=[2, 3])],
         {"x": xr, "sizes": np.array([13, 15], np.int64)}, ["y"], opset=18)
    save("resize_rank3_linear", [N("Resize", ["x", "", "scales"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel")],
         {"x": rand(4, 5, 6), "scales": np.array([1, 1.6, 0.5], np.float32)}, ["y"], opset=13)
    # ConvTranspose 1-D (as 2-D with height one), and an output_shape past the full output.
    save("conv_transpose_1d", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[3], pads=[1, 2], dilations=[2], group=2)],
         {"x": rand(2, 4, 7)}, ["y"], [init("w", rand(4, 3, 3)), init("b", rand(6))], opset=22)
    save("conv_transpose_output_shape", [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 3], output_shape=[9, 13])],
         {"x": rand(1, 2, 4, 4)}, ["y"], [init("w", rand(2, 3, 2, 3))], opset=17)
    # BatchNormalization in training mode: batch statistics, running statistics as outputs.
    save("batchnorm_training", [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1, momentum=0.8, epsilon=1e-3)],
         {"x": rand(3, 4, 5, 2)}, ["y", "rm", "rv"], [init("s", rand(4)), init("b", rand(4)), init("m", rand(4)), init("v", rand(4, lo=0.5, hi=2))], opset=15)
    # MaxPool's Indices output, row- and column-major, with padding, strides, dilations, ceil mode.
    xi = rand(2, 3, 8, 7)
    for order in [0, 1]:
        save(f"maxpool_indices_order{order}", [N("MaxPool", ["x"], ["y", "i"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], dilations=[1, 2],
                                                 ceil_mode=1, storage_order=order)],
             {"x": xi}, ["y", "i"], opset=12, out_types={"i": TP.INT64})
    # 1-D convolution with SAME_LOWER padding and a weight fed at run time.
    save("conv1d_same_lower_runtime_weight", [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2])],
         {"x": rand(2, 3, 11), "w": rand(4, 3, 4)}, ["y"], opset=22)
    # 3-D Conv and ConvTranspose (sums of 2-D ops over the depth taps): strides, pads, dilations,
    # groups, bias, output padding, a weight fed at run time.
    x3 = rand(2, 4, 5, 6, 7)
    save("conv3d", [N("Conv", ["x", "w", "b"], ["y"], strides=[2, 1, 2], pads=[1, 0, 1, 2, 1, 0], dilations=[2, 1, 1], group=2)],
         {"x": x3}, ["y"], [init("w", rand(6, 2, 2, 3, 3)), init("b", rand(6))], opset=22)
    save("conv3d_same_runtime_weight", [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2, 1])],
         {"x": x3, "w": rand(3, 4, 3, 2, 3)}, ["y"], opset=11)
    save("conv_transpose3d", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 1, 3], pads=[1, 0, 1, 0, 1, 2], output_padding=[1, 0, 1],
                                dilations=[2, 1, 1], group=2)],
         {"x": rand(1, 4, 3, 4, 5)}, ["y"], [init("w", rand(4, 3, 2, 2, 3)), init("b", rand(6))], opset=22)
    # LSTM with peephole weights and shorter sequence lengths (unrolled over the steps): both
    # directions, biases and initial states; reverse with lengths alone; batch-first reverse with
    # peepholes against onnx's reference (onnxruntime has no layout 1; the reference ignores
    # sequence_lens, so that case has none).
    S, B, I, H = 5, 3, 4, 3
    save("lstm_peepholes_lengths", [N("LSTM", ["x", "W", "R", "B", "lens", "h0", "c0", "P"], ["y", "hn", "cn"], hidden_size=H, direction="bidirectional")],
         {"x": rand(S, B, I), "h0": rand(2, B, H), "c0": rand(2, B, H)}, ["y", "hn", "cn"],
         [init("W", rand(2, 4 * H, I)), init("R", rand(2, 4 * H, H)), init("B", rand(2, 8 * H)), init("lens", np.array([5, 2, 4], np.int32)),
          init("P", rand(2, 3 * H))], opset=14)
    save("lstm_reverse_lengths", [N("LSTM", ["x", "W", "R", "", "lens"], ["y", "hn", "cn"], hidden_size=H, direction="reverse")],
         {"x": rand(S, B, I), "lens": np.array([3, 5, 1], np.int32)}, ["y", "hn", "cn"],
         [init("W", rand(1, 4 * H, I)), init("R", rand(1, 4 * H, H))], opset=14)
    save("lstm_peepholes_batch_first", [N("LSTM", ["x", "W", "R", "", "", "h0", "", "P"], ["y", "hn", "cn"], hidden_size=H, direction="reverse", layout=1)],
         {"x": rand(B, S, I), "h0": rand(B, 1, H)}, ["y", "hn", "cn"],
         [init("W", rand(1, 4 * H, I)), init("R", rand(1, 4 * H, H)), init("P", rand(1, 3 * H))], opset=14, reference="float64")


def reduction_cases():
    """ReduceMax / Min / Prod / L1 / L2 / LogSumExp / SumSquare (axes as an attribute before opset
    18, as an input from 18; keepdims; noop_with_empty_axes) and a JAX-style byte classifier.
    Drawn from their own generator, so writing them leaves the other fixtures as they are."""
    r = np.random.default_rng(20261205)
    x = r.uniform(-1.5, 1.5, size=(2, 4, 9, 7)).astype(np.float32)
    forms = [("ReduceMax", [2, 3], 1), ("ReduceMin", [-1], 0), ("ReduceProd", [1], 1), ("ReduceL1", [1, 3], 0),
             ("ReduceL2", [0, 2], 1), ("ReduceLogSumExp", [3], 0), ("ReduceSumSquare", [2], 1)]
    outs = [op[6:].lower() for op, _, _ in forms]
    save("reduce_kinds_axes_input", [N(op, ["x", f"axes_{o}"], [o], keepdims=k) for (op, _, k), o in zip(forms, outs)],
         {"x": x}, outs, [init(f"axes_{o}", np.array(a, np.int64)) for (_, a, _), o in zip(forms, outs)], opset=18)
    save("reduce_kinds_axes_attr", [N(op, ["x"], [o], axes=a, keepdims=k) for (op, a, k), o in zip(forms, outs)],
         {"x": x}, outs, opset=13)
    # Every axis (no axes given), the no-op form, and a product over non-adjacent axes dropped.
    save("reduce_kinds_empty_axes", [N("ReduceMax", ["x"], ["all_max"], keepdims=0), N("ReduceMin", ["x"], ["same"], noop_with_empty_axes=1),
                                     N("ReduceLogSumExp", ["x"], ["all_lse"], keepdims=1), N("ReduceProd", ["x", "ax"], ["prod13"], keepdims=0)],
         {"x": x}, ["all_max", "same", "all_lse", "prod13"], [init("ax", np.array([1, 3], np.int64))], opset=18)
    # A JAX-style byte classifier (as jax2onnx writes it): bytes -> Gather(embedding) -> Dense ->
    # ReLU -> ReduceMax over the sequence -> Dense.
    V, D, H, C = 256, 16, 24, 5
    ids = r.integers(0, V, size=(2, 12)).astype(np.int64)
    w = lambda *s: r.uniform(-0.5, 0.5, size=s).astype(np.float32)
    save("byte_classifier_reducemax",
         [N("Gather", ["table", "ids"], ["emb"], axis=0), N("MatMul", ["emb", "w1"], ["h0"]), N("Add", ["h0", "b1"], ["h1"]),
          N("Relu", ["h1"], ["h"]), N("ReduceMax", ["h", "seq_axis"], ["pooled"], keepdims=0),
          N("MatMul", ["pooled", "w2"], ["l0"]), N("Add", ["l0", "b2"], ["logits"])],
         {"ids": ids}, ["pooled", "logits"],
         [init("table", w(V, D)), init("w1", w(D, H)), init("b1", w(H)), init("seq_axis", np.array([1], np.int64)),
          init("w2", w(H, C)), init("b2", w(C))], opset=18)


def if_cases():
    """A voice-activity-like model: 1-D convs, then an If on a condition computed from shapes
    (Shape -> Gather -> Equal: one stream or a batch) whose branches read outer-scope tensors and
    hold their own initializers and Constant nodes; run with one stream (then) and two (else)."""
    r = np.random.default_rng(20261206)
    w = lambda *s: r.uniform(-0.5, 0.5, size=s).astype(np.float32)
    F = TP.FLOAT
    then_g = oh.make_graph([N("ReduceMean", ["r2", "ax_then"], ["p_then"], keepdims=0), N("MatMul", ["p_then", "wo"], ["m_then"]),
                            N("Add", ["m_then", "bo"], ["l_then"]), N("Sigmoid", ["l_then"], ["prob_then"])],
                           "single_stream", [], [vi("prob_then", F, None)], initializer=[init("ax_then", np.array([2], np.int64))])
    else_g = oh.make_graph([N("ReduceMax", ["r2", "ax_else"], ["p_else"], keepdims=0),
                            N("Constant", [], ["half"], value=nh.from_array(np.array(0.5, np.float32))),
                            N("Mul", ["p_else", "half"], ["q_else"]), N("MatMul", ["q_else", "wo"], ["m_else"]),
                            N("Add", ["m_else", "bo"], ["l_else"]), N("Sigmoid", ["l_else"], ["prob_else"])],
                           "batched", [], [vi("prob_else", F, None)], initializer=[init("ax_else", np.array([-1], np.int64))])
    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"], pads=[2, 2], strides=[2]), N("Relu", ["c1"], ["r1"]),
             N("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1]), N("Relu", ["c2"], ["r2"]),
             N("Shape", ["r2"], ["s"]), N("Gather", ["s", "i0"], ["n"], axis=0), N("Equal", ["n", "one"], ["single"]),
             N("If", ["single"], ["prob"], name="stream_or_batch", then_branch=then_g, else_branch=else_g)]
    inits = [init("w1", w(8, 1, 5)), init("b1", w(8)), init("w2", w(8, 8, 3)), init("b2", w(8)), init("wo", w(8, 2)), init("bo", w(2)),
             init("i0", np.array(0, np.int64)), init("one", np.array(1, np.int64))]
    for case, n in [("vad_if_then", 1), ("vad_if_else", 2)]:
        save(case, nodes, {"x": w(n, 1, 40)}, ["prob", "r2"], inits, opset=18, dims={"x": ["N", 1, "T"]})


def folded_shape_cases():
    """The Paddle2ONNX text-recogniser pattern: conv stages with stride (2, 1) (height halves, width
    kept; an odd height too), a max-pool with stride (2, 1), then Shape -> Slice -> Concat -> Reshape (the target
    folded at import from the inferred shape) -> Transpose -> MatMul; width symbolic."""
    r = np.random.default_rng(20261207)
    w = lambda *s: r.uniform(-0.5, 0.5, size=s).astype(np.float32)
    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1]), N("Relu", ["c1"], ["r1"]),
             N("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1]), N("Relu", ["c2"], ["r2"]),
             N("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 1], pads=[0, 0, 0, 1]),
             N("Conv", ["p", "w3", "b3"], ["c3"], kernel_shape=[3, 1], pads=[0, 0, 0, 0], strides=[2, 1]),
             N("Shape", ["c3"], ["s"]), N("Slice", ["s", "st", "en", "ax"], ["nc"]), N("Concat", ["nc", "minus1"], ["target"], axis=0),
             N("Reshape", ["c3", "target"], ["seq_cf"]), N("Transpose", ["seq_cf"], ["seq"], perm=[0, 2, 1]),
             N("MatMul", ["seq", "wo"], ["logits"])]
    inits = [init("w1", w(8, 3, 3, 3)), init("b1", w(8)), init("w2", w(12, 8, 3, 3)), init("b2", w(12)), init("w3", w(16, 12, 3, 1)), init("b3", w(16)),
             init("st", np.array([0], np.int64)), init("en", np.array([2], np.int64)), init("ax", np.array([0], np.int64)),
             init("minus1", np.array([-1], np.int64)), init("wo", w(16, 6))]
    for case, shape in [("paddle_ocr_stride21_reshape", (2, 3, 32, 25)), ("paddle_ocr_stride21_reshape_odd", (1, 3, 29, 7))]:
        save(case, nodes, {"x": w(*shape)}, ["c3", "seq_cf", "logits"], inits, opset=13, dims={"x": ["N", 3, "H", "W"]})


def batch_axis_cases():
    """A sequence-first LSTM as torch.onnx.export writes nn.LSTM (batch_first=False) with
    dynamic_axes {1: "batch"}: its batch is dimension 1 of the input and of the outputs (`quarry
    bench` must find it there and split micro-batches along it)."""
    T, B, I, H = 6, 4, 3, 5
    save("lstm_sequence_first",
         [N("LSTM", ["x", "W", "R", "B"], ["y", "hn", "cn"], hidden_size=H),
          N("Squeeze", ["y", "one"], ["out"])],
         {"x": rand(T, B, I)}, ["out", "hn"],
         [init("W", rand(1, 4 * H, I)), init("R", rand(1, 4 * H, H)), init("B", rand(1, 8 * H)),
          init("one", np.array([1], np.int64))], opset=14, dims={"x": [T, "batch", I]})


def composed_cases():
    """Tile, DepthToSpace / SpaceToDepth, Einsum, RMSNormalization and RotaryEmbedding (composed
    of other graph ops at import) in exporter-style graphs, against onnxruntime: a super-resolution
    tail (Conv -> DepthToSpace CRD as torch.nn.PixelShuffle exports it, then SpaceToDepth and a
    Tile fed its repeats as an initializer), an attention core written as Einsums, and a Llama-style
    prologue (RMSNormalization, heads, RotaryEmbedding with int64 position_ids, scores as Einsum).
    Drawn from their own generator, so writing them leaves the other fixtures as they are."""
    r = np.random.default_rng(20261205 + 18)
    w = lambda *s: r.uniform(-0.5, 0.5, size=s).astype(np.float32)
    save("pixel_shuffle_tile",
         [N("Conv", ["x", "wc", "bc"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
          N("DepthToSpace", ["c"], ["up"], blocksize=2, mode="CRD"), N("SpaceToDepth", ["up"], ["down"], blocksize=2),
          N("DepthToSpace", ["down"], ["dcr"], blocksize=2, mode="DCR"), N("Tile", ["dcr", "reps"], ["tiled"])],
         {"x": w(2, 3, 5, 6)}, ["up", "down", "dcr", "tiled"],
         [init("wc", w(12, 3, 3, 3)), init("bc", w(12)), init("reps", np.array([1, 2, 1, 3], np.int64))], opset=17)
    B, S, H, D = 2, 5, 3, 8
    save("einsum_attention",
         [N("MatMul", ["x", "wq"], ["q0"]), N("Reshape", ["q0", "heads"], ["q1"]),
          N("MatMul", ["x", "wk"], ["k0"]), N("Reshape", ["k0", "heads"], ["k1"]),
          N("MatMul", ["x", "wv"], ["v0"]), N("Reshape", ["v0", "heads"], ["v1"]),
          N("Einsum", ["q1", "k1"], ["scores"], equation="bihd,bjhd->bhij"), N("Softmax", ["scores"], ["p"], axis=-1),
          N("Einsum", ["p", "v1"], ["ctx"], equation="bhij,bjhd->bihd"), N("Reshape", ["ctx", "merged"], ["ctx2"]),
          N("Einsum", ["ctx2", "wo"], ["y"], equation="...i,oi->...o"), N("Einsum", ["y"], ["pooled"], equation="bsd->bd")],
         {"x": w(B, S, H * D)}, ["scores", "y", "pooled"],
         [init("wq", w(H * D, H * D)), init("wk", w(H * D, H * D)), init("wv", w(H * D, H * D)), init("wo", w(16, H * D)),
          init("heads", np.array([B, S, H, D], np.int64)), init("merged", np.array([B, S, H * D], np.int64))], opset=17)
    pos = r.integers(0, 16, size=(B, S)).astype(np.int64)
    inv = 1.0 / 10000 ** (np.arange(0, D, 2) / D)
    ang = np.arange(16)[:, None] * inv[None, :]
    save("llama_prologue",
         [N("RMSNormalization", ["x", "g"], ["n"], epsilon=1e-6), N("MatMul", ["n", "wq"], ["q0"]), N("Reshape", ["q0", "heads"], ["q1"]),
          N("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]), N("RotaryEmbedding", ["q", "cos", "sin", "pos"], ["qr"]),
          N("RotaryEmbedding", ["n", "cos", "sin", "pos"], ["kr"], num_heads=H, interleaved=1),
          N("Reshape", ["kr", "heads"], ["k1"]), N("Einsum", ["qr", "k1"], ["scores"], equation="bhid,bjhd->bhij")],
         {"x": w(B, S, H * D), "pos": pos}, ["n", "qr", "kr", "scores"],
         [init("g", r.uniform(0.5, 1.5, size=(H * D,)).astype(np.float32)), init("wq", w(H * D, H * D)),
          init("heads", np.array([B, S, H, D], np.int64)), init("cos", np.cos(ang).astype(np.float32)), init("sin", np.sin(ang).astype(np.float32))],
         opset=23)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", metavar="DIR", help="write the acceptance models into DIR instead")
    ap.add_argument("--only", choices=["small", "reductions", "if", "folded-shapes", "batch-axes", "composed"], help="write only this group of fixtures")
    args = ap.parse_args()
    if args.big:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import make_big_onnx_models
        make_big_onnx_models.main(args.big)
    else:
        if args.only in (None, "small"):
            small_cases()
        if args.only in (None, "reductions"):
            reduction_cases()
        if args.only in (None, "if"):
            if_cases()
        if args.only in (None, "folded-shapes"):
            folded_shape_cases()
        if args.only in (None, "batch-axes"):
            batch_axis_cases()
        if args.only in (None, "composed"):
            composed_cases()
        print("fixtures written to", os.path.normpath(ROOT))
