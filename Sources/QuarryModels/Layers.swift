import Quarry

// The PyTorch modules the zoo is written in, as GraphBuilder helpers. Each helper declares its
// parameters under the module's dotted name with PyTorch's suffixes (weight, bias, running_mean,
// running_var), so a checkpoint's state_dict keys name them directly, and names its node like the
// module so the module's output is a tap.

extension GraphBuilder {
    /// nn.Conv2d. Weights: Kaiming normal over `fan` — torchvision's CNNs use fan_out
    /// (out * kh * kw) in their `_init_weights`; pass `fanIn: true` for PyTorch's default fan_in.
    func conv2d(
        _ name: String, _ x: Value, in inC: Int, out outC: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
        padding: Padding2D = .zero, groups: Int = 1, bias: Bool = false, fanIn: Bool = false,
        initializer: ParameterInit? = nil
    ) -> Value {
        let fan = fanIn ? (inC / groups) * kernel.0 * kernel.1 : (outC / groups) * kernel.0 * kernel.1
        let w = parameter("\(name).weight", shape: [outC, inC / groups, kernel.0, kernel.1],
                          initializer: initializer ?? .he(fanIn: fan))
        let b = bias ? parameter("\(name).bias", shape: [outC], initializer: .constant(0)) : nil
        return add(name, .conv2d(Conv2DAttributes(kernel: kernel, stride: stride, padding: padding, groups: groups)), x, w, b)
    }

    /// Square-kernel nn.Conv2d.
    func conv2d(
        _ name: String, _ x: Value, in inC: Int, out outC: Int, kernel k: Int, stride s: Int = 1, padding p: Int = 0,
        groups: Int = 1, bias: Bool = false, fanIn: Bool = false, initializer: ParameterInit? = nil
    ) -> Value {
        conv2d(name, x, in: inC, out: outC, kernel: (k, k), stride: (s, s), padding: Padding2D(p), groups: groups,
               bias: bias, fanIn: fanIn, initializer: initializer)
    }

    /// nn.ConvTranspose2d (weight [in, out / groups, kh, kw]).
    func convTranspose2d(
        _ name: String, _ x: Value, in inC: Int, out outC: Int, kernel k: Int, stride s: Int = 1, padding p: Int = 0,
        outputPadding op: Int = 0, bias: Bool = true
    ) -> Value {
        let w = parameter("\(name).weight", shape: [inC, outC, k, k], initializer: .he(fanIn: outC * k * k))
        let b = bias ? parameter("\(name).bias", shape: [outC], initializer: .constant(0)) : nil
        let attrs = ConvTranspose2DAttributes(kernel: (k, k), stride: (s, s), padding: Padding2D(p), outputPadding: (op, op))
        return add(name, .convTranspose2d(attrs), x, w, b)
    }

    /// nn.BatchNorm2d in inference mode: weight 1, bias 0, and the running statistics as buffers
    /// (needed to run, not counted as parameters, as in PyTorch).
    func batchNorm(_ name: String, _ x: Value, channels c: Int, epsilon: Float = 1e-5) -> Value {
        let g = parameter("\(name).weight", shape: [c], initializer: .constant(1))
        let b = parameter("\(name).bias", shape: [c], initializer: .constant(0))
        let m = parameter("\(name).running_mean", shape: [c], initializer: .constant(0), isBuffer: true)
        let v = parameter("\(name).running_var", shape: [c], initializer: .constant(1), isBuffer: true)
        return add(name, .batchNorm(epsilon: epsilon), x, g, b, m, v)
    }

    /// nn.Linear (weight [out, in]).
    func linear(
        _ name: String, _ x: Value, in inF: Int, out outF: Int, bias: Bool = true,
        initializer: ParameterInit? = nil
    ) -> Value {
        let w = parameter("\(name).weight", shape: [outF, inF],
                          initializer: initializer ?? .xavier(fanIn: inF, fanOut: outF))
        let b = bias ? parameter("\(name).bias", shape: [outF], initializer: .constant(0)) : nil
        return add(name, .dense(activation: nil), x, w, b)
    }

    /// transformers' Conv1D (GPT-2): y = x · W + b with W stored [in, out] as in the checkpoint,
    /// so the product is a matmul rather than a dense layer (whose weight is [out, in]).
    func conv1D(_ name: String, _ x: Value, in inF: Int, out outF: Int, std: Float = 0.02) -> Value {
        let w = parameter("\(name).weight", shape: [inF, outF], initializer: .normal(std: std))
        let b = parameter("\(name).bias", shape: [outF], initializer: .constant(0))
        let y = add("\(name).matmul", .matmul(transposeA: false, transposeB: false), x, w)
        return add(name, .binary(.add, activation: nil), y, b)
    }

    /// nn.LayerNorm over the last dimension.
    func layerNorm(_ name: String, _ x: Value, dim: Int, epsilon: Float) -> Value {
        let g = parameter("\(name).weight", shape: [dim], initializer: .constant(1))
        let b = parameter("\(name).bias", shape: [dim], initializer: .constant(0))
        return add(name, .layerNorm(epsilon: epsilon, normalizedDims: 1), x, g, b)
    }

    func activation(_ name: String, _ a: Activation, _ x: Value) -> Value {
        add(name, .activation(a), x)
    }

    /// nn.Identity / nn.Dropout at inference: a node of its own so the value has the module's name.
    func identity(_ name: String, _ x: Value) -> Value {
        add(name, .identity, x)
    }

    func sum(_ name: String, _ a: Value, _ b: Value, activation: Activation? = nil) -> Value {
        add(name, .binary(.add, activation: activation), a, b)
    }

    func concat(_ name: String, _ xs: [Value], axis: Int = 1) -> Value {
        node(name, .concat(axis: axis), xs)[0]
    }

    func maxPool(_ name: String, _ x: Value, kernel k: Int, stride s: Int? = nil, padding p: Int = 0, ceilMode: Bool = false) -> Value {
        add(name, .maxPool2d(Pool2DAttributes(kernel: (k, k), stride: s.map { ($0, $0) }, padding: Padding2D(p), ceilMode: ceilMode)), x)
    }

    func avgPool(_ name: String, _ x: Value, kernel k: Int, stride s: Int? = nil, padding p: Int = 0, countIncludePad: Bool = true) -> Value {
        add(name, .avgPool2d(Pool2DAttributes(kernel: (k, k), stride: s.map { ($0, $0) }, padding: Padding2D(p), countIncludePad: countIncludePad)), x)
    }

    /// The concrete shape of `v` for a batch of one, from the graph built so far; builders use it
    /// where the reference's layer depends on the incoming size (adaptive pooling).
    func shapeForOneItem(_ v: Value) throws -> [Int] {
        let g = build(outputs: [v])
        let shapes = try g.inferShapes(inputShapes: g.concreteInputShapes())
        guard let s = shapes[v.name] else { throw QuarryError.unknownValue(v.name) }
        return s
    }

    /// nn.AdaptiveAvgPool2d((outH, outW)) for the size `x` has in this graph. The reference's bins
    /// become one fixed op: global pooling, a pooling window when the size divides evenly, or a
    /// nearest upsample when the output is a whole multiple of the input (each bin is one pixel).
    func adaptiveAvgPool(_ name: String, _ x: Value, output: (Int, Int)) throws -> Value {
        let s = try shapeForOneItem(x)
        let (h, w) = (s[2], s[3])
        if output == (1, 1) { return add(name, .globalAvgPool, x) }
        if h == output.0 && w == output.1 { return identity(name, x) }
        if h % output.0 == 0 && w % output.1 == 0 {
            return add(name, .avgPool2d(Pool2DAttributes(kernel: (h / output.0, w / output.1))), x)
        }
        if output.0 % h == 0 && output.1 % w == 0 {
            return add(name, .upsample(mode: .nearest, scaleH: Float(output.0 / h), scaleW: Float(output.1 / w), size: [output.0, output.1]), x)
        }
        throw QuarryError.unsupported(
            "adaptive average pooling '\(name)' from \(h)x\(w) to \(output.0)x\(output.1): choose an input size whose feature map divides \(output.0)x\(output.1) or is divided by it")
    }
}

/// Channel counts divided by a width divisor: the reference's widths at 1, cheap variants of the
/// same structure (for tests) above it.
struct Widths {
    let divisor: Int
    func callAsFunction(_ n: Int) -> Int { n / divisor }
}

/// The batch dimension every zoo input declares.
let batchDim = Dim.symbol("N")

func imageInput(_ b: GraphBuilder, channels: Int = 3, height: Int, width: Int) -> Value {
    b.input("input", shape: [batchDim, .fixed(channels), .fixed(height), .fixed(width)])
}
