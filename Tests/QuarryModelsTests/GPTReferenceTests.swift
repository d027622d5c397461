import Foundation
import Quarry
import XCTest
@testable import QuarryModels

// GPT-2's wiring checked in float64 over the Hugging Face-named tensors: Conv1D weights used as
// stored ([in, out]), c_attn split q | k | v, causal softmax(q·kᵀ / sqrt(d_head)), pre-norm residuals,
// tanh-GELU MLP, final ln_f.
final class GPTReferenceTests: XCTestCase {
    func testTwoLayerGraphMatchesFloat64Reference() throws {
        let (d, heads, layers, s, vocab, batch) = (16, 2, 2, 4, 11, 2)
        let cfg = GPTConfig(vocabSize: vocab, contextLength: 8, layers: layers, heads: heads, hiddenSize: d, sequenceLength: s)
        var g = try GPT.build(cfg)
        g.materializeParameters(seed: 5)
        // Non-trivial layer norm and bias values, so a swapped operand shows.
        var rng = SeededGenerator(seed: 8)
        for (name, p) in g.parameters where name.hasSuffix(".bias") || name.contains("ln_") {
            g.parameters[name]!.value = Tensor.random(shape: p.shape, in: -0.5...0.5, using: &rng)
        }
        let ids = try Tensor(shape: [batch, s], scalars: (0..<(batch * s)).map { Float(($0 * 7 + 3) % vocab) })
        let y = try runOnCPU(g, ["input_ids": ids], outputs: ["ln_f"])["ln_f"]!

        func p(_ n: String) -> [Double] { g.parameters[n]!.value!.scalars.map(Double.init) }
        func layerNorm(_ x: [Double], _ name: String) -> [Double] {
            let w = p("\(name).weight"), b = p("\(name).bias")
            let mean = x.reduce(0, +) / Double(x.count)
            let varc = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
            return x.indices.map { (x[$0] - mean) / (varc + 1e-5).squareRoot() * w[$0] + b[$0] }
        }
        func conv1D(_ x: [Double], _ name: String, _ inF: Int, _ outF: Int) -> [Double] {
            let w = p("\(name).weight"), b = p("\(name).bias")
            return (0..<outF).map { o in b[o] + (0..<inF).reduce(0.0) { $0 + x[$1] * w[$1 * outF + o] } }
        }
        func gelu(_ v: Double) -> Double { 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }

        let wte = p("wte.weight"), wpe = p("wpe.weight")
        let hd = d / heads
        for n in 0..<batch {
            var x: [[Double]] = (0..<s).map { t in
                let id = Int(ids.scalars[n * s + t])
                return (0..<d).map { wte[id * d + $0] + wpe[t * d + $0] }
            }
            for l in 0..<layers {
                let qkv = x.map { conv1D(layerNorm($0, "h.\(l).ln_1"), "h.\(l).attn.c_attn", d, 3 * d) }
                var ctx = [[Double]](repeating: [Double](repeating: 0, count: d), count: s)
                for h in 0..<heads {
                    for t in 0..<s {
                        let scores = (0...t).map { u in
                            (0..<hd).reduce(0.0) { $0 + qkv[t][h * hd + $1] * qkv[u][d + h * hd + $1] } / Double(hd).squareRoot()
                        }
                        let m = scores.max()!
                        let e = scores.map { Foundation.exp($0 - m) }
                        let z = e.reduce(0, +)
                        for j in 0..<hd {
                            ctx[t][h * hd + j] = (0...t).reduce(0.0) { $0 + e[$1] / z * qkv[$1][2 * d + h * hd + j] }
                        }
                    }
                }
                for t in 0..<s {
                    let a = conv1D(ctx[t], "h.\(l).attn.c_proj", d, d)
                    let r = zip(x[t], a).map(+)
                    let f = conv1D(layerNorm(r, "h.\(l).ln_2"), "h.\(l).mlp.c_fc", d, 4 * d).map(gelu)
                    x[t] = zip(r, conv1D(f, "h.\(l).mlp.c_proj", 4 * d, d)).map(+)
                }
            }
            for t in 0..<s {
                let e = layerNorm(x[t], "ln_f")
                for j in 0..<d {
                    let got = Double(y.scalars[(n * s + t) * d + j])
                    XCTAssertEqual(got, e[j], accuracy: 1e-4 + 1e-3 * abs(e[j]), "item \(n) position \(t) feature \(j)")
                }
            }
        }
    }
}
