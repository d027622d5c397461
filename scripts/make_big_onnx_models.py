#!/usr/bin/env python3
"""The acceptance models, built with onnx.helper the way torch.onnx.export (opset 17, eval mode,
constant folding on, dynamic batch / sequence axes) writes them, with random weights:

  resnet50.onnx     torchvision ResNet-50: BN folded into Conv biases, MaxPool, residual Add,
                    GlobalAveragePool → Flatten → Gemm(transB=1); input [batch, 3, 224, 224]
  mobilenetv2.onnx  torchvision MobileNetV2: Conv + Clip(0, 6), depthwise Conv (group = C),
                    inverted residuals, GlobalAveragePool → Flatten → Gemm
  bert.onnx         Hugging Face BERT-base encoder (12 layers, 768 wide, 12 heads): Gather embeddings,
                    position ids sliced from a buffer by a Shape subgraph, extended attention mask
                    (Unsqueeze, Cast, Sub, Mul by float32 min), per-head Reshape targets built by
                    Shape → Gather → Unsqueeze → Concat, MatMul + Add linears, erf GELU,
                    LayerNormalization; inputs input_ids / attention_mask [batch, sequence] int64

Each model gets inputs.npz and outputs.npz (onnxruntime) beside it. torch itself is not needed
(torch.onnx.export would produce the same operator patterns; torch is too large to install here).
Run:  python3 scripts/make_onnx_fixtures.py --big /tmp/quarry-big
Then: QUARRY_BIG_ONNX_DIR=/tmp/quarry-big swift test --filter OnnxAcceptanceTests
"""
import os
import numpy as np
import onnx
from onnx import helper as oh, TensorProto as TP, numpy_helper as nh
import onnxruntime as ort

rng = np.random.default_rng(50)


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def init(self, arr, name=None):
        self.count += 1
        name = name or f"onnx::Init_{self.count}"
        self.inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, name, n_out=1, **attrs):
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(oh.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k, stride, pad, name, group=1):
        # Batch norm folded into the conv by the exporter: weight and bias only.
        fan = cin // group * k * k
        w = self.init((rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan)).astype(np.float32), f"onnx::Conv_{self.count + 1}")
        b = self.init((rng.standard_normal(cout) * 0.05).astype(np.float32), f"onnx::Conv_{self.count + 1}")
        return self.op("Conv", [x, w, b], f"{name}/Conv", dilations=[1, 1], group=group, kernel_shape=[k, k],
                       pads=[pad] * 4, strides=[stride, stride])

    def model(self, inputs, outputs, path):
        g = oh.make_graph(self.nodes, "main_graph", inputs, outputs, self.inits)
        m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)], producer_name="pytorch", producer_version="2.3.0")
        m.ir_version = 8
        onnx.save(m, path)


def resnet50(path):
    b = Builder()
    x = b.conv("input", 3, 64, 7, 2, 3, "/conv1")
    x = b.op("Relu", [x], "/relu/Relu")
    x = b.op("MaxPool", [x], "/maxpool/MaxPool", ceil_mode=0, dilations=[1, 1], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    cin = 64
    for li, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for bi in range(blocks):
            s = stride if bi == 0 else 1
            p = f"/layer{li}/layer{li}.{bi}"
            y = b.op("Relu", [b.conv(x, cin, width, 1, 1, 0, f"{p}/conv1")], f"{p}/relu/Relu")
            y = b.op("Relu", [b.conv(y, width, width, 3, s, 1, f"{p}/conv2")], f"{p}/relu_1/Relu")
            y = b.conv(y, width, width * 4, 1, 1, 0, f"{p}/conv3")
            sc = b.conv(x, cin, width * 4, 1, s, 0, f"{p}/downsample/downsample.0") if bi == 0 else x
            x = b.op("Relu", [b.op("Add", [y, sc], f"{p}/Add")], f"{p}/relu_2/Relu")
            cin = width * 4
    x = b.op("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")
    x = b.op("Flatten", [x], "/Flatten", axis=1)
    w = b.init((rng.standard_normal((1000, 2048)) * 0.02).astype(np.float32), "fc.weight")
    bias = b.init(np.zeros(1000, np.float32), "fc.bias")
    b.nodes.append(oh.make_node("Gemm", [x, w, bias], ["output"], name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1))
    b.model([oh.make_tensor_value_info("input", TP.FLOAT, ["batch", 3, 224, 224])],
            [oh.make_tensor_value_info("output", TP.FLOAT, ["batch", 1000])], path)
    return {"input": rng.standard_normal((2, 3, 224, 224)).astype(np.float32)}


def mobilenetv2(path):
    b = Builder()
    lo, hi = b.init(np.float32(0), "onnx::Clip_lo"), b.init(np.float32(6), "onnx::Clip_hi")

    def cbr(x, cin, cout, k, s, name, group=1):
        y = b.conv(x, cin, cout, k, s, (k - 1) // 2, name, group)
        return b.op("Clip", [y, lo, hi], f"{name}/Clip")

    x = cbr("input", 3, 32, 3, 2, "/features/features.0/features.0.0")
    cin, idx = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"/features/features.{idx}/conv"
            hidden = cin * t
            y = x
            if t != 1:
                y = cbr(y, cin, hidden, 1, 1, f"{p}/conv.0/conv.0.0")
            y = cbr(y, hidden, hidden, 3, stride, f"{p}/conv.{1 if t != 1 else 0}/conv.{1 if t != 1 else 0}.0", group=hidden)
            y = b.conv(y, hidden, c, 1, 1, 0, f"{p}/conv.{2 if t != 1 else 1}")
            x = b.op("Add", [x, y], f"/features/features.{idx}/Add") if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    x = cbr(x, cin, 1280, 1, 1, "/features/features.18/features.18.0")
    x = b.op("GlobalAveragePool", [x], "/GlobalAveragePool")
    x = b.op("Flatten", [x], "/Flatten", axis=1)
    w = b.init((rng.standard_normal((1000, 1280)) * 0.02).astype(np.float32), "classifier.1.weight")
    bias = b.init(np.zeros(1000, np.float32), "classifier.1.bias")
    b.nodes.append(oh.make_node("Gemm", [x, w, bias], ["output"], name="/classifier/classifier.1/Gemm", alpha=1.0, beta=1.0, transB=1))
    b.model([oh.make_tensor_value_info("input", TP.FLOAT, ["batch", 3, 224, 224])],
            [oh.make_tensor_value_info("output", TP.FLOAT, ["batch", 1000])], path)
    return {"input": rng.standard_normal((2, 3, 224, 224)).astype(np.float32)}


def bert(path, layers=12, d=768, heads=12, ff=3072, vocab=30522, max_pos=512):
    b = Builder()
    normal = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)
    i64 = lambda v: np.array(v, np.int64)
    word = b.init(normal(vocab, d), "embeddings.word_embeddings.weight")
    pos = b.init(normal(max_pos, d), "embeddings.position_embeddings.weight")
    typ = b.init(normal(2, d), "embeddings.token_type_embeddings.weight")
    pos_ids = b.init(np.arange(max_pos, dtype=np.int64)[None, :], "embeddings.position_ids")
    tok_ids = b.init(np.zeros((1, max_pos), np.int64), "embeddings.token_type_ids")

    def ln(x, name):
        g = b.init(np.ones(d, np.float32) + normal(d), f"{name}.weight")
        bb = b.init(normal(d), f"{name}.bias")
        return b.op("LayerNormalization", [x, g, bb], f"/{name.replace('.', '/')}/LayerNormalization", axis=-1, epsilon=1e-12)

    def linear(x, cin, cout, name):
        w = b.init(normal(cin, cout), f"onnx::MatMul_{b.count + 1}")  # stored transposed, as exported
        bias = b.init(normal(cout), f"{name}.bias")
        y = b.op("MatMul", [x, w], f"/{name.replace('.', '/')}/MatMul")
        return b.op("Add", [bias, y], f"/{name.replace('.', '/')}/Add")

    def dim(x, axis, name):
        shp = b.op("Shape", [x], f"{name}/Shape")
        g = b.op("Gather", [shp, b.init(i64(axis))], f"{name}/Gather", axis=0)
        return b.op("Unsqueeze", [g, b.init(i64([0]))], f"{name}/Unsqueeze")

    # Embeddings: position ids and token type ids sliced from buffers to the sequence length.
    seq = dim("input_ids", 1, "/embeddings/seq")
    pid = b.op("Slice", [pos_ids, b.init(i64([0])), seq, b.init(i64([1])), b.init(i64([1]))], "/embeddings/Slice")
    tid = b.op("Slice", [tok_ids, b.init(i64([0])), seq, b.init(i64([1])), b.init(i64([1]))], "/embeddings/Slice_1")
    bsz = dim("input_ids", 0, "/embeddings/batch")
    tshape = b.op("Concat", [bsz, seq], "/embeddings/Concat", axis=0)
    tid = b.op("Expand", [tid, tshape], "/embeddings/Expand")
    e = b.op("Gather", [word, "input_ids"], "/embeddings/word_embeddings/Gather", axis=0)
    t = b.op("Gather", [typ, tid], "/embeddings/token_type_embeddings/Gather", axis=0)
    x = b.op("Add", [e, t], "/embeddings/Add")
    p = b.op("Gather", [pos, pid], "/embeddings/position_embeddings/Gather", axis=0)
    x = b.op("Add", [x, p], "/embeddings/Add_1")
    x = ln(x, "embeddings.LayerNorm")
    # Extended attention mask: (1 - mask[:, None, None, :]) * finfo(float32).min
    m = b.op("Unsqueeze", ["attention_mask", b.init(i64([1]))], "/Unsqueeze")
    m = b.op("Unsqueeze", [m, b.init(i64([2]))], "/Unsqueeze_1")
    m = b.op("Cast", [m], "/Cast", to=TP.FLOAT)
    m = b.op("Sub", [b.init(np.float32(1.0)), m], "/Sub")
    mask = b.op("Mul", [m, b.init(np.float32(np.finfo(np.float32).min))], "/Mul")
    hd = d // heads
    for li in range(layers):
        p = f"encoder.layer.{li}"
        P = f"/encoder/layer.{li}"

        def heads_view(y, name):
            shape = b.op("Concat", [dim(y, 0, f"{name}/b"), dim(y, 1, f"{name}/s"), b.init(i64([heads])), b.init(i64([hd]))], f"{name}/Concat", axis=0)
            y = b.op("Reshape", [y, shape], f"{name}/Reshape")
            return y

        q = heads_view(linear(x, d, d, f"{p}.attention.self.query"), f"{P}/attention/self/q")
        k = heads_view(linear(x, d, d, f"{p}.attention.self.key"), f"{P}/attention/self/k")
        v = heads_view(linear(x, d, d, f"{p}.attention.self.value"), f"{P}/attention/self/v")
        q = b.op("Transpose", [q], f"{P}/attention/self/Transpose", perm=[0, 2, 1, 3])
        k = b.op("Transpose", [k], f"{P}/attention/self/Transpose_1", perm=[0, 2, 3, 1])
        v = b.op("Transpose", [v], f"{P}/attention/self/Transpose_2", perm=[0, 2, 1, 3])
        s = b.op("MatMul", [q, k], f"{P}/attention/self/MatMul")
        s = b.op("Div", [s, b.init(np.float32(np.sqrt(hd)))], f"{P}/attention/self/Div")
        s = b.op("Add", [s, mask], f"{P}/attention/self/Add")
        s = b.op("Softmax", [s], f"{P}/attention/self/Softmax", axis=-1)
        c = b.op("MatMul", [s, v], f"{P}/attention/self/MatMul_1")
        c = b.op("Transpose", [c], f"{P}/attention/self/Transpose_3", perm=[0, 2, 1, 3])
        cshape = b.op("Concat", [dim(c, 0, f"{P}/attention/self/cb"), dim(c, 1, f"{P}/attention/self/cs"), b.init(i64([d]))], f"{P}/attention/self/Concat_3", axis=0)
        c = b.op("Reshape", [c, cshape], f"{P}/attention/self/Reshape_3")
        a = linear(c, d, d, f"{p}.attention.output.dense")
        x = ln(b.op("Add", [a, x], f"{P}/attention/output/Add"), f"{p}.attention.output.LayerNorm")
        h = linear(x, d, ff, f"{p}.intermediate.dense")
        # erf GELU as PyTorch exports it at opset 17.
        g = b.op("Div", [h, b.init(np.float32(np.sqrt(2.0)))], f"{P}/intermediate/intermediate_act_fn/Div")
        g = b.op("Erf", [g], f"{P}/intermediate/intermediate_act_fn/Erf")
        g = b.op("Add", [g, b.init(np.float32(1.0))], f"{P}/intermediate/intermediate_act_fn/Add")
        g = b.op("Mul", [h, g], f"{P}/intermediate/intermediate_act_fn/Mul")
        g = b.op("Mul", [g, b.init(np.float32(0.5))], f"{P}/intermediate/intermediate_act_fn/Mul_1")
        o = linear(g, ff, d, f"{p}.output.dense")
        x = ln(b.op("Add", [o, x], f"{P}/output/Add"), f"{p}.output.LayerNorm")
    b.nodes.append(oh.make_node("Identity", [x], ["last_hidden_state"], name="/Identity"))
    b.model([oh.make_tensor_value_info("input_ids", TP.INT64, ["batch", "sequence"]),
             oh.make_tensor_value_info("attention_mask", TP.INT64, ["batch", "sequence"])],
            [oh.make_tensor_value_info("last_hidden_state", TP.FLOAT, ["batch", "sequence", d])], path)
    ids = rng.integers(0, vocab, size=(2, 16)).astype(np.int64)
    mask_in = np.ones((2, 16), np.int64)
    mask_in[1, 11:] = 0
    return {"input_ids": ids, "attention_mask": mask_in}


def main(out):
    for name, make in [("resnet50", resnet50), ("mobilenetv2", mobilenetv2), ("bert", bert)]:
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "model.onnx")
        feeds = make(path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outs = [o.name for o in sess.get_outputs()]
        res = sess.run(outs, feeds)
        np.savez(os.path.join(folder, "inputs.npz"), **feeds)
        for k, v in feeds.items():
            np.save(os.path.join(folder, f"{k}.npy"), v)
        np.savez(os.path.join(folder, "outputs.npz"), **dict(zip(outs, res)))
        print(name, path, os.path.getsize(path) // (1 << 20), "MiB", {o: r.shape for o, r in zip(outs, res)})


if __name__ == "__main__":
    import sys
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/quarry-big")
