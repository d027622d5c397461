// The op set, declared once. Each case carries its attributes; the operands are the node's inputs
// in the order given in each case's comment. Layouts follow PyTorch where a choice exists (NCHW,
// conv weight [out, in/groups, kh, kw], linear weight [out, in]) so checkpoints load as they are.

public enum Activation: Hashable, Sendable, Codable {
    case relu
    /// clip(x, min, max); relu6 is clip(0, 6).
    case clip(min: Float, max: Float)
    case leakyRelu(alpha: Float)
    case sigmoid
    /// max(0, min(1, alpha * x + beta)); ONNX defaults alpha 0.2, beta 0.5; PyTorch uses 1/6, 0.5.
    case hardSigmoid(alpha: Float, beta: Float)
    case tanh
    case silu
    case mish
    /// gelu(x) = x * Φ(x) with the exact erf form, or the tanh approximation.
    case gelu(approximate: Bool)
    case hardSwish
    /// Elementwise unary maths that have no parameters.
    case sqrt, exp, log, neg, abs, erf, reciprocal
    case sin, cos
    /// Rounding to an integer: down, up, to the nearest with halves to even (ONNX Round, numpy's
    /// rint), toward zero (integer division's quotient).
    case floor, ceil, round, trunc
    /// log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so that neither tail overflows or cancels.
    case softplus
    /// x > 0 ? x : alpha (e^x - 1); ONNX default alpha 1.
    case elu(alpha: Float)
    /// gamma * elu_alpha(x); ONNX defaults alpha 1.67326319…, gamma 1.05070102….
    case selu(alpha: Float, gamma: Float)
    /// Logical not of a 0/1 value: x == 0 ? 1 : 0.
    case not
    /// -1, 0 or 1 by the sign of x.
    case sign

    public static let relu6 = Activation.clip(min: 0, max: 6)
}

public enum BinaryOp: String, Hashable, Sendable, Codable {
    case add, sub, mul, div, pow, max, min
    /// Comparisons and logic give 1 for true and 0 for false (the runtime's form of a bool); the
    /// logic ops read any non-zero operand as true.
    case equal, less, lessOrEqual = "less_or_equal", greater, greaterOrEqual = "greater_or_equal"
    case and, or, xor
    /// Remainder with the divisor's sign (Python's %, ONNX Mod with fmod = 0).
    case mod
    /// Remainder with the dividend's sign (C's fmod, ONNX Mod with fmod = 1).
    case fmod

    /// Whether the result is always 0 or 1.
    public var isBoolean: Bool {
        switch self {
        case .equal, .less, .lessOrEqual, .greater, .greaterOrEqual, .and, .or, .xor: return true
        default: return false
        }
    }
}

public enum ReduceOp: String, Hashable, Sendable, Codable {
    case mean, sum, max
}

/// Padding of a 2-D window op: top, left, bottom, right (asymmetric allowed, as ONNX pads).
public struct Padding2D: Hashable, Sendable, Codable {
    public var top, left, bottom, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    public init(_ p: Int) { self.init(top: p, left: p, bottom: p, right: p) }
    public init(_ ph: Int, _ pw: Int) { self.init(top: ph, left: pw, bottom: ph, right: pw) }
    public static let zero = Padding2D(0)
}

public struct Conv2DAttributes: Hashable, Sendable, Codable {
    public var kernel: (Int, Int) { (kernelH, kernelW) }
    public var kernelH, kernelW: Int
    public var strideH, strideW: Int
    public var dilationH, dilationW: Int
    public var padding: Padding2D
    public var groups: Int
    /// Applied to the output in the kernel's epilogue (set by the activation-fusion pass).
    public var activation: Activation?

    public init(
        kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: Padding2D = .zero,
        dilation: (Int, Int) = (1, 1), groups: Int = 1, activation: Activation? = nil
    ) {
        kernelH = kernel.0; kernelW = kernel.1
        strideH = stride.0; strideW = stride.1
        dilationH = dilation.0; dilationW = dilation.1
        self.padding = padding; self.groups = groups; self.activation = activation
    }
    public static func == (a: Self, b: Self) -> Bool {
        a.kernelH == b.kernelH && a.kernelW == b.kernelW && a.strideH == b.strideH
            && a.strideW == b.strideW && a.dilationH == b.dilationH && a.dilationW == b.dilationW
            && a.padding == b.padding && a.groups == b.groups && a.activation == b.activation
    }
    public func hash(into h: inout Hasher) {
        h.combine(kernelH); h.combine(kernelW); h.combine(strideH); h.combine(strideW)
        h.combine(dilationH); h.combine(dilationW); h.combine(padding); h.combine(groups)
        h.combine(activation)
    }
}

public struct ConvTranspose2DAttributes: Hashable, Sendable, Codable {
    public var kernelH, kernelW, strideH, strideW, dilationH, dilationW: Int
    /// Padding removed from the full output (PyTorch `padding`, ONNX `pads`).
    public var padding: Padding2D
    /// Extra rows / columns added at the bottom / right (PyTorch `output_padding`).
    public var outputPaddingH, outputPaddingW: Int
    public var groups: Int
    public var activation: Activation?

    public init(
        kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: Padding2D = .zero,
        outputPadding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1,
        activation: Activation? = nil
    ) {
        kernelH = kernel.0; kernelW = kernel.1; strideH = stride.0; strideW = stride.1
        dilationH = dilation.0; dilationW = dilation.1; self.padding = padding
        outputPaddingH = outputPadding.0; outputPaddingW = outputPadding.1
        self.groups = groups; self.activation = activation
    }
}

public struct Pool2DAttributes: Hashable, Sendable, Codable {
    public var kernelH, kernelW, strideH, strideW, dilationH, dilationW: Int
    public var padding: Padding2D
    /// Output size rounds up (PyTorch / ONNX ceil_mode); a window that starts in the padding is dropped.
    public var ceilMode: Bool
    /// Average pooling only: whether padded positions count in the divisor.
    public var countIncludePad: Bool

    public init(
        kernel: (Int, Int), stride: (Int, Int)? = nil, padding: Padding2D = .zero,
        dilation: (Int, Int) = (1, 1), ceilMode: Bool = false, countIncludePad: Bool = true
    ) {
        kernelH = kernel.0; kernelW = kernel.1
        strideH = stride?.0 ?? kernel.0; strideW = stride?.1 ?? kernel.1
        dilationH = dilation.0; dilationW = dilation.1
        self.padding = padding; self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
    }
}

public enum RecurrentDirection: String, Hashable, Sendable, Codable {
    case forward, reverse, bidirectional
    public var count: Int { self == .bidirectional ? 2 : 1 }
}

public struct RecurrentAttributes: Hashable, Sendable, Codable {
    public var hiddenSize: Int
    public var direction: RecurrentDirection
    /// GRU only: apply the reset gate after the recurrent matmul (PyTorch's form, ONNX
    /// linear_before_reset = 1) rather than before it.
    public var linearBeforeReset: Bool
    public init(hiddenSize: Int, direction: RecurrentDirection = .forward, linearBeforeReset: Bool = true) {
        self.hiddenSize = hiddenSize; self.direction = direction; self.linearBeforeReset = linearBeforeReset
    }
}

/// An inverted-residual block's convolutions run as one op: a 1x1 expansion (optional), a depthwise
/// convolution and a 1x1 projection (each with its bias and fused activation, the projection
/// with an optional residual), made by the CPU plan from three conv2d nodes (see its pass).
public struct ExpandDepthwiseProjectAttributes: Hashable, Sendable, Codable {
    public var expandActivation: Activation?
    /// The depthwise convolution (its groups, stride, padding and activation).
    public var depthwise: Conv2DAttributes
    /// Applied after the projection (and the residual).
    public var projectActivation: Activation?
    public init(expandActivation: Activation?, depthwise: Conv2DAttributes, projectActivation: Activation?) {
        self.expandActivation = expandActivation; self.depthwise = depthwise; self.projectActivation = projectActivation
    }
}

public enum UpsampleMode: String, Hashable, Sendable, Codable {
    /// PyTorch nearest: source index = floor(dst * in / out).
    case nearest
    case bilinear
    case bilinearAlignCorners
}

public enum PadMode: String, Hashable, Sendable, Codable {
    case constant, reflect, edge
}

/// How ScatterND combines an update with the element it lands on (ONNX `reduction`).
public enum ScatterReduction: String, Hashable, Sendable, Codable {
    case none, add, mul, max, min
}

// Index operands (gathers' and ScatterND's indices) hold integers as float values, as the float32
// runtime holds every integer. Both backends round an index to the nearest integer (ties to even),
// then a value in [-n, n) picks position (value mod n) on an axis of length n, as ONNX allows.
// Any other value (out of range, NaN) must not touch memory outside the tensor and cannot throw
// at run time: a gather writes NaN for the elements that index would read (as embedding does), so
// the error shows in every later value; ScatterND skips that update (the data element is kept).

public enum Op: Hashable, Sendable {
    /// A graph input, shapes given by the graph's input declaration.
    case input
    /// A named parameter or constant (the graph's initializers hold the value).
    case constant

    /// (x[N,C,H,W], w[O,C/groups,kh,kw], bias[O]?, residual[N,O,H',W']?) -> [N,O,H',W']. The
    /// residual (a skip connection, fused by the CPU's plan) is added before the activation.
    case conv2d(Conv2DAttributes)
    /// (x[N,C,H,W], w[C,O/groups,kh,kw], bias[O]?) -> [N,O,H',W'] (PyTorch weight layout)
    case convTranspose2d(ConvTranspose2DAttributes)
    /// (x[..., K], w[N, K], bias[N]?) -> [..., N]: PyTorch Linear. Activation fused in the epilogue.
    case dense(activation: Activation?)
    /// (a[..., M, K], b[..., K, N]) -> [..., M, N] with broadcasting over leading dims (numpy matmul).
    case matmul(transposeA: Bool, transposeB: Bool)

    case maxPool2d(Pool2DAttributes)
    case avgPool2d(Pool2DAttributes)
    /// [N,C,H,W] -> [N,C,1,1]
    case globalAvgPool
    case globalMaxPool

    /// (x[N,C,...], scale[C], bias[C], mean[C], var[C]) inference-mode batch norm.
    case batchNorm(epsilon: Float)
    /// (x, gamma[D], beta[D]) normalised over the trailing `normalizedDims` dimensions.
    case layerNorm(epsilon: Float, normalizedDims: Int)
    /// (x[N,C,...], gamma[C], beta[C]) instance norm over the spatial dimensions.
    case instanceNorm(epsilon: Float)
    case softmax(axis: Int)
    case logSoftmax(axis: Int)

    /// (q[B,Sq,H*D], k[B,Sk,H*D], v[B,Sk,H*D], keyPaddingMask[B,Sk]?) -> [B,Sq,H*D].
    /// Scaled dot-product attention with `heads` heads; the mask holds 1 for tokens to attend
    /// and 0 for padding; `causal` masks keys after the query position.
    case attention(heads: Int, causal: Bool)

    /// (x[B,S,I], w[D,4H,I], r[D,4H,H], bias[D,8H]?, h0[D,B,H]?, c0[D,B,H]?) -> y[B,S,D*H].
    /// Gate order in w, r and bias is i, f, g, o (PyTorch's); ONNX's i, o, f, c is permuted at
    /// import. bias is [input biases (4H), recurrent biases (4H)] per direction as in ONNX.
    /// Outputs: y, then h_n[D,B,H], c_n[D,B,H].
    case lstm(RecurrentAttributes)
    /// (x[B,S,I], w[D,3H,I], r[D,3H,H], bias[D,6H]?, h0[D,B,H]?) -> y[B,S,D*H], h_n[D,B,H].
    /// Gate order r, z, n (PyTorch's); ONNX's z, r, h is permuted at import.
    case gru(RecurrentAttributes)
    /// (ids[...] holding integer values as floats, table[V, D]) -> [..., D]
    case embedding

    case activation(Activation)
    /// (a, b) with numpy broadcasting; activation fused after (e.g. a residual add then relu).
    case binary(BinaryOp, activation: Activation?)
    /// (condition, x, y) with numpy broadcasting of all three -> x where condition != 0, else y
    /// (ONNX Where). Only the chosen operand is read, so an infinite or NaN y does not leak into
    /// the elements that take x.
    case select
    /// Reduces over `axes` (negative counts from the end).
    case reduce(ReduceOp, axes: [Int], keepDims: Bool)
    /// x -> the position along `axis` of the largest (`largest`) or smallest element, as a float
    /// (ONNX ArgMax / ArgMin). Ties give the first position, or the last with `selectLast`.
    case argExtreme(largest: Bool, axis: Int, keepDims: Bool, selectLast: Bool)
    /// x -> (values, indices) of the `k` largest (or smallest) elements along `axis`, best first;
    /// equal values in order of position (as onnxruntime). Indices are floats.
    case topK(k: Int, axis: Int, largest: Bool)
    /// x -> running sums along `axis` (ONNX CumSum): `exclusive` leaves the element itself out,
    /// `reverse` sums from the end.
    case cumSum(axis: Int, exclusive: Bool, reverse: Bool)
    /// (data, indices) -> data's slices along `axis` at the indices:
    /// shape data[..<axis] + indices + data[(axis+1)...] (ONNX Gather with run-time indices).
    case gather(axis: Int)
    /// (data, indices of data's rank) -> out[p] = data[p with p[axis] = indices[p]] (ONNX GatherElements).
    case gatherElements(axis: Int)
    /// (data, indices[..., k]) -> the slices of data that the last dimension's k-tuples name, the
    /// first `batchDims` dimensions shared (ONNX GatherND).
    case gatherND(batchDims: Int)
    /// (data, indices[..., k], updates) -> data with the slices the k-tuples name combined with
    /// the updates, in order (ONNX ScatterND; with `none` a repeated tuple's last update wins).
    case scatterND(ScatterReduction)

    /// (x0, x1, ...) concatenated on `axis`.
    case concat(axis: Int)
    /// x -> one output per entry of `sizes` along `axis`.
    case split(axis: Int, sizes: [Int])
    /// ONNX Slice semantics with constant starts / ends / axes / steps (ends clamp; negative wrap).
    case slice(starts: [Int], ends: [Int], axes: [Int], steps: [Int])
    /// pads = [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}] as in ONNX.
    case pad(pads: [Int], mode: PadMode, value: Float)
    /// [N,C,H,W] -> [N,C,outH,outW], output size = floor(H * scaleH) unless `size` is given.
    case upsample(mode: UpsampleMode, scaleH: Float, scaleW: Float, size: [Int]?)
    /// Target shape with ONNX conventions: 0 copies the input dimension, -1 is inferred.
    case reshape(shape: [Int])
    case transpose(perm: [Int])
    /// [d0, ..., d_{axis-1}, rest] -> [prod(d0..d_{axis-1}), prod(rest)] (ONNX Flatten).
    case flatten(axis: Int)
    /// Removes nothing, copies its input; kept so taps can name a value (`nn.Identity`).
    case identity
    /// x, expand weight [E, C, 1, 1] and bias [E] (both absent: no expansion, E = C), depthwise weight
    /// [E, 1, kh, kw] and bias [E], projection weight [O, E, 1, 1] and bias [O], optional residual
    /// [N, O, OH, OW] -> [N, O, OH, OW].
    case expandDepthwiseProject(ExpandDepthwiseProjectAttributes)
}

extension Op {
    /// A short, stable name for logs, errors and profiles.
    public var name: String {
        switch self {
        case .input: return "input"
        case .constant: return "constant"
        case .conv2d(let a): return a.groups > 1 ? "conv2d(groups \(a.groups))" : "conv2d"
        case .convTranspose2d: return "conv_transpose2d"
        case .dense: return "dense"
        case .matmul: return "matmul"
        case .maxPool2d: return "max_pool2d"
        case .avgPool2d: return "avg_pool2d"
        case .globalAvgPool: return "global_avg_pool"
        case .globalMaxPool: return "global_max_pool"
        case .batchNorm: return "batch_norm"
        case .layerNorm: return "layer_norm"
        case .instanceNorm: return "instance_norm"
        case .softmax: return "softmax"
        case .logSoftmax: return "log_softmax"
        case .attention: return "attention"
        case .lstm: return "lstm"
        case .gru: return "gru"
        case .embedding: return "embedding"
        case .activation(let a): return "\(a)"
        case .binary(let b, _): return b.rawValue
        case .select: return "select"
        case .reduce(let r, _, _): return "reduce_\(r.rawValue)"
        case .argExtreme(let largest, _, _, _): return largest ? "argmax" : "argmin"
        case .topK: return "topk"
        case .cumSum: return "cumsum"
        case .gather: return "gather"
        case .gatherElements: return "gather_elements"
        case .gatherND: return "gather_nd"
        case .scatterND: return "scatter_nd"
        case .concat: return "concat"
        case .split: return "split"
        case .slice: return "slice"
        case .pad: return "pad"
        case .upsample: return "upsample"
        case .reshape: return "reshape"
        case .transpose: return "transpose"
        case .flatten: return "flatten"
        case .identity: return "identity"
        case .expandDepthwiseProject: return "expand_depthwise_project"
        }
    }

    /// Ops whose output is a view of the input's bytes in the same order, so the executor can
    /// alias their buffers instead of copying.
    public var isLayoutOnly: Bool {
        switch self {
        case .reshape, .flatten, .identity: return true
        default: return false
        }
    }
}
