import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryFormats

/// The operators the importer composes of existing graph ops (OnnxComposed.swift): Tile,
/// DepthToSpace, SpaceToDepth, Einsum, RMSNormalization and RotaryEmbedding, each imported from a
/// small exporter-style graph and checked against a float64 reference written here on fresh
/// random inputs, on the CPU and (where one exists, PoCL here) the OpenCL backend, which must run
/// every node itself (no CPU fallback).
final class OnnxComposedTests: XCTestCase {
    var rng = SystemRandomNumberGenerator()

    func random(_ shape: [Int]) -> (Tensor, [Double]) {
        let v = (0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &rng) }
        return (try! Tensor(shape: shape, scalars: v), v.map(Double.init))
    }

    /// `checkImportedModel` at this file's opset.
    @discardableResult
    func check(_ what: String, nodes: [Onnx_NodeProto], inputs: [(String, [Int], Tensor)], types: [String: Int32] = [:],
               initializers: [Onnx_TensorProto] = [], opset: Int64 = 23, expected: [Double], shape: [Int],
               file: StaticString = #filePath, line: UInt = #line) throws -> Graph {
        try checkImportedModel(what, nodes: nodes, inputs: inputs, types: types, initializers: initializers, opset: opset,
                               expected: expected, shape: shape, file: file, line: line)
    }

    // MARK: Einsum

    /// A float64 einsum by enumerating every index assignment (explicit output, letters only;
    /// a size-1 operand dimension broadcasts).
    func einsumReference(_ equation: String, _ operands: [([Int], [Double])]) -> (shape: [Int], values: [Double]) {
        let sides = equation.replacingOccurrences(of: " ", with: "").components(separatedBy: "->")
        let terms = sides[0].components(separatedBy: ",").map { Array($0) }
        let out = Array(sides[1])
        var size: [Character: Int] = [:]
        for (t, (s, _)) in zip(terms, operands) { for (l, d) in zip(t, s) { size[l] = max(size[l] ?? 1, d) } }
        let all = Array(Set(terms.flatMap { $0 })).sorted()
        let outShape = out.map { size[$0]! }
        var result = [Double](repeating: 0, count: outShape.reduce(1, *))
        var idx = [Character: Int]()
        func visit(_ k: Int) {
            if k == all.count {
                var p = 1.0
                for (t, (s, v)) in zip(terms, operands) {
                    var flat = 0
                    for (l, d) in zip(t, s) { flat = flat * d + (d == 1 ? 0 : idx[l]!) }
                    p *= v[flat]
                }
                var o = 0
                for l in out { o = o * size[l]! + idx[l]! }
                result[o] += p
                return
            }
            for i in 0..<size[all[k]]! { idx[all[k]] = i; visit(k + 1) }
        }
        visit(0)
        return (outShape, result)
    }

    /// The forms exporters write (attention scores, batched and plain matmuls, a transpose, heads
    /// projected from a shared weight, sums over one-operand indices, three operands, implicit
    /// output, ellipsis with broadcasting, diagonals and traces), each against the reference; `reference` spells the
    /// equation with letters where the tested one uses "..." or an implicit output.
    func testEinsumMatchesReference() throws {
        let cases: [(String, String, [[Int]])] = [
            ("bhid,bhjd->bhij", "bhid,bhjd->bhij", [[2, 3, 4, 5], [2, 3, 6, 5]]),
            ("bij,bjk->bik", "bij,bjk->bik", [[3, 4, 5], [3, 5, 2]]),
            ("ij->ji", "ij->ji", [[3, 7]]),
            ("bid,hd->bih", "bid,hd->bih", [[2, 5, 4], [3, 4]]),
            ("bhij,bhjd->bihd", "bhij,bhjd->bihd", [[2, 3, 4, 5], [2, 3, 5, 6]]),
            ("bij,bk->bi", "bij,bk->bi", [[2, 3, 4], [2, 5]]),
            ("ij->", "ij->", [[3, 4]]),
            ("i,i", "i,i->", [[7], [7]]),
            ("ij,jk", "ij,jk->ik", [[3, 4], [4, 5]]),
            ("ab,bc,cd->ad", "ab,bc,cd->ad", [[2, 3], [3, 4], [4, 5]]),
            ("i,j->ij", "i,j->ij", [[4], [3]]),
            ("...ij,...jk->...ik", "yzij,zjk->yzik", [[2, 1, 3, 4], [5, 4, 2]]),
            ("b...d,hd->bh...", "bxyd,hd->bhxy", [[2, 3, 4, 5], [6, 5]]),
            ("bij,j->bi", "bij,j->bi", [[2, 3, 4], [1]]),
            ("bji,bjk->bik", "bji,bjk->bik", [[3, 5, 4], [3, 5, 2]]),
            ("ji,kj->ik", "ji,kj->ik", [[5, 4], [3, 5]]),
            ("...ii->...i", "bii->bi", [[3, 5, 5]]),
            ("ii", "ii->", [[4, 4]]),
            ("ijij->ji", "ijij->ji", [[3, 2, 3, 2]]),
            ("iii->i", "iii->i", [[3, 3, 3]]),
            ("bii,bij->bj", "bii,bij->bj", [[2, 4, 4], [2, 4, 3]]),
        ]
        for (eq, ref, shapes) in cases {
            let ins = shapes.map(random)
            let names = ["a", "b", "c"]
            var n = node("Einsum", Array(names.prefix(shapes.count)), ["y"], name: "einsum")
            n.attribute = [stringAttribute("equation", eq)]
            let r = einsumReference(ref, zip(shapes, ins).map { ($0, $1.1) })
            let g = try check("einsum \(eq)", nodes: [n], inputs: zip(names, zip(shapes, ins)).map { ($0, $1.0, $1.1.0) }, opset: 12,
                              expected: r.values, shape: r.shape)
            // Operands laid out as [batch, K, M] / [batch, N, K] are read transposed by the matmul.
            if ["bhid,bhjd->bhij", "bij,bjk->bik", "bji,bjk->bik", "ji,kj->ik", "bid,hd->bih"].contains(eq) {
                XCTAssertFalse(g.nodes.contains { if case .transpose = $0.op { return true }; return false }, "\(eq): \(g.nodes.map(\.op.name))")
            }
        }
    }

    func testEinsumErrorsNameNodeAndEquation() throws {
        for (eq, shape, message) in [("ii->i", [1, 3], "index 'i' has sizes [1, 3] within one operand"),
                                     ("ii->i", [2, 3], "index sizes 2 and 3 do not broadcast"),
                                     ("ij,jk->ik", [2, 3], "2 operand(s) for 1 input(s)"),
                                     ("ij->k", [2, 3], "output index 'k' is in no operand")] {
            var n = node("Einsum", ["x"], ["y"], name: "mix")
            n.attribute = [stringAttribute("equation", eq)]
            let model = try OnnxModel(data: typedModelBytes(nodes: [n], inputs: [("x", shape.map(Int64.init), 1)], outputs: ["y"], opset: 12), path: "e.onnx")
            XCTAssertThrowsError(try model.graph()) {
                XCTAssertTrue("\($0)".contains("node 'mix' (Einsum): ") && "\($0)".contains("equation '\(eq)': \(message)"), "\($0)")
            }
        }
    }

    /// Random equations (letters, commas, arrows, dots, spaces; valid and not) over random shapes,
    /// and hostile attributes of the other composed operators, import or fail with an error; none traps.
    func testHostileFormsNeverCrash() throws {
        var g = SeededGenerator(seed: 18)
        let alphabet = Array("iijjk.,->  ")
        var imported = 0
        for _ in 0..<600 {
            let eq = String((0..<Int.random(in: 0...9, using: &g)).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &g)] })
            let operands = Int.random(in: 1...2, using: &g)
            var n = node("Einsum", Array(["a", "b"].prefix(operands)), ["y"])
            n.attribute = [stringAttribute("equation", eq)]
            let shapes = (0..<operands).map { _ in (0..<Int.random(in: 0...3, using: &g)).map { _ in Int64.random(in: 1...3, using: &g) } }
            let data = try typedModelBytes(nodes: [n], inputs: zip(["a", "b"], shapes).map { ($0, $1, 1) }, outputs: ["y"], opset: 12)
            if (try? OnnxModel(data: data, path: "f.onnx").graph()) != nil { imported += 1 }
        }
        XCTAssertGreaterThan(imported, 0)
        let hostile: [(String, [Onnx_AttributeProto], [[Int64]])] = [
            ("DepthToSpace", [intAttribute("blocksize", 0)], [[1, 4, 2, 2]]),
            ("DepthToSpace", [intAttribute("blocksize", 1 << 31)], [[1, 4, 2, 2]]),
            ("DepthToSpace", [intAttribute("blocksize", 2), stringAttribute("mode", "XYZ")], [[1, 4, 2, 2]]),
            ("SpaceToDepth", [intAttribute("blocksize", 3)], [[1, 4, 2, 2]]),
            ("RotaryEmbedding", [intAttribute("num_heads", 0)], [[1, 2, 8], [2, 2], [2, 2]]),
            ("RotaryEmbedding", [intAttribute("rotary_embedding_dim", 3)], [[1, 1, 2, 8], [1, 2, 4], [1, 2, 4]]),
            ("RotaryEmbedding", [], [[1, 1, 2, 8], [1, 2, 3], [1, 2, 4]]),
            ("RMSNormalization", [intAttribute("axis", 5)], [[2, 3], [3]]),
        ]
        for (op, attrs, shapes) in hostile {
            let names = ["x", "c", "s"].prefix(shapes.count)
            var n = node(op, Array(names), ["y"], name: "bad")
            n.attribute = attrs
            let data = try typedModelBytes(nodes: [n], inputs: zip(names, shapes).map { ($0, $1, 1) }, outputs: ["y"], opset: 23)
            XCTAssertThrowsError(try OnnxModel(data: data, path: "h.onnx").graph()) {
                XCTAssertTrue("\($0)".contains("bad (\(op))") || "\($0)".contains("node 'bad' (\(op))"), "\($0)")
            }
        }
    }

    /// Constant operands as exporters write them: a Linear-style weight initializer for Einsum
    /// (a parameter the matmul reads transposed), and Tile / DepthToSpace of initializers, which
    /// fold on the host before an Add with a run-time input.
    func testConstantOperands() throws {
        let (x, xv) = random([2, 5, 4])
        let w = (0..<12).map { _ in Float.random(in: -1...1, using: &rng) }
        var e = node("Einsum", ["x", "w"], ["y"])
        e.attribute = [stringAttribute("equation", "bid,hd->bih")]
        let r = einsumReference("bid,hd->bih", [([2, 5, 4], xv), ([3, 4], w.map(Double.init))])
        try check("einsum with a weight", nodes: [e], inputs: [("x", [2, 5, 4], x)], initializers: [floatTensor("w", dims: [3, 4], values: w)],
                  opset: 12, expected: r.values, shape: r.shape)

        let t = (0..<8).map { Float($0) }
        let (z, zv) = random([1, 2, 2, 4])
        var d2s = node("DepthToSpace", ["tiled"], ["space"])
        d2s.attribute = [intAttribute("blocksize", 2)]
        // t [1, 2, 1, 4] tiled to [1, 8, 1, 4] holds t[ch mod 2] in channel ch; DCR with C' = 2
        // reads channel ((Y mod 2)·2 + X mod 2)·2 + c, which is c mod 2 = c: out[c, Y, X] = t[c, X / 2].
        // z [1, 2, 2, 4] tiled along the width: zt[c, Y, X] = z[c, Y, X mod 4].
        var want: [Double] = []
        for c in 0..<2 { for y in 0..<2 { for xx in 0..<8 { want.append(Double(t[c * 4 + xx / 2]) + zv[(c * 2 + y) * 4 + xx % 4]) } } }
        let g = try check("folded Tile and DepthToSpace", nodes: [node("Tile", ["t", "reps"], ["tiled"]), d2s, node("Tile", ["z", "zreps"], ["zt"]), node("Add", ["space", "zt"], ["y"])],
                  inputs: [("z", [1, 2, 2, 4], z)],
                  initializers: [floatTensor("t", dims: [1, 2, 1, 4], values: t), int64Tensor("reps", [1, 4, 1, 1]), int64Tensor("zreps", [1, 1, 1, 2])],
                  opset: 13, expected: want, shape: [1, 2, 2, 8])
        // Only z's Tile (view, add, view) and the Add run: the constant's Tile and DepthToSpace folded.
        XCTAssertFalse(g.nodes.contains { if case .transpose = $0.op { return true }; return false }, "\(g.nodes.map(\.op.name))")

        // RotaryEmbedding with constant position_ids into constant caches: the rows are taken at
        // import (no embedding node), and the 4-D input [B, H, S, D] rotates by halves.
        let (q, qv) = random([1, 2, 2, 4])
        let cosT = (0..<10).map { _ in Float.random(in: -1...1, using: &rng) }, sinT = (0..<10).map { _ in Float.random(in: -1...1, using: &rng) }
        let pos = [3, 1]
        var wantQ = qv
        for h in 0..<2 { for si in 0..<2 { for i in 0..<2 {
            let base = (h * 2 + si) * 4, (cs, sn) = (Double(cosT[pos[si] * 2 + i]), Double(sinT[pos[si] * 2 + i]))
            wantQ[base + i] = cs * qv[base + i] - sn * qv[base + i + 2]
            wantQ[base + i + 2] = sn * qv[base + i] + cs * qv[base + i + 2]
        } } }
        let rg = try check("rotary with constant position_ids", nodes: [node("RotaryEmbedding", ["q", "cos", "sin", "pos"], ["y"])], inputs: [("q", [1, 2, 2, 4], q)],
                           initializers: [floatTensor("cos", dims: [5, 2], values: cosT), floatTensor("sin", dims: [5, 2], values: sinT), int64Tensor("pos", pos, dims: [1, 2])],
                           expected: wantQ, shape: [1, 2, 2, 4])
        XCTAssertFalse(rg.nodes.contains { if case .embedding = $0.op { return true }; return false }, "\(rg.nodes.map(\.op.name))")
    }

    // MARK: layout

    /// Tile with its repeats as an initializer (as exporters write it), on a run-time input.
    func testTileMatchesReference() throws {
        for (shape, repeats) in [([2, 3, 4], [1, 2, 3]), ([3, 5], [4, 1]), ([2, 1, 3, 2], [2, 3, 1, 2]), ([4], [1])] {
            let (x, v) = random(shape)
            let out = zip(shape, repeats).map { $0 * $1 }
            var want: [Double] = []
            forEachIndex(out) { idx in
                var o = 0
                for d in 0..<shape.count { o = o * shape[d] + idx[d] % shape[d] }
                want.append(v[o])
            }
            try check("tile \(shape) by \(repeats)", nodes: [node("Tile", ["x", "r"], ["y"])], inputs: [("x", shape, x)],
                      initializers: [int64Tensor("r", repeats)], opset: 13, expected: want, shape: out)
        }
    }

    /// DepthToSpace in both modes and SpaceToDepth as their inverses: y[n, c, h·b + i, w·b + j] reads
    /// channel (i·b + j)·C' + c (DCR) or c·b² + i·b + j (CRD).
    func testDepthToSpaceAndSpaceToDepthMatchReference() throws {
        let (n, cOut, h, w, b) = (2, 3, 4, 5, 2)
        let depth = [n, cOut * b * b, h, w], space = [n, cOut, h * b, w * b]
        for mode in ["DCR", "CRD"] {
            func channel(_ c: Int, _ i: Int, _ j: Int) -> Int { mode == "DCR" ? (i * b + j) * cOut + c : c * b * b + i * b + j }
            let (x, v) = random(depth)
            var want = [Double](repeating: 0, count: v.count)
            let (s, sv) = random(space)
            var wantS = [Double](repeating: 0, count: sv.count)
            for bn in 0..<n { for c in 0..<cOut { for y in 0..<(h * b) { for xx in 0..<(w * b) {
                let src = ((bn * cOut * b * b + channel(c, y % b, xx % b)) * h + y / b) * w + xx / b
                let dst = ((bn * cOut + c) * h * b + y) * w * b + xx
                want[dst] = v[src]
                wantS[src] = sv[dst]
            } } } }
            var d2s = node("DepthToSpace", ["x"], ["y"])
            d2s.attribute = [intAttribute("blocksize", b), stringAttribute("mode", mode)]
            try check("DepthToSpace \(mode)", nodes: [d2s], inputs: [("x", depth, x)], opset: 13, expected: want, shape: space)
            var s2d = node("SpaceToDepth", ["x"], ["y"])
            s2d.attribute = [intAttribute("blocksize", b)] + (mode == "CRD" ? [stringAttribute("mode", mode)] : [])
            try check("SpaceToDepth \(mode)", nodes: [s2d], inputs: [("x", space, s)], opset: 13, expected: wantS, shape: depth)
        }
    }

    // MARK: a decoder layer's pieces

    /// An exporter-style attention prologue: RMSNormalization over the hidden size with a learned
    /// scale, a projection to heads (Reshape + Transpose), RotaryEmbedding with int64 position_ids
    /// fed at run time, and the scores as Einsum "bhid,bhjd->bhij" of the rotated queries with
    /// keys given as an input — all against a float64 reference of the same maths.
    func testNormRotaryEinsumPrologueMatchesReference() throws {
        let (b, s, heads, d, maxPos) = (2, 3, 2, 8, 10)
        let hidden = heads * d
        let (x, xv) = random([b, s, hidden])
        let (k, kv) = random([b, heads, s, d])
        let scale = (0..<hidden).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let ids: [Int] = (0..<(b * s)).map { _ in Int.random(in: 0..<maxPos, using: &rng) }
        var cosT: [Float] = [], sinT: [Float] = []
        for p in 0..<maxPos { for i in 0..<(d / 2) {
            let a = Double(p) / pow(10000, Double(2 * i) / Double(d))
            cosT.append(Float(cos(a))); sinT.append(Float(sin(a)))
        } }
        for interleaved in [0, 1] {
            var rms = node("RMSNormalization", ["x", "scale"], ["normed"])
            rms.attribute = [floatAttribute("epsilon", 1e-6)]
            let split = node("Reshape", ["normed", "heads_shape"], ["split"])
            let perm = node("Transpose", ["split"], ["q"], ints: ["perm": [0, 2, 1, 3]])
            var rope = node("RotaryEmbedding", ["q", "cos", "sin", "pos"], ["qr"])
            rope.attribute = [intAttribute("interleaved", interleaved)]
            var scores = node("Einsum", ["qr", "k"], ["y"])
            scores.attribute = [stringAttribute("equation", "bhid,bhjd->bhij")]

            // The reference, in float64.
            var normed = [Double](repeating: 0, count: xv.count)
            for r in 0..<(b * s) {
                let row = xv[(r * hidden)..<((r + 1) * hidden)]
                let rmsv = (row.map { $0 * $0 }.reduce(0, +) / Double(hidden) + 1e-6).squareRoot()
                for j in 0..<hidden { normed[r * hidden + j] = xv[r * hidden + j] / rmsv * Double(scale[j]) }
            }
            var q = [Double](repeating: 0, count: b * heads * s * d)  // [B, H, S, D], rotated
            for bi in 0..<b { for h in 0..<heads { for si in 0..<s {
                let p = ids[bi * s + si]
                let src = (bi * s + si) * hidden + h * d, dst = ((bi * heads + h) * s + si) * d
                for i in 0..<(d / 2) {
                    let (c, sn) = (Double(cosT[p * d / 2 + i]), Double(sinT[p * d / 2 + i]))
                    let (i1, i2) = interleaved == 1 ? (2 * i, 2 * i + 1) : (i, i + d / 2)
                    q[dst + i1] = c * normed[src + i1] - sn * normed[src + i2]
                    q[dst + i2] = sn * normed[src + i1] + c * normed[src + i2]
                }
            } } }
            let r = einsumReference("bhid,bhjd->bhij", [([b, heads, s, d], q), ([b, heads, s, d], kv)])
            try check("prologue interleaved=\(interleaved)", nodes: [rms, split, perm, rope, scores],
                      inputs: [("x", [b, s, hidden], x), ("k", [b, heads, s, d], k),
                               ("pos", [b, s], try Tensor(shape: [b, s], scalars: ids.map(Float.init)))],
                      types: ["pos": 7],
                      initializers: [floatTensor("scale", dims: [Int64(hidden)], values: scale), int64Tensor("heads_shape", [b, s, heads, d]),
                                     floatTensor("cos", dims: [Int64(maxPos), Int64(d / 2)], values: cosT),
                                     floatTensor("sin", dims: [Int64(maxPos), Int64(d / 2)], values: sinT)],
                      expected: r.values, shape: r.shape)
        }
    }

    /// RotaryEmbedding on a 3-D input with num_heads, a partial rotary dimension and per-batch
    /// caches (no position_ids): the last half of each head passes through unchanged.
    func testRotaryEmbedding3DPartialMatchesReference() throws {
        let (b, s, heads, d, rot) = (2, 4, 3, 8, 4)
        let (x, xv) = random([b, s, heads * d])
        let (cosT, cv) = random([b, s, rot / 2]), (sinT, sv) = random([b, s, rot / 2])
        var want = xv
        for bi in 0..<b { for si in 0..<s { for h in 0..<heads { for i in 0..<(rot / 2) {
            let base = (bi * s + si) * heads * d + h * d, ci = (bi * s + si) * rot / 2 + i
            let (x1, x2) = (xv[base + i], xv[base + i + rot / 2])
            want[base + i] = cv[ci] * x1 - sv[ci] * x2
            want[base + i + rot / 2] = sv[ci] * x1 + cv[ci] * x2
        } } } }
        var n = node("RotaryEmbedding", ["x", "cos", "sin"], ["y"])
        n.attribute = [intAttribute("num_heads", heads), intAttribute("rotary_embedding_dim", rot)]
        try check("rotary 3-D partial", nodes: [n], inputs: [("x", [b, s, heads * d], x), ("cos", [b, s, rot / 2], cosT), ("sin", [b, s, rot / 2], sinT)],
                  expected: want, shape: [b, s, heads * d])
    }

    /// RMSNormalization over the trailing axes from `axis` (negative too), scale broadcasting.
    func testRMSNormalizationMatchesReference() throws {
        for (shape, axis) in [([2, 3, 4], 1), ([3, 5], -1), ([2, 2, 3, 4], -2)] {
            let (x, v) = random(shape)
            let a = axis < 0 ? axis + shape.count : axis
            let inner = shape[a...].reduce(1, *)
            let scaleShape = Array(shape[a...])
            let (sc, scv) = random(scaleShape)
            var want = v
            for r in 0..<(v.count / inner) {
                let ms = v[(r * inner)..<((r + 1) * inner)].map { $0 * $0 }.reduce(0, +) / Double(inner)
                for j in 0..<inner { want[r * inner + j] = v[r * inner + j] / (ms + 1e-5).squareRoot() * scv[j] }
            }
            var n = node("RMSNormalization", ["x", "scale"], ["y"])
            n.attribute = [intAttribute("axis", axis)]
            try check("RMSNormalization \(shape) axis \(axis)", nodes: [n], inputs: [("x", shape, x), ("scale", scaleShape, sc)],
                      expected: want, shape: shape)
        }
    }
}

// MARK: model building

func stringAttribute(_ name: String, _ value: String) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto(); a.name = name; a.type = .string; a.s = Data(value.utf8); return a
}

func intAttribute(_ name: String, _ value: Int) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto(); a.name = name; a.type = .int; a.i = Int64(value); return a
}

func floatAttribute(_ name: String, _ value: Float) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto(); a.name = name; a.type = .float; a.f = value; return a
}

func int64Tensor(_ name: String, _ values: [Int], dims: [Int]? = nil) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dims = (dims ?? [values.count]).map(Int64.init); t.dataType = 7
    t.int64Data = values.map(Int64.init)
    return t
}

/// modelBytes with an element type per input (1 float, 7 int64).
func typedModelBytes(nodes: [Onnx_NodeProto], inputs: [(String, [Int64], Int32)], outputs: [String],
                     initializers: [Onnx_TensorProto] = [], opset: Int64) throws -> Data {
    var m = try Onnx_ModelProto(serializedBytes: modelBytes(nodes: nodes, inputs: inputs.map { ($0.0, $0.1) }, outputs: outputs,
                                                             initializers: initializers, opset: opset))
    for (k, i) in inputs.enumerated() { m.graph.input[k].type.tensorType.elemType = i.2 }
    return try m.serializedData()
}

/// Imports a model of `nodes` (inputs typed by `types`, 1 float unless given; output y), checks
/// y's inferred shape, then runs it on the CPU and on the first OpenCL device (its arena poisoned
/// with NaN first), comparing y with `expected` within rtol / atol; the OpenCL run must leave no
/// node to the CPU fallback.
@discardableResult
func checkImportedModel(_ what: String, nodes: [Onnx_NodeProto], inputs: [(String, [Int], Tensor)], types: [String: Int32],
                        initializers: [Onnx_TensorProto], opset: Int64, expected: [Double], shape: [Int],
                        rtol: Float = 1e-4, atol: Float = 1e-5, file: StaticString, line: UInt) throws -> Graph {
    let data = try typedModelBytes(nodes: nodes, inputs: inputs.map { ($0.0, $0.1.map(Int64.init), types[$0.0] ?? 1) }, outputs: ["y"],
                                   initializers: initializers, opset: opset)
    let model = try OnnxModel(data: data, path: "\(what).onnx")
    let shapes = Dictionary(uniqueKeysWithValues: inputs.map { ($0.0, $0.1) })
    let graph = try model.graph(inputShapes: shapes)
    XCTAssertEqual(try graph.inferShapes(inputShapes: shapes)["y"], shape, "\(what): output shape", file: file, line: line)
    var devices: [Device] = [CPUDevice(threads: 2)]
    if let cl = OpenCLRuntime.devices().first { devices.append(cl) }
    let want = try Tensor(shape: shape, scalars: expected.map { Float($0) })
    let feeds = Dictionary(uniqueKeysWithValues: inputs.map { ($0.0, $0.2) })
    for device in devices {
        let compiled = try device.compile(graph, outputs: ["y"])
        if let cl = compiled as? OpenCLCompiledGraph { try cl.poisonArena(inputShapes: shapes) }
        let y = try compiled.run(feeds)["y"]!
        XCTAssertEqual(y.shape, shape, "\(what) on \(device.info.spec)", file: file, line: line)
        let c = closeness(y, want, rtol: rtol, atol: atol)
        XCTAssertLessThanOrEqual(c, 1, "\(what) on \(device.info.spec): worst error ratio \(c); got \(y.scalars.prefix(12)), want \(expected.prefix(12))",
                                 file: file, line: line)
        if let cl = compiled as? OpenCLCompiledGraph {
            XCTAssertEqual(cl.fallbacks, [:], "\(what): nodes fell back to the CPU", file: file, line: line)
        }
    }
    return graph
}
