import Foundation
import Quarry

// BERT encoders: J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep
// Bidirectional Transformers for Language Understanding", NAACL 2019 (arXiv:1810.04805) — BERT-base
// (12 layers, 768 wide, 12 heads, 3072 inner; 109,482,240 parameters with the pooler) — and the
// MiniLM-L6-H384 configuration of W. Wang et al., "MiniLM: Deep Self-Attention Distillation for
// Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020 (arXiv:2002.10957), as
// published in nreimers/MiniLM-L6-H384-uncased and all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads,
// 1536 inner, BERT's vocabulary; 22,713,216 parameters with the pooler). Names are Hugging Face
// BertModel's: `embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`,
// `encoder.layer.N.attention.output.LayerNorm.weight`, `encoder.layer.N.intermediate.dense`,
// `encoder.layer.N.output.dense`, `pooler.dense.weight`; taps `embeddings`, `encoder.layer.N`,
// `last_hidden_state` (= the last layer) and `pooler`.
//
// Inputs: `input_ids` [N, S] (token ids as floats) and `attention_mask` [N, S] (1 = token, 0 =
// padding). S is fixed when the graph is built (the position embeddings are sliced to S), so pad a
// batch to S and mask. Segment ids are all 0 (the token-type row 0 is added), as for one-sentence
// inputs.

public struct BERTConfig: Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEpsilon: Float
    public var pooler: Bool
    public var sequenceLength: Int

    public init(vocabSize: Int = 30522, hiddenSize: Int = 768, layers: Int = 12, heads: Int = 12,
                intermediateSize: Int = 3072, maxPositions: Int = 512, typeVocabSize: Int = 2,
                layerNormEpsilon: Float = 1e-12, pooler: Bool = true, sequenceLength: Int = 128) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.layers = layers; self.heads = heads
        self.intermediateSize = intermediateSize; self.maxPositions = maxPositions; self.typeVocabSize = typeVocabSize
        self.layerNormEpsilon = layerNormEpsilon; self.pooler = pooler; self.sequenceLength = sequenceLength
    }

    public static let base = BERTConfig()
    public static let miniLML6H384 = BERTConfig(hiddenSize: 384, layers: 6, heads: 12, intermediateSize: 1536)
}

public enum BERT {
    public static func build(_ config: BERTConfig) throws -> Graph {
        let d = config.hiddenSize, s = config.sequenceLength
        guard d % config.heads == 0 else {
            throw QuarryError.invalidArgument("BERT hidden size \(d) is not divisible by \(config.heads) heads")
        }
        guard s >= 1, s <= config.maxPositions else {
            throw QuarryError.invalidArgument("BERT sequence length \(s) must be within 1…\(config.maxPositions)")
        }
        let b = GraphBuilder()
        let init02 = ParameterInit.normal(std: 0.02)
        let eps = config.layerNormEpsilon
        let ids = b.input("input_ids", shape: [batchDim, .fixed(s)])
        let mask = b.input("attention_mask", shape: [batchDim, .fixed(s)])
        var x = b.scope("embeddings") {
            let words = b.parameter("word_embeddings.weight", shape: [config.vocabSize, d], initializer: init02)
            let positions = b.parameter("position_embeddings.weight", shape: [config.maxPositions, d], initializer: init02)
            let types = b.parameter("token_type_embeddings.weight", shape: [config.typeVocabSize, d], initializer: init02)
            var e = b.add("word_embeddings", .embedding, ids, words)
            let p = b.add("position_embeddings", .slice(starts: [0], ends: [s], axes: [0], steps: [1]), positions)
            let t = b.add("token_type_embeddings", .slice(starts: [0], ends: [1], axes: [0], steps: [1]), types)
            e = b.sum("add", e, t)
            e = b.sum("add_1", e, p)
            return b.layerNorm("LayerNorm", e, dim: d, epsilon: eps)
        }
        x = b.identity("embeddings", x)
        b.scope("encoder") {
            b.scope("layer") {
                for n in 0..<config.layers {
                    let y = b.scope("\(n)") { layer(b, x, mask, config) }
                    x = b.identity("\(n)", y)
                }
            }
        }
        x = b.identity("last_hidden_state", x)
        var outputs = [x]
        if config.pooler {
            let pooled = b.scope("pooler") {
                let first = b.add("first_token", .slice(starts: [0], ends: [1], axes: [1], steps: [1]), x)
                let flat = b.add("squeeze", .reshape(shape: [0, d]), first)
                let dense = b.linear("dense", flat, in: d, out: d, initializer: init02)
                return b.activation("activation", .tanh, dense)
            }
            outputs.append(b.identity("pooler", pooled))
        }
        return b.build(outputs: outputs)
    }

    static func layer(_ b: GraphBuilder, _ x: Value, _ mask: Value, _ c: BERTConfig) -> Value {
        let d = c.hiddenSize
        let init02 = ParameterInit.normal(std: 0.02)
        let attended = b.scope("attention") {
            let ctx = b.scope("self") {
                let q = b.linear("query", x, in: d, out: d, initializer: init02)
                let k = b.linear("key", x, in: d, out: d, initializer: init02)
                let v = b.linear("value", x, in: d, out: d, initializer: init02)
                return b.add("", .attention(heads: c.heads, causal: false), q, k, v, mask)
            }
            return b.scope("output") {
                let o = b.linear("dense", ctx, in: d, out: d, initializer: init02)
                let r = b.sum("add", o, x)
                return b.layerNorm("LayerNorm", r, dim: d, epsilon: c.layerNormEpsilon)
            }
        }
        let inner = b.scope("intermediate") {
            let h = b.linear("dense", attended, in: d, out: c.intermediateSize, initializer: init02)
            return b.activation("intermediate_act_fn", .gelu(approximate: false), h)
        }
        return b.scope("output") {
            let o = b.linear("dense", inner, in: c.intermediateSize, out: d, initializer: init02)
            let r = b.sum("add", o, attended)
            return b.layerNorm("LayerNorm", r, dim: d, epsilon: c.layerNormEpsilon)
        }
    }

    static func taps(_ config: BERTConfig) -> [String] {
        ["embeddings"] + (0..<config.layers).map { "encoder.layer.\($0)" } + ["last_hidden_state"]
            + (config.pooler ? ["pooler"] : [])
    }
}

extension BERTConfig {
    /// The architecture's sizes from a Hugging Face config.json (hidden_size, num_hidden_layers,
    /// num_attention_heads, intermediate_size, vocab_size, max_position_embeddings,
    /// type_vocab_size, layer_norm_eps), so any BERT-family encoder of those shapes builds. A
    /// config of another model type, another activation than erf-GELU or relative position
    /// embeddings is refused, naming `source` and the field.
    public init(huggingFaceConfig data: Data, source: String) throws {
        func fail(_ m: String) -> QuarryError { .file(path: source, message: m) }
        guard let c = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        func int(_ key: String) throws -> Int {
            guard let n = c[key] as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue > 0 else {
                throw fail("\(key) is missing or not a positive integer")
            }
            return n.intValue
        }
        // RoBERTa-style models offset their positions by the padding id, so only "bert" is taken.
        if let type = c["model_type"] as? String, type != "bert" {
            throw fail("model_type '\(type)' is not a BERT encoder (model_type 'bert')")
        }
        if let act = c["hidden_act"] as? String, act != "gelu" {
            throw fail("hidden_act '\(act)' is not supported (BERT's erf GELU, 'gelu', is)")
        }
        if let pos = c["position_embedding_type"] as? String, pos != "absolute" {
            throw fail("position_embedding_type '\(pos)' is not supported ('absolute' is)")
        }
        self.init(vocabSize: try int("vocab_size"), hiddenSize: try int("hidden_size"), layers: try int("num_hidden_layers"),
                  heads: try int("num_attention_heads"), intermediateSize: try int("intermediate_size"),
                  maxPositions: try int("max_position_embeddings"),
                  typeVocabSize: (c["type_vocab_size"] as? NSNumber)?.intValue ?? 2,
                  layerNormEpsilon: (c["layer_norm_eps"] as? NSNumber)?.floatValue ?? 1e-12)
        sequenceLength = min(sequenceLength, maxPositions)
        guard hiddenSize % heads == 0 else {
            throw fail("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(heads)")
        }
    }
}
