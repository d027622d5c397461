#!/usr/bin/env python3
"""Writes the ONNX files of the peer benchmark (bench/peer_onnxruntime.py) with random weights.

torch is not installed here, so the graphs are built with onnx.helper in the form that
torch.onnx.export (opset 17, eval mode) gives for the torchvision / Hugging Face modules:
batch norm already folded into each convolution's bias, ReLU6 as Clip with constant bounds,
classifier heads as Gemm with transB=1, BERT's attention as MatMul / Reshape / Transpose /
Softmax with the additive mask built from an int64 attention_mask, GELU in its erf form,
and nn.LSTM (sequence first, PyTorch's default) as LSTM / Squeeze with PyTorch's gate order
rewritten to ONNX's (i, o, f, c): its batch is dimension 1. With --dynamic (what the peer benchmark uses) the batch
dimension is the symbol "batch", as torch.onnx.export(dynamic_axes={...: {0: "batch"}}) gives,
and BERT's reshapes copy it with 0: one file per model, NAME.onnx. Without it every file has a
fixed batch size (an export without dynamic_axes), one file per model and batch: NAME_bB.onnx.

    python3 bench/make_peer_models.py --out bench/out/peer --dynamic
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Builder:
    def __init__(self, name, seed):
        self.name = name
        self.nodes = []
        self.inits = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def fresh(self, base):
        self.count += 1
        return f"/{base}_{self.count}"

    def const(self, base, array):
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, base=None, outputs=1, **attrs):
        names = [self.fresh((base or op_type) + "_out") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.fresh(base or op_type), **attrs))
        return names[0] if outputs == 1 else names

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape, bound):
        return self.rng.uniform(-bound, bound, shape).astype(np.float32)

    # Layers ---------------------------------------------------------------------------------

    def conv(self, x, cin, cout, k, stride=1, pad=0, groups=1, base="conv"):
        """Convolution with its batch norm folded in (He-initialised weight, small bias)."""
        fan_in = cin // groups * k * k
        w = self.const(base + ".weight", self.normal((cout, cin // groups, k, k), np.sqrt(2.0 / fan_in)))
        b = self.const(base + ".bias", self.normal((cout,), 0.05))
        return self.op("Conv", [x, w, b], base, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad, pad, pad, pad], dilations=[1, 1], group=groups)

    def relu(self, x):
        return self.op("Relu", [x])

    def relu6(self, x):
        lo = self.const("clip_min", np.array(0, dtype=np.float32))
        hi = self.const("clip_max", np.array(6, dtype=np.float32))
        return self.op("Clip", [x, lo, hi])

    def gemm(self, x, fin, fout, base="fc"):
        w = self.const(base + ".weight", self.uniform((fout, fin), 1 / np.sqrt(fin)))
        b = self.const(base + ".bias", self.uniform((fout,), 1 / np.sqrt(fin)))
        return self.op("Gemm", [x, w, b], base, alpha=1.0, beta=1.0, transB=1)

    def linear3d(self, x, fin, fout, std=0.02, base="linear"):
        """nn.Linear on a [B, T, F] tensor: MatMul by the transposed weight, then Add the bias."""
        w = self.const(base + ".weight", self.normal((fin, fout), std))
        b = self.const(base + ".bias", self.normal((fout,), std))
        return self.op("Add", [self.op("MatMul", [x, w], base), b])

    def layer_norm(self, x, width, eps=1e-12):
        g = self.const("ln.weight", np.ones(width, np.float32))
        b = self.const("ln.bias", np.zeros(width, np.float32))
        return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    def model(self, inputs, outputs):
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="quarry-peer")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def image_input(batch):
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 224, 224])


def logits_output(b, x, batch, classes=1000):
    out = b.op("Identity", [x])
    b.nodes[-1].output[0] = "output"
    return helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])


def resnet50(batch, seed):
    """torchvision resnet50 (v1.5: the stride is in the 3x3 of each bottleneck)."""
    b = Builder("resnet50", seed)
    x = b.relu(b.conv("input", 3, 64, 7, 2, 3))
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = b.relu(b.conv(x, cin, width, 1))
            y = b.relu(b.conv(y, width, width, 3, s, 1))
            y = b.conv(y, width, width * 4, 1)
            short = b.conv(x, cin, width * 4, 1, s) if i == 0 else x
            x = b.relu(b.op("Add", [y, short]))
            cin = width * 4
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    x = b.gemm(x, 2048, 1000)
    return b.model([image_input(batch)], [logits_output(b, x, batch)])


def mobilenet_v2(batch, seed):
    """torchvision mobilenet_v2 (width 1.0); the classifier's dropout is gone in eval mode."""
    b = Builder("mobilenet_v2", seed)
    x = b.relu6(b.conv("input", 3, 32, 3, 2, 1))
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = b.relu6(b.conv(y, cin, hidden, 1))
            y = b.relu6(b.conv(y, hidden, hidden, 3, stride, 1, groups=hidden))
            y = b.conv(y, hidden, c, 1)
            x = b.op("Add", [x, y]) if stride == 1 and cin == c else y
            cin = c
    x = b.relu6(b.conv(x, cin, 1280, 1))
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    x = b.gemm(x, 1280, 1000)
    return b.model([image_input(batch)], [logits_output(b, x, batch)])


def vgg16(batch, seed):
    """torchvision vgg16 (no batch norm); adaptive_avg_pool2d to 7x7 of a 7x7 map exports as a 1x1 AveragePool."""
    b = Builder("vgg16", seed)
    x, cin = "input", 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        else:
            x = b.relu(b.conv(x, cin, v, 3, 1, 1))
            cin = v
    x = b.op("AveragePool", [x], kernel_shape=[1, 1], strides=[1, 1])
    x = b.op("Flatten", [x], axis=1)
    x = b.relu(b.gemm(x, 512 * 7 * 7, 4096))
    x = b.relu(b.gemm(x, 4096, 4096))
    x = b.gemm(x, 4096, 1000)
    return b.model([image_input(batch)], [logits_output(b, x, batch)])


def bert_base(batch, seed, seq=128):
    """Hugging Face BertModel (bert-base-uncased sizes), last_hidden_state; token_type_ids all 0."""
    hidden, heads, layers, inter, vocab = 768, 12, 12, 3072, 30522
    hd = hidden // heads
    b = Builder("bert_base", seed)
    word = b.const("word_embeddings", b.normal((vocab, hidden), 0.02))
    pos = b.const("position_embeddings", b.normal((512, hidden), 0.02))
    typ = b.const("token_type_embeddings", b.normal((2, hidden), 0.02))
    pos_ids = b.const("position_ids", np.arange(seq, dtype=np.int64)[None, :])
    type_ids = b.const("token_type_ids", np.zeros((1, seq), dtype=np.int64))
    x = b.op("Add", [b.op("Gather", [word, "input_ids"], axis=0), b.op("Gather", [typ, type_ids], axis=0)])
    x = b.op("Add", [x, b.op("Gather", [pos, pos_ids], axis=0)])
    x = b.layer_norm(x, hidden)
    # extended_attention_mask = (1 - mask[:, None, None, :]) * -10000
    m = b.op("Unsqueeze", ["attention_mask", b.const("axes", np.array([1, 2], np.int64))])
    m = b.op("Cast", [m], to=TensorProto.FLOAT)
    m = b.op("Sub", [b.const("one", np.array(1, np.float32)), m])
    mask = b.op("Mul", [m, b.const("neg", np.array(-10000, np.float32))])
    split_shape = b.const("shape", np.array([0, seq, heads, hd], np.int64))
    merge_shape = b.const("shape", np.array([0, seq, hidden], np.int64))
    scale = b.const("scale", np.array(np.sqrt(hd), np.float32))
    for _ in range(layers):
        def heads_of(t, perm):
            return b.op("Transpose", [b.op("Reshape", [t, split_shape])], perm=perm)
        q = heads_of(b.linear3d(x, hidden, hidden, base="query"), [0, 2, 1, 3])
        k = heads_of(b.linear3d(x, hidden, hidden, base="key"), [0, 2, 3, 1])
        v = heads_of(b.linear3d(x, hidden, hidden, base="value"), [0, 2, 1, 3])
        scores = b.op("Add", [b.op("Div", [b.op("MatMul", [q, k]), scale]), mask])
        probs = b.op("Softmax", [scores], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, merge_shape])
        x = b.layer_norm(b.op("Add", [b.linear3d(ctx, hidden, hidden, base="attention.output"), x]), hidden)
        h = b.linear3d(x, hidden, inter, base="intermediate")
        erf = b.op("Erf", [b.op("Div", [h, b.const("sqrt2", np.array(np.sqrt(2), np.float32))])])
        h = b.op("Mul", [b.op("Mul", [h, b.op("Add", [erf, b.const("one", np.array(1, np.float32))])]),
                         b.const("half", np.array(0.5, np.float32))])
        x = b.layer_norm(b.op("Add", [b.linear3d(h, inter, hidden, base="output"), x]), hidden)
    b.op("Identity", [x])
    b.nodes[-1].output[0] = "last_hidden_state"
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, seq])]
    return b.model(inputs, [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [batch, seq, hidden])])


def lstm(batch, seed, steps=64, fin=256, hidden=512):
    """nn.LSTM(256, 512) over 64 steps, sequence first as PyTorch's default (batch_first=False)
    exports it: input [steps, batch, 256], output = the whole hidden sequence [steps, batch, 512].
    Its batch is dimension 1, which `quarry bench` finds from the symbol's name."""
    b = Builder("lstm", seed)
    bound = 1 / np.sqrt(hidden)
    w = b.const("W", b.uniform((1, 4 * hidden, fin), bound))
    r = b.const("R", b.uniform((1, 4 * hidden, hidden), bound))
    bias = b.const("B", b.uniform((1, 8 * hidden), bound))
    y, _, _ = b.op("LSTM", ["input", w, r, bias], outputs=3, hidden_size=hidden, direction="forward")
    b.op("Squeeze", [y, b.const("axes", np.array([1], np.int64))])
    b.nodes[-1].output[0] = "output"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [steps, batch, fin])]
    return b.model(inputs, [helper.make_tensor_value_info("output", TensorProto.FLOAT, [steps, batch, hidden])])


MODELS = {"resnet50": resnet50, "mobilenet_v2": mobilenet_v2, "vgg16": vgg16, "bert_base": bert_base, "lstm": lstm}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/out/peer")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dynamic", action="store_true", help="one file per model with a symbolic batch dimension")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.models:
        for batch in ["batch"] if a.dynamic else a.batches:
            path = os.path.join(a.out, f"{name}.onnx" if a.dynamic else f"{name}_b{batch}.onnx")
            if os.path.exists(path):
                print(f"{path} exists")
                continue
            model = MODELS[name](batch, a.seed)
            onnx.save(model, path)
            print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
