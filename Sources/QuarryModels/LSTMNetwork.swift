import Quarry

// LSTM networks: S. Hochreiter, J. Schmidhuber, "Long Short-Term Memory", Neural Computation 1997
// (with the forget gate of F. Gers et al. 2000), stacked, optionally bidirectional (A. Graves,
// J. Schmidhuber, "Framewise phoneme classification with bidirectional LSTM", Neural Networks 2005),
// as PyTorch's nn.LSTM(batch_first=True) computes it. Parameters are named exactly as that module's
// state_dict inside a model that calls it `lstm`: `lstm.weight_ih_l0` [4H, I], `lstm.weight_hh_l0`
// [4H, H], `lstm.bias_ih_l0` [4H], `lstm.bias_hh_l0` [4H], and `..._l0_reverse` for the backward
// direction. Count per layer and direction: 4H(I + H) + 8H, I being the layer's input width.
//
// The LSTM op takes w[D, 4H, I], r[D, 4H, H], bias[D, 8H] with the same gate order (i, f, g, o), so
// the checkpoint's tensors are stacked by nodes in the graph rather than by the loader: each layer
// has `lstm.lK.w` = concat over directions of reshape(weight_ih_lK) to [1, 4H, I], likewise
// `lstm.lK.r`, and `lstm.lK.bias` = concat over directions of reshape(concat(bias_ih, bias_hh)) to
// [1, 8H]. A checkpoint loader therefore fills the PyTorch keys as they are, with no reshaping of
// its own; a constant-folding pass can fold these nodes once the values are known.

public struct LSTMNetworkConfig: Sendable {
    public var inputSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var bidirectional: Bool
    public init(inputSize: Int = 128, hiddenSize: Int = 256, layers: Int = 2, bidirectional: Bool = true) {
        self.inputSize = inputSize; self.hiddenSize = hiddenSize; self.layers = layers; self.bidirectional = bidirectional
    }
}

public enum LSTMNetwork {
    public static func build(_ config: LSTMNetworkConfig) throws -> Graph {
        guard config.layers >= 1, config.hiddenSize >= 1, config.inputSize >= 1 else {
            throw QuarryError.invalidArgument("LSTM needs at least one layer and positive sizes")
        }
        let b = GraphBuilder()
        let h = config.hiddenSize
        let directions = config.bidirectional ? ["", "_reverse"] : [""]
        // PyTorch initialises every LSTM tensor from U(±1/sqrt(H)); Xavier's bound sqrt(6 / (fanIn +
        // fanOut)) equals it when fanIn + fanOut = 6H.
        let uniform = ParameterInit.xavier(fanIn: 3 * h, fanOut: 3 * h)
        var x = b.input("input", shape: [batchDim, .symbol("T"), .fixed(config.inputSize)])
        var inF = config.inputSize
        b.scope("lstm") {
            for l in 0..<config.layers {
                var ws: [Value] = [], rs: [Value] = [], bs: [Value] = []
                for sfx in directions {
                    let key = "l\(l)\(sfx)"
                    let wih = b.parameter("weight_ih_\(key)", shape: [4 * h, inF], initializer: uniform)
                    let whh = b.parameter("weight_hh_\(key)", shape: [4 * h, h], initializer: uniform)
                    let bih = b.parameter("bias_ih_\(key)", shape: [4 * h], initializer: uniform)
                    let bhh = b.parameter("bias_hh_\(key)", shape: [4 * h], initializer: uniform)
                    ws.append(b.add("weight_ih_\(key).unsqueeze", .reshape(shape: [1, 4 * h, inF]), wih))
                    rs.append(b.add("weight_hh_\(key).unsqueeze", .reshape(shape: [1, 4 * h, h]), whh))
                    let bias = b.concat("bias_\(key).cat", [bih, bhh], axis: 0)
                    bs.append(b.add("bias_\(key).unsqueeze", .reshape(shape: [1, 8 * h]), bias))
                }
                let w = b.concat("l\(l).w", ws, axis: 0)
                let r = b.concat("l\(l).r", rs, axis: 0)
                let bias = b.concat("l\(l).bias", bs, axis: 0)
                let attrs = RecurrentAttributes(hiddenSize: h, direction: config.bidirectional ? .bidirectional : .forward)
                x = b.node("l\(l)", .lstm(attrs), [x, w, r, bias], outputs: 3)[0]
                inF = directions.count * h
            }
        }
        x = b.identity("lstm", x)
        return b.build(outputs: [x])
    }

    static func taps(_ config: LSTMNetworkConfig) -> [String] {
        (0..<config.layers).map { "lstm.l\($0)" } + ["lstm"]
    }
}
