import Quarry

// GPT-style decoders: A. Radford, J. Wu, R. Child, D. Luan, D. Amodei, I. Sutskever, "Language
// Models are Unsupervised Multitask Learners" (GPT-2), 2019 — GPT-2 small: 12 layers, 768 wide,
// 12 heads, 1024 positions, 124,439,808 parameters (the LM head is tied to `wte`) — and the eight
// configurations of T. Brown et al., "Language Models are Few-Shot Learners" (GPT-3), NeurIPS 2020
// (arXiv:2005.14165), Table 2.1, with 2048 positions and GPT-2's 50,257-token vocabulary. The table's
// 13B row prints d_model 5140; 40 heads x 128 = 5120 is the width that divides into its heads, and
// is used here. Its XL row prints 24 heads of 128 for d_model 2048; the graph keeps d_model and
// d_head and uses 2048 / 128 = 16 heads (heads do not change the parameter count). GPT-3 alternates dense and locally banded sparse attention; the graph uses dense
// causal attention throughout, which has the same parameters. The table's parameter counts are
// rounded (125M … 175.0B); the exact counts of these graphs are checked against the closed form
// V·d + P·d + L(12d² + 13d) + 2d and against the table to its rounding.
//
// Names are Hugging Face GPT2Model's: `wte.weight`, `wpe.weight`, `h.N.ln_1`, `h.N.attn.c_attn`,
// `h.N.attn.c_proj`, `h.N.ln_2`, `h.N.mlp.c_fc`, `h.N.mlp.c_proj`, `ln_f`. Those projections are
// transformers' Conv1D, whose weight is stored [in, out]: the graph multiplies by it as stored
// (matmul) so the checkpoint's tensors load unchanged. Taps: `drop` (embeddings), `h.N`, `ln_f`.
// Input: `input_ids` [N, S] with S fixed at build time (position embeddings sliced to S); causal
// attention means right-padding never reaches the real tokens, so there is no mask input.

public struct GPTConfig: Sendable {
    public var vocabSize: Int
    public var contextLength: Int
    public var layers: Int
    public var heads: Int
    public var hiddenSize: Int
    public var innerSize: Int
    public var layerNormEpsilon: Float
    public var sequenceLength: Int

    public init(vocabSize: Int = 50257, contextLength: Int = 1024, layers: Int = 12, heads: Int = 12,
                hiddenSize: Int = 768, innerSize: Int? = nil, layerNormEpsilon: Float = 1e-5, sequenceLength: Int? = nil) {
        self.vocabSize = vocabSize; self.contextLength = contextLength; self.layers = layers; self.heads = heads
        self.hiddenSize = hiddenSize; self.innerSize = innerSize ?? 4 * hiddenSize
        self.layerNormEpsilon = layerNormEpsilon; self.sequenceLength = sequenceLength ?? contextLength
    }

    public static let gpt2 = GPTConfig()

    /// GPT-3 Table 2.1: name, n_params as printed, n_layers, d_model, n_heads.
    public static let gpt3Table: [(name: String, published: Double, layers: Int, dModel: Int, heads: Int)] = [
        ("gpt3_125m", 125e6, 12, 768, 12),
        ("gpt3_350m", 350e6, 24, 1024, 16),
        ("gpt3_760m", 760e6, 24, 1536, 16),
        ("gpt3_1.3b", 1.3e9, 24, 2048, 16),
        ("gpt3_2.7b", 2.7e9, 32, 2560, 32),
        ("gpt3_6.7b", 6.7e9, 32, 4096, 32),
        ("gpt3_13b", 13.0e9, 40, 5120, 40),
        ("gpt3_175b", 175.0e9, 96, 12288, 96),
    ]

    public static func gpt3(layers: Int, dModel: Int, heads: Int) -> GPTConfig {
        GPTConfig(contextLength: 2048, layers: layers, heads: heads, hiddenSize: dModel)
    }
}

public enum GPT {
    public static func build(_ config: GPTConfig) throws -> Graph {
        let d = config.hiddenSize, s = config.sequenceLength
        guard d % config.heads == 0 else {
            throw QuarryError.invalidArgument("GPT width \(d) is not divisible by \(config.heads) heads")
        }
        guard s >= 1, s <= config.contextLength else {
            throw QuarryError.invalidArgument("GPT sequence length \(s) must be within 1…\(config.contextLength)")
        }
        let b = GraphBuilder()
        let init02 = ParameterInit.normal(std: 0.02)
        // GPT-2 scales the residual projections' init by 1/sqrt(2 * layers) (paper, section 2.3).
        let residualStd = 0.02 / Float(2 * config.layers).squareRoot()
        let ids = b.input("input_ids", shape: [batchDim, .fixed(s)])
        let wte = b.parameter("wte.weight", shape: [config.vocabSize, d], initializer: init02)
        let wpe = b.parameter("wpe.weight", shape: [config.contextLength, d], initializer: .normal(std: 0.01))
        let tokens = b.add("wte", .embedding, ids, wte)
        let positions = b.add("wpe", .slice(starts: [0], ends: [s], axes: [0], steps: [1]), wpe)
        var x = b.sum("drop", tokens, positions)
        b.scope("h") {
            for n in 0..<config.layers {
                let y = b.scope("\(n)") {
                    let a = b.layerNorm("ln_1", x, dim: d, epsilon: config.layerNormEpsilon)
                    let attn = b.scope("attn") {
                        let qkv = b.conv1D("c_attn", a, in: d, out: 3 * d)
                        let parts = b.node("split", .split(axis: 2, sizes: [d, d, d]), [qkv], outputs: 3)
                        let ctx = b.add("attention", .attention(heads: config.heads, causal: true), parts[0], parts[1], parts[2])
                        return b.conv1D("c_proj", ctx, in: d, out: d, std: residualStd)
                    }
                    let r = b.sum("add", x, attn)
                    let m = b.layerNorm("ln_2", r, dim: d, epsilon: config.layerNormEpsilon)
                    let mlp = b.scope("mlp") {
                        let h = b.conv1D("c_fc", m, in: d, out: config.innerSize)
                        let g = b.activation("act", .gelu(approximate: true), h)
                        return b.conv1D("c_proj", g, in: config.innerSize, out: d, std: residualStd)
                    }
                    return b.sum("add_1", r, mlp)
                }
                x = b.identity("\(n)", y)
            }
        }
        x = b.layerNorm("ln_f", x, dim: d, epsilon: config.layerNormEpsilon)
        return b.build(outputs: [x])
    }

    /// V·d + P·d + L(12d² + 13d) + 2d: embeddings, per layer the four projections with biases
    /// (3d² + d² + 4d² + 4d², 3d + d + 4d + d) and two layer norms (4d), and the final layer norm.
    public static func closedFormParameterCount(_ c: GPTConfig) -> Int {
        let d = c.hiddenSize
        return c.vocabSize * d + c.contextLength * d + c.layers * (4 * d * d + 2 * d * c.innerSize + 9 * d + c.innerSize) + 2 * d
    }

    static func taps(_ config: GPTConfig) -> [String] {
        ["drop"] + (0..<config.layers).map { "h.\($0)" } + ["ln_f"]
    }
}
