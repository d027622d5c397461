import Foundation
import Quarry
import XCTest
@testable import QuarryModels

// BERT's wiring checked in float64 over the Hugging Face-named tensors: word + token type 0 +
// position embeddings and LayerNorm, masked softmax attention, post-norm residuals, erf-GELU, and
// the pooler (tanh of a dense layer on the first token).
final class BERTReferenceTests: XCTestCase {
    func testTwoLayerGraphMatchesFloat64Reference() throws {
        let (d, heads, inner, layers, s, vocab) = (12, 3, 20, 2, 5, 13)
        let cfg = BERTConfig(vocabSize: vocab, hiddenSize: d, layers: layers, heads: heads, intermediateSize: inner,
                             maxPositions: 8, sequenceLength: s)
        var g = try BERT.build(cfg)
        g.materializeParameters(seed: 3)
        var rng = SeededGenerator(seed: 4)
        for (name, p) in g.parameters where name.hasSuffix(".bias") || name.contains("LayerNorm") || name.contains("type") {
            g.parameters[name]!.value = Tensor.random(shape: p.shape, in: -0.5...0.5, using: &rng)
        }
        let ids = try Tensor(shape: [2, s], scalars: (0..<(2 * s)).map { Float(($0 * 5 + 1) % vocab) })
        let mask = try Tensor(shape: [2, s], scalars: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        let out = try runOnCPU(g, ["input_ids": ids, "attention_mask": mask], outputs: ["last_hidden_state", "pooler"])

        func p(_ n: String) -> [Double] { g.parameters[n]!.value!.scalars.map(Double.init) }
        func layerNorm(_ x: [Double], _ name: String) -> [Double] {
            let w = p("\(name).weight"), b = p("\(name).bias")
            let mean = x.reduce(0, +) / Double(x.count)
            let v = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
            let inv: Double = 1 / (v + 1e-12).squareRoot()
            return x.indices.map { i -> Double in (x[i] - mean) * inv * w[i] + b[i] }
        }
        func linear(_ x: [Double], _ name: String, _ inF: Int, _ outF: Int) -> [Double] {
            let w = p("\(name).weight"), b = p("\(name).bias")
            var y = b
            for o in 0..<outF { for i in 0..<inF { y[o] += x[i] * w[o * inF + i] } }
            return y
        }
        func gelu(_ v: Double) -> Double { 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }

        let words = p("embeddings.word_embeddings.weight"), pos = p("embeddings.position_embeddings.weight")
        let types = p("embeddings.token_type_embeddings.weight")
        let hd = d / heads
        for n in 0..<2 {
            let keep = (0..<s).map { mask.scalars[n * s + $0] > 0 }
            var x: [[Double]] = (0..<s).map { t in
                let id = Int(ids.scalars[n * s + t])
                return layerNorm((0..<d).map { words[id * d + $0] + types[$0] + pos[t * d + $0] }, "embeddings.LayerNorm")
            }
            for l in 0..<layers {
                let pre = "encoder.layer.\(l)"
                let q = x.map { linear($0, "\(pre).attention.self.query", d, d) }
                let k = x.map { linear($0, "\(pre).attention.self.key", d, d) }
                let v = x.map { linear($0, "\(pre).attention.self.value", d, d) }
                var next = x
                for t in 0..<s {
                    var ctx = [Double](repeating: 0, count: d)
                    for h in 0..<heads {
                        let keys = (0..<s).filter { keep[$0] }
                        let scores = keys.map { u -> Double in
                            var dot = 0.0
                            for j in 0..<hd { dot += q[t][h * hd + j] * k[u][h * hd + j] }
                            return dot / Double(hd).squareRoot()
                        }
                        let m = scores.max()!
                        let e = scores.map { Foundation.exp($0 - m) }
                        let z = e.reduce(0, +)
                        for j in 0..<hd {
                            for (r, u) in keys.enumerated() { ctx[h * hd + j] += e[r] / z * v[u][h * hd + j] }
                        }
                    }
                    let a = layerNorm(zip(linear(ctx, "\(pre).attention.output.dense", d, d), x[t]).map(+), "\(pre).attention.output.LayerNorm")
                    let f = linear(a, "\(pre).intermediate.dense", d, inner).map(gelu)
                    next[t] = layerNorm(zip(linear(f, "\(pre).output.dense", inner, d), a).map(+), "\(pre).output.LayerNorm")
                }
                x = next
            }
            let hidden = out["last_hidden_state"]!.scalars
            for t in 0..<s where keep[t] {
                for j in 0..<d {
                    XCTAssertEqual(Double(hidden[(n * s + t) * d + j]), x[t][j], accuracy: 1e-4 + 1e-3 * abs(x[t][j]), "item \(n) token \(t)")
                }
            }
            let pooled = linear(x[0], "pooler.dense", d, d).map { Foundation.tanh($0) }
            for j in 0..<d { XCTAssertEqual(Double(out["pooler"]!.scalars[n * d + j]), pooled[j], accuracy: 1e-4) }
        }
    }
}
