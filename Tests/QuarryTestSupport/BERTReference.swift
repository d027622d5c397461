import Foundation

/// A BERT encoder in float64, straight from Hugging Face BertModel's tensors (names and [out, in]
/// layouts of its state_dict), for one unpadded sequence: word + position + token-type-0
/// embeddings and LayerNorm, then per layer softmax attention, post-norm residuals and erf-GELU.
/// Sentence-transformers' poolings and L2 normalisation on top. Slow and plain on purpose.
public struct BERTReference {
    public let tensors: [String: [Double]]
    public let hidden: Int, heads: Int, layers: Int, inner: Int
    public let epsilon: Double

    public init(tensors: [String: [Double]], hidden: Int, heads: Int, layers: Int, inner: Int, epsilon: Double = 1e-12) {
        self.tensors = tensors; self.hidden = hidden; self.heads = heads; self.layers = layers; self.inner = inner
        self.epsilon = epsilon
    }

    func p(_ name: String) -> [Double] {
        guard let t = tensors[name] else { preconditionFailure("reference: no tensor \(name)") }
        return t
    }

    func layerNorm(_ x: [Double], _ name: String) -> [Double] {
        let w = p("\(name).weight"), b = p("\(name).bias")
        let mean = x.reduce(0, +) / Double(x.count)
        let v = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
        let inv = 1 / (v + epsilon).squareRoot()
        return x.indices.map { (x[$0] - mean) * inv * w[$0] + b[$0] }
    }

    func linear(_ x: [Double], _ name: String, _ inF: Int, _ outF: Int) -> [Double] {
        let w = p("\(name).weight")
        var y = p("\(name).bias")
        for o in 0..<outF {
            var s = 0.0
            for i in 0..<inF { s += x[i] * w[o * inF + i] }
            y[o] += s
        }
        return y
    }

    /// The last hidden state, one row per token of `ids`.
    public func hiddenStates(_ ids: [Int]) -> [[Double]] {
        let d = hidden, hd = hidden / heads
        let words = p("embeddings.word_embeddings.weight"), pos = p("embeddings.position_embeddings.weight")
        let types = p("embeddings.token_type_embeddings.weight")
        var x = ids.enumerated().map { t, id in
            layerNorm((0..<d).map { words[id * d + $0] + types[$0] + pos[t * d + $0] }, "embeddings.LayerNorm")
        }
        let s = ids.count
        for l in 0..<layers {
            let pre = "encoder.layer.\(l)"
            let q = x.map { linear($0, "\(pre).attention.self.query", d, d) }
            let k = x.map { linear($0, "\(pre).attention.self.key", d, d) }
            let v = x.map { linear($0, "\(pre).attention.self.value", d, d) }
            var next = x
            for t in 0..<s {
                var ctx = [Double](repeating: 0, count: d)
                for h in 0..<heads {
                    let scores = (0..<s).map { u -> Double in
                        var dot = 0.0
                        for j in 0..<hd { dot += q[t][h * hd + j] * k[u][h * hd + j] }
                        return dot / Double(hd).squareRoot()
                    }
                    let m = scores.max() ?? 0
                    let e = scores.map { Foundation.exp($0 - m) }
                    let z = e.reduce(0, +)
                    for u in 0..<s { for j in 0..<hd { ctx[h * hd + j] += e[u] / z * v[u][h * hd + j] } }
                }
                let a = layerNorm(zip(linear(ctx, "\(pre).attention.output.dense", d, d), x[t]).map(+), "\(pre).attention.output.LayerNorm")
                let f = linear(a, "\(pre).intermediate.dense", d, inner).map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
                next[t] = layerNorm(zip(linear(f, "\(pre).output.dense", inner, d), a).map(+), "\(pre).output.LayerNorm")
            }
            x = next
        }
        return x
    }

    /// sentence-transformers' pooling of one sequence's rows: "cls", "mean" or "max".
    public static func pool(_ rows: [[Double]], _ mode: String) -> [Double] {
        switch mode {
        case "cls": return rows[0]
        case "max": return rows[0].indices.map { j in rows.map { $0[j] }.max()! }
        default: return rows[0].indices.map { j in rows.map { $0[j] }.reduce(0, +) / Double(rows.count) }
        }
    }

    public static func normalized(_ v: [Double]) -> [Double] {
        let n = max(v.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
        return v.map { $0 / n }
    }

    public static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        let dot = zip(a, b).map(*).reduce(0, +)
        let na = a.map { $0 * $0 }.reduce(0, +).squareRoot(), nb = b.map { $0 * $0 }.reduce(0, +).squareRoot()
        return dot / max(na * nb, 1e-300)
    }
}
