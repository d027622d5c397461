// The float64 reference of every op, written plainly from the semantics Op.swift documents (loops
// over output elements, no tiling, no fusion tricks), so that it shares no code and no shortcut
// with either backend. Each output comes with a per-element scale: the magnitude that float32
// rounding error grows with (the sum of |terms| of a dot product, |x| and |y| of an elementwise
// op), which the per-op error bounds multiply. A dropped operand or a wrong index then shows as an
// error far above the bound, while cancellation in a long sum does not make a correct kernel fail.

import Foundation
import Quarry

/// One reference output: its shape, its float64 values and the scale of each value's error.
public struct ReferenceOutput: Sendable {
    public var shape: [Int]
    public var values: [Double]
    public var scale: [Double]
}

/// Row-major multi-index of flat index `i` in `shape`.
func multiIndex(_ i: Int, _ shape: [Int]) -> [Int] {
    var rem = i
    var idx = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
        idx[d] = rem % shape[d]; rem /= shape[d]
    }
    return idx
}

/// Flat index of a multi-index in `shape`.
func flatIndex(_ idx: [Int], _ shape: [Int]) -> Int {
    var f = 0
    for (i, d) in zip(idx, shape) { f = f * d + i }
    return f
}

/// The flat index in an operand of shape `s` (numpy-broadcast to `out`) of output index `idx`.
func broadcastIndex(_ idx: [Int], out: [Int], operand s: [Int]) -> Int {
    let lead = out.count - s.count
    var f = 0
    for d in 0..<s.count { f = f * s[d] + (s[d] == 1 ? 0 : idx[lead + d]) }
    return f
}

/// An activation in float64, from its definition.
public func referenceActivation(_ act: Activation, _ x: Double) -> Double {
    switch act {
    case .relu: return max(x, 0)
    case .clip(let lo, let hi): return min(max(x, Double(lo)), Double(hi))
    case .leakyRelu(let a): return x >= 0 ? x : Double(a) * x
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    case .hardSigmoid(let a, let b): return min(max(Double(a) * x + Double(b), 0), 1)
    case .tanh: return Foundation.tanh(x)
    case .silu: return x / (1 + Foundation.exp(-x))
    case .mish: return x * Foundation.tanh(Foundation.log1p(Foundation.exp(x)))
    case .gelu(let approximate):
        if approximate {
            return 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        }
        // erfc rather than 1 + erf: exact in the negative tail, where 1 + erf cancels.
        return 0.5 * x * Foundation.erfc(-x / 2.0.squareRoot())
    case .hardSwish: return x * min(max(x + 3, 0), 6) / 6
    case .sqrt: return x.squareRoot()
    case .exp: return Foundation.exp(x)
    case .log: return Foundation.log(x)
    case .neg: return -x
    case .abs: return Swift.abs(x)
    case .erf: return Foundation.erf(x)
    case .reciprocal: return 1 / x
    case .sin: return Foundation.sin(x)
    case .cos: return Foundation.cos(x)
    case .floor: return x.rounded(.down)
    case .ceil: return x.rounded(.up)
    case .round: return x.rounded(.toNearestOrEven)
    case .trunc: return x.rounded(.towardZero)
    case .softplus: return Foundation.log1p(Foundation.exp(x))
    case .elu(let a): return x > 0 ? x : Double(a) * Foundation.expm1(x)
    case .selu(let a, let g): return Double(g) * (x > 0 ? x : Double(a) * Foundation.expm1(x))
    case .not: return x == 0 ? 1 : 0
    case .sign: return x > 0 ? 1 : (x < 0 ? -1 : 0)
    }
}

/// Applies an optional fused activation to values whose error scale is `scale`. The activations
/// that fuse have slopes of at most 1.5 (hardswish at 3), so the scale grows by that much.
func applyActivation(_ act: Activation?, _ v: inout [Double], _ scale: inout [Double]) {
    guard let act else { return }
    for i in v.indices {
        v[i] = referenceActivation(act, v[i])
        scale[i] *= 1.5
    }
}

func referenceBinary(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
    switch op {
    case .add: return a + b
    case .sub: return a - b
    case .mul: return a * b
    case .div: return a / b
    case .pow: return Foundation.pow(a, b)
    case .max: return max(a, b)
    case .min: return min(a, b)
    case .equal: return a == b ? 1 : 0
    case .less: return a < b ? 1 : 0
    case .lessOrEqual: return a <= b ? 1 : 0
    case .greater: return a > b ? 1 : 0
    case .greaterOrEqual: return a >= b ? 1 : 0
    case .and: return a != 0 && b != 0 ? 1 : 0
    case .or: return a != 0 || b != 0 ? 1 : 0
    case .xor: return (a != 0) != (b != 0) ? 1 : 0
    // From the definitions: a - b * floor(a / b) and a - b * trunc(a / b), exact for the
    // whole-number cases; for fractions the float64 quotient is far from an integer boundary.
    case .mod: return a - b * (a / b).rounded(.down)
    case .fmod: return a - b * (a / b).rounded(.towardZero)
    }
}

public enum ReferenceError: Error, CustomStringConvertible {
    case unsupported(String)
    public var description: String {
        switch self { case .unsupported(let m): return "no float64 reference: \(m)" }
    }
}

/// The float64 result of `op` on `operands` (nil for an absent optional operand).
public func referenceOutputs(_ op: Op, _ operands: [Tensor?]) throws -> [ReferenceOutput] {
    let d: [[Double]?] = operands.map { $0.map { $0.scalars.map(Double.init) } }
    let s: [[Int]?] = operands.map { $0?.shape }
    func exact(_ shape: [Int], _ v: [Double]) -> ReferenceOutput {
        ReferenceOutput(shape: shape, values: v, scale: v.map { Swift.abs($0) })
    }
    switch op {
    case .input, .constant, .expandDepthwiseProject:
        throw ReferenceError.unsupported(op.name)

    case .conv2d(let a):
        return [conv2d(a, x: d[0]!, xs: s[0]!, w: d[1]!, ws: s[1]!, bias: opt(d, 2), residual: opt(d, 3))]

    case .convTranspose2d(let a):
        return [convTranspose2d(a, x: d[0]!, xs: s[0]!, w: d[1]!, ws: s[1]!, bias: opt(d, 2))]

    case .dense(let act):
        let x = d[0]!, w = d[1]!, ws = s[1]!, bias = opt(d, 2)
        let (n, k) = (ws[0], ws[1]), rows = x.count / max(k, 1)
        var v = [Double](repeating: 0, count: rows * n), sc = v
        for r in 0..<rows {
            for j in 0..<n {
                var acc = bias?[j] ?? 0, mag = Swift.abs(acc)
                for i in 0..<k {
                    let t = x[r * k + i] * w[j * k + i]
                    acc += t; mag += Swift.abs(t)
                }
                v[r * n + j] = acc; sc[r * n + j] = mag
            }
        }
        applyActivation(act, &v, &sc)
        return [ReferenceOutput(shape: Array(s[0]!.dropLast()) + [n], values: v, scale: sc)]

    case .matmul(let ta, let tb):
        return [matmul(a: d[0]!, as_: s[0]!, b: d[1]!, bs: s[1]!, ta: ta, tb: tb)]

    case .maxPool2d(let a), .avgPool2d(let a):
        var isMax = false
        if case .maxPool2d = op { isMax = true }
        return [pool(a, isMax: isMax, x: d[0]!, xs: s[0]!)]

    case .globalAvgPool, .globalMaxPool:
        let xs = s[0]!, x = d[0]!
        let planes = xs[0] * xs[1], plane = xs.dropFirst(2).reduce(1, *)
        var isMax = false
        if case .globalMaxPool = op { isMax = true }
        var v: [Double] = [], sc: [Double] = []
        for p in 0..<planes {
            let part = x[(p * plane)..<((p + 1) * plane)]
            v.append(isMax ? part.max()! : part.reduce(0, +) / Double(plane))
            sc.append(isMax ? Swift.abs(part.max()!) : part.reduce(0) { $0 + Swift.abs($1) } / Double(plane))
        }
        return [ReferenceOutput(shape: [xs[0], xs[1]] + Array(repeating: 1, count: xs.count - 2), values: v, scale: sc)]

    case .batchNorm(let eps):
        let xs = s[0]!, x = d[0]!
        let (g, b, mean, variance) = (d[1]!, d[2]!, d[3]!, d[4]!)
        let c = xs[1], inner = xs.dropFirst(2).reduce(1, *)
        var v = x, sc = x
        for i in x.indices {
            let ch = (i / inner) % c
            let r = 1 / (variance[ch] + Double(eps)).squareRoot()
            v[i] = (x[i] - mean[ch]) * r * g[ch] + b[ch]
            sc[i] = (Swift.abs(x[i]) + Swift.abs(mean[ch])) * r * Swift.abs(g[ch]) + Swift.abs(b[ch])
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .layerNorm(let eps, let nd):
        let xs = s[0]!, x = d[0]!
        let n = xs.suffix(nd).reduce(1, *)
        let (g, b) = (opt(d, 1), opt(d, 2))
        // The scale carries |x| + |mean| (times rstd), not |x - mean|: the subtraction cancels
        // where a row's values are close, and float32 keeps the inputs' absolute error there
        // (a row of two near-equal values normalises to ±1 from a difference of a few ulp).
        var v = x, sc = x
        for r in 0..<(x.count / max(n, 1)) {
            let row = x[(r * n)..<((r + 1) * n)]
            let mean = row.reduce(0, +) / Double(n)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            let rstd = 1 / (variance + Double(eps)).squareRoot()
            for j in 0..<n {
                let xh = (x[r * n + j] - mean) * rstd
                let gj = g?[j] ?? 1, bj = b?[j] ?? 0
                v[r * n + j] = xh * gj + bj
                sc[r * n + j] = ((Swift.abs(x[r * n + j]) + Swift.abs(mean)) * rstd + 1) * Swift.abs(gj) + Swift.abs(bj)
            }
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .instanceNorm(let eps):
        let xs = s[0]!, x = d[0]!
        let c = xs[1], n = xs.dropFirst(2).reduce(1, *)
        let (g, b) = (opt(d, 1), opt(d, 2))
        var v = x, sc = x
        for p in 0..<(xs[0] * c) {
            let ch = p % c
            let row = x[(p * n)..<((p + 1) * n)]
            let mean = row.reduce(0, +) / Double(n)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            let rstd = 1 / (variance + Double(eps)).squareRoot()
            for j in 0..<n {
                let xh = (x[p * n + j] - mean) * rstd
                let gj = g?[ch] ?? 1, bj = b?[ch] ?? 0
                v[p * n + j] = xh * gj + bj
                sc[p * n + j] = ((Swift.abs(x[p * n + j]) + Swift.abs(mean)) * rstd + 1) * Swift.abs(gj) + Swift.abs(bj)
            }
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .softmax(let axis), .logSoftmax(let axis):
        var isLog = false
        if case .logSoftmax = op { isLog = true }
        let xs = s[0]!, x = d[0]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        let n = xs[ax], inner = xs[(ax + 1)...].reduce(1, *), outer = xs[..<ax].reduce(1, *)
        var v = x, sc = x
        for o in 0..<outer {
            for i in 0..<inner {
                let idx = (0..<n).map { (o * n + $0) * inner + i }
                let m = idx.map { x[$0] }.max()!
                let total = idx.reduce(0) { $0 + Foundation.exp(x[$1] - m) }
                for j in idx {
                    if isLog {
                        v[j] = x[j] - m - Foundation.log(total)
                        sc[j] = Swift.abs(x[j]) + Swift.abs(m) + Swift.abs(Foundation.log(total))
                    } else {
                        v[j] = Foundation.exp(x[j] - m) / total
                        // Relative to the row's largest probability: exp's error is relative to
                        // its argument, |x - m|, which can reach a few units.
                        sc[j] = v[j] * (1 + Swift.abs(x[j] - m)) + 1 / total
                    }
                }
            }
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .attention(let heads, let causal):
        return [attention(heads: heads, causal: causal, q: d[0]!, qs: s[0]!, k: d[1]!, ks: s[1]!, v: d[2]!, vs: s[2]!, mask: opt(d, 3))]

    case .lstm(let a), .gru(let a):
        var isLSTM = false
        if case .lstm = op { isLSTM = true }
        return recurrent(isLSTM: isLSTM, a, x: d[0]!, xs: s[0]!, w: d[1]!, r: d[2]!, bias: opt(d, 3), h0: opt(d, 4),
                         c0: isLSTM ? opt(d, 5) : nil)

    case .embedding:
        let ids = d[0]!, table = d[1]!, ts = s[1]!
        let (rows, width) = (ts[0], ts[1])
        var v: [Double] = []
        v.reserveCapacity(ids.count * width)
        for id in ids {
            guard id.rounded() == id, id >= Double(-rows), id < Double(rows) else {
                throw ReferenceError.unsupported("embedding id \(id) is not a row of a \(rows)-row table")
            }
            let row = id < 0 ? Int(id) + rows : Int(id)
            v.append(contentsOf: table[(row * width)..<((row + 1) * width)])
        }
        return [exact(s[0]! + [width], v)]

    case .activation(let act):
        let x = d[0]!
        let v = x.map { referenceActivation(act, $0) }
        // A float32 implementation's error follows the input's magnitude as well as the output's
        // (x * sigmoid(x) and 0.5 x (1 + erf) cancel in their tails).
        return [ReferenceOutput(shape: s[0]!, values: v, scale: zip(x, v).map { Swift.abs($0) + Swift.abs($1) })]

    case .binary(let bop, let act):
        let (a, b, as_, bs) = (d[0]!, d[1]!, s[0]!, s[1]!)
        let out = broadcastShapes(as_, bs)!
        let count = out.reduce(1, *)
        var v = [Double](repeating: 0, count: count), sc = v
        for i in 0..<count {
            let idx = multiIndex(i, out)
            let x = a[broadcastIndex(idx, out: out, operand: as_)], y = b[broadcastIndex(idx, out: out, operand: bs)]
            let r = referenceBinary(bop, x, y)
            v[i] = r
            switch bop {
            case .add, .sub: sc[i] = Swift.abs(x) + Swift.abs(y)
            // pow's result carries the error of y * log(x) relative to it.
            case .pow: sc[i] = Swift.abs(r) * (1 + Swift.abs(y * Foundation.log(x)))
            default: sc[i] = Swift.abs(r)
            }
        }
        applyActivation(act, &v, &sc)
        return [ReferenceOutput(shape: out, values: v, scale: sc)]

    case .select:
        let (c, x, y) = (d[0]!, d[1]!, d[2]!)
        let out = broadcastShapes(s[0]!, broadcastShapes(s[1]!, s[2]!)!)!
        var v: [Double] = []
        for i in 0..<out.reduce(1, *) {
            let idx = multiIndex(i, out)
            v.append(c[broadcastIndex(idx, out: out, operand: s[0]!)] != 0
                     ? x[broadcastIndex(idx, out: out, operand: s[1]!)] : y[broadcastIndex(idx, out: out, operand: s[2]!)])
        }
        return [exact(out, v)]

    case .reduce(let rop, let axes, let keepDims):
        let xs = s[0]!, x = d[0]!
        var set = Set(axes.map { normalizeAxis($0, rank: xs.count)! })
        if axes.isEmpty { set = Set(0..<xs.count) }
        let kept = xs.enumerated().map { set.contains($0.offset) ? 1 : $0.element }
        let count = kept.reduce(1, *)
        var v = [Double](repeating: rop == .max ? -.infinity : 0, count: count), sc = [Double](repeating: 0, count: count)
        let n = Double(xs.enumerated().filter { set.contains($0.offset) }.reduce(1) { $0 * $1.element })
        for i in x.indices {
            var idx = multiIndex(i, xs)
            for a in set { idx[a] = 0 }
            let o = flatIndex(idx, kept)
            switch rop {
            case .max: v[o] = max(v[o], x[i])
            case .sum, .mean: v[o] += x[i]; sc[o] += Swift.abs(x[i])
            }
        }
        if rop == .mean { for i in v.indices { v[i] /= n; sc[i] /= n } }
        if rop == .max { sc = v.map { Swift.abs($0) } }
        let outShape = keepDims ? kept : xs.enumerated().filter { !set.contains($0.offset) }.map(\.element)
        return [ReferenceOutput(shape: outShape, values: v, scale: sc)]

    case .concat(let axis):
        let first = s[0]!
        let ax = normalizeAxis(axis, rank: first.count)!
        let outer = first[..<ax].reduce(1, *)
        var v: [Double] = []
        for o in 0..<outer {
            for (t, shape) in zip(d, s) {
                let chunk = shape![ax...].reduce(1, *)
                v.append(contentsOf: t![(o * chunk)..<((o + 1) * chunk)])
            }
        }
        var out = first
        out[ax] = s.reduce(0) { $0 + $1![ax] }
        return [exact(out, v)]

    case .argExtreme(let largest, let axis, let keepDims, let selectLast):
        let xs = s[0]!, x = d[0]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        var kept = xs
        kept[ax] = 1
        // Every output position scans its row along the axis, from the definition.
        let v = (0..<kept.reduce(1, *)).map { o -> Double in
            var idx = multiIndex(o, kept)
            var best = 0
            for l in 0..<xs[ax] {
                idx[ax] = l
                let a = x[flatIndex(idx, xs)]
                idx[ax] = best
                let b = x[flatIndex(idx, xs)]
                if a == b ? (selectLast && l > best) : (largest ? a > b : a < b) { best = l }
            }
            return Double(best)
        }
        var out = xs
        if keepDims { out[ax] = 1 } else { out.remove(at: ax) }
        return [exact(out, v)]

    case .topK(let k, let axis, let largest):
        let xs = s[0]!, x = d[0]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        var out = xs
        out[ax] = k
        var values = [Double](repeating: 0, count: out.reduce(1, *)), positions = values
        var row = xs
        row[ax] = 1
        for r in 0..<row.reduce(1, *) {
            var idx = multiIndex(r, row)
            let elements = (0..<xs[ax]).map { l -> (Double, Int) in idx[ax] = l; return (x[flatIndex(idx, xs)], l) }
            // Stable sort on the value alone: equal values stay in position order.
            let sorted = elements.enumerated().sorted { p, q in
                p.element.0 == q.element.0 ? p.offset < q.offset : (largest ? p.element.0 > q.element.0 : p.element.0 < q.element.0)
            }.map(\.element)
            for j in 0..<k {
                idx[ax] = j
                values[flatIndex(idx, out)] = sorted[j].0
                positions[flatIndex(idx, out)] = Double(sorted[j].1)
            }
        }
        return [exact(out, values), exact(out, positions)]

    case .cumSum(let axis, let exclusive, let reverse):
        let xs = s[0]!, x = d[0]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        var v = [Double](repeating: 0, count: x.count), sc = v
        for i in x.indices {
            var idx = multiIndex(i, xs)
            let at = idx[ax]
            // The terms the definition sums: before (or after, reversed) this position.
            for l in 0..<xs[ax] where reverse ? (exclusive ? l > at : l >= at) : (exclusive ? l < at : l <= at) {
                idx[ax] = l
                let t = x[flatIndex(idx, xs)]
                v[i] += t; sc[i] += Swift.abs(t)
            }
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .gather(let axis):
        let xs = s[0]!, x = d[0]!, ids = d[1]!, ishape = s[1]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        let out = Array(xs[..<ax]) + ishape + Array(xs[(ax + 1)...])
        let v = try (0..<out.reduce(1, *)).map { o -> Double in
            let oi = multiIndex(o, out)
            let j = flatIndex(Array(oi[ax..<(ax + ishape.count)]), ishape)
            let p = try referencePosition(ids[j], xs[ax])
            return x[flatIndex(Array(oi[..<ax]) + [p] + Array(oi[(ax + ishape.count)...]), xs)]
        }
        return [exact(out, v)]

    case .gatherElements(let axis):
        let xs = s[0]!, x = d[0]!, ids = d[1]!, ishape = s[1]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        let v = try ids.indices.map { e -> Double in
            var idx = multiIndex(e, ishape)
            idx[ax] = try referencePosition(ids[e], xs[ax])
            return x[flatIndex(idx, xs)]
        }
        return [exact(ishape, v)]

    case .gatherND(let b):
        let xs = s[0]!, x = d[0]!, ids = d[1]!, ishape = s[1]!
        let k = ishape.last!
        let out = Array(ishape.dropLast()) + Array(xs[(b + k)...])
        let v = try (0..<out.reduce(1, *)).map { o -> Double in
            let oi = multiIndex(o, out)
            // The output's leading coordinates name an index tuple; the rest walk the slice.
            let lead = Array(oi[..<(ishape.count - 1)])
            var idx = Array(lead[..<b])
            for j in 0..<k { idx.append(try referencePosition(ids[flatIndex(lead + [j], ishape)], xs[b + j])) }
            return x[flatIndex(idx + Array(oi[(ishape.count - 1)...]), xs)]
        }
        return [exact(out, v)]

    case .scatterND(let reduction):
        let xs = s[0]!, ids = d[1]!, ishape = s[1]!, u = d[2]!
        let k = ishape.last!
        var v = d[0]!, sc = v.map { Swift.abs($0) }
        let tuples = ishape.dropLast().reduce(1, *), slice = xs[k...].reduce(1, *)
        for t in 0..<tuples {
            let lead = try (0..<k).map { try referencePosition(ids[t * k + $0], xs[$0]) }
            for e in 0..<slice {
                let o = flatIndex(lead + multiIndex(e, Array(xs[k...])), xs), w = u[t * slice + e]
                switch reduction {
                case .none: v[o] = w; sc[o] = Swift.abs(w)
                case .add: v[o] += w; sc[o] += Swift.abs(w)
                case .mul: v[o] *= w; sc[o] = Swift.abs(v[o]) * 2
                case .max: v[o] = max(v[o], w); sc[o] = Swift.abs(v[o])
                case .min: v[o] = min(v[o], w); sc[o] = Swift.abs(v[o])
                }
            }
        }
        return [ReferenceOutput(shape: xs, values: v, scale: sc)]

    case .split(let axis, let sizes):
        let xs = s[0]!, x = d[0]!
        let ax = normalizeAxis(axis, rank: xs.count)!
        var start = 0
        return sizes.map { size in
            var shape = xs
            shape[ax] = size
            let v = (0..<shape.reduce(1, *)).map { i -> Double in
                var idx = multiIndex(i, shape)
                idx[ax] += start
                return x[flatIndex(idx, xs)]
            }
            start += size
            return exact(shape, v)
        }

    case .slice(let starts, let ends, let axes, let steps):
        let xs = s[0]!, x = d[0]!
        var picks = xs.map { Array(0..<$0) }
        for i in 0..<axes.count {
            let ax = normalizeAxis(axes[i], rank: xs.count)!
            let r = sliceRange(start: starts[i], end: ends[i], step: steps[i], dim: xs[ax])
            picks[ax] = (0..<r.count).map { r.start + $0 * steps[i] }
        }
        let shape = picks.map(\.count)
        let v = (0..<shape.reduce(1, *)).map { i -> Double in
            let idx = multiIndex(i, shape)
            return x[flatIndex(idx.enumerated().map { picks[$0.offset][$0.element] }, xs)]
        }
        return [exact(shape, v)]

    case .pad(let pads, let mode, let value):
        let xs = s[0]!, x = d[0]!, r = xs.count
        let shape = (0..<r).map { xs[$0] + pads[$0] + pads[$0 + r] }
        let v = (0..<shape.reduce(1, *)).map { i -> Double in
            var src: [Int] = []
            for (dim, o) in multiIndex(i, shape).enumerated() {
                var p = o - pads[dim]
                let n = xs[dim]
                if p < 0 || p >= n {
                    switch mode {
                    case .constant: return Double(value)
                    case .edge: p = p < 0 ? 0 : n - 1
                    case .reflect: p = p < 0 ? -p : 2 * (n - 1) - p
                    }
                }
                src.append(p)
            }
            return x[flatIndex(src, xs)]
        }
        return [exact(shape, v)]

    case .upsample(let mode, let sh, let sw, let size):
        return [upsample(mode: mode, scaleH: sh, scaleW: sw, size: size, x: d[0]!, xs: s[0]!)]

    case .reshape(let target):
        return [exact(try resolveReshape(target, input: s[0]!, node: "reference"), d[0]!)]

    case .flatten(let axis):
        let xs = s[0]!
        let ax = axis < 0 ? axis + xs.count : axis
        return [exact([xs[..<ax].reduce(1, *), xs[ax...].reduce(1, *)], d[0]!)]

    case .identity:
        return [exact(s[0]!, d[0]!)]

    case .transpose(let perm):
        let xs = s[0]!, x = d[0]!
        let shape = perm.map { xs[$0] }
        let v = (0..<shape.reduce(1, *)).map { i -> Double in
            let idx = multiIndex(i, shape)
            var src = [Int](repeating: 0, count: xs.count)
            for (k, p) in perm.enumerated() { src[p] = idx[k] }
            return x[flatIndex(src, xs)]
        }
        return [exact(shape, v)]
    }
}

private func opt(_ d: [[Double]?], _ i: Int) -> [Double]? { i < d.count ? d[i] : nil }

/// The position an index value names on an axis of length `n` (negative values count from the
/// end); the cases hold whole numbers in [-n, n), anything else has no reference.
private func referencePosition(_ f: Double, _ n: Int) throws -> Int {
    guard f.rounded() == f, f >= Double(-n), f < Double(n) else {
        throw ReferenceError.unsupported("index \(f) is not a position on an axis of \(n)")
    }
    return f < 0 ? Int(f) + n : Int(f)
}

private func conv2d(_ a: Conv2DAttributes, x: [Double], xs: [Int], w: [Double], ws: [Int], bias: [Double]?, residual: [Double]?) -> ReferenceOutput {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let o = ws[0], cg = c / a.groups, og = o / a.groups
    let oh = windowOutputSize(input: h, kernel: a.kernelH, stride: a.strideH, dilation: a.dilationH, padBegin: a.padding.top, padEnd: a.padding.bottom)
    let ow = windowOutputSize(input: wd, kernel: a.kernelW, stride: a.strideW, dilation: a.dilationW, padBegin: a.padding.left, padEnd: a.padding.right)
    var v = [Double](repeating: 0, count: n * o * oh * ow), sc = v
    x.withUnsafeBufferPointer { x in
        w.withUnsafeBufferPointer { w in
            for b in 0..<n {
                for oc in 0..<o {
                    let g = oc / og
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            var acc = bias?[oc] ?? 0, mag = Swift.abs(acc)
                            for ci in 0..<cg {
                                for ky in 0..<a.kernelH {
                                    let iy = oy * a.strideH - a.padding.top + ky * a.dilationH
                                    if iy < 0 || iy >= h { continue }
                                    for kx in 0..<a.kernelW {
                                        let ix = ox * a.strideW - a.padding.left + kx * a.dilationW
                                        if ix < 0 || ix >= wd { continue }
                                        let t = x[((b * c + g * cg + ci) * h + iy) * wd + ix] * w[((oc * cg + ci) * a.kernelH + ky) * a.kernelW + kx]
                                        acc += t; mag += Swift.abs(t)
                                    }
                                }
                            }
                            let i = ((b * o + oc) * oh + oy) * ow + ox
                            if let residual { acc += residual[i]; mag += Swift.abs(residual[i]) }
                            v[i] = acc; sc[i] = mag
                        }
                    }
                }
            }
        }
    }
    applyActivation(a.activation, &v, &sc)
    return ReferenceOutput(shape: [n, o, oh, ow], values: v, scale: sc)
}

private func convTranspose2d(_ a: ConvTranspose2DAttributes, x: [Double], xs: [Int], w: [Double], ws: [Int], bias: [Double]?) -> ReferenceOutput {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let og = ws[1], o = og * a.groups, cg = c / a.groups
    let oh = (h - 1) * a.strideH - a.padding.top - a.padding.bottom + a.dilationH * (a.kernelH - 1) + a.outputPaddingH + 1
    let ow = (wd - 1) * a.strideW - a.padding.left - a.padding.right + a.dilationW * (a.kernelW - 1) + a.outputPaddingW + 1
    var v = [Double](repeating: 0, count: n * o * oh * ow), sc = v
    for b in 0..<n {
        for oc in 0..<o {
            let base = (b * o + oc) * oh * ow
            for p in 0..<(oh * ow) { v[base + p] = bias?[oc] ?? 0; sc[base + p] = Swift.abs(v[base + p]) }
        }
        // Each input element scatters into the outputs its kernel window covers.
        for ci in 0..<c {
            let g = ci / cg
            for iy in 0..<h {
                for ix in 0..<wd {
                    let xv = x[((b * c + ci) * h + iy) * wd + ix]
                    for o2 in 0..<og {
                        for ky in 0..<a.kernelH {
                            let oy = iy * a.strideH - a.padding.top + ky * a.dilationH
                            if oy < 0 || oy >= oh { continue }
                            for kx in 0..<a.kernelW {
                                let ox = ix * a.strideW - a.padding.left + kx * a.dilationW
                                if ox < 0 || ox >= ow { continue }
                                let t = xv * w[((ci * og + o2) * a.kernelH + ky) * a.kernelW + kx]
                                let i = ((b * o + g * og + o2) * oh + oy) * ow + ox
                                v[i] += t; sc[i] += Swift.abs(t)
                            }
                        }
                    }
                }
            }
        }
    }
    applyActivation(a.activation, &v, &sc)
    return ReferenceOutput(shape: [n, o, oh, ow], values: v, scale: sc)
}

private func matmul(a: [Double], as_: [Int], b: [Double], bs: [Int], ta: Bool, tb: Bool) -> ReferenceOutput {
    let (ar, br) = (as_.count, bs.count)
    let m = ta ? as_[ar - 1] : as_[ar - 2], k = ta ? as_[ar - 2] : as_[ar - 1]
    let n = tb ? bs[br - 2] : bs[br - 1]
    let aBatch = Array(as_.dropLast(2)), bBatch = Array(bs.dropLast(2))
    let batch = broadcastShapes(aBatch, bBatch)!
    let batches = batch.reduce(1, *)
    var v = [Double](repeating: 0, count: batches * m * n), sc = v
    for bi in 0..<batches {
        let idx = multiIndex(bi, batch)
        let ao = broadcastIndex(idx, out: batch, operand: aBatch) * m * k
        let bo = broadcastIndex(idx, out: batch, operand: bBatch) * k * n
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0, mag = 0.0
                for p in 0..<k {
                    let av = a[ao + (ta ? p * m + i : i * k + p)], bv = b[bo + (tb ? j * k + p : p * n + j)]
                    acc += av * bv; mag += Swift.abs(av * bv)
                }
                v[(bi * m + i) * n + j] = acc; sc[(bi * m + i) * n + j] = mag
            }
        }
    }
    return ReferenceOutput(shape: batch + [m, n], values: v, scale: sc)
}

/// PyTorch / ONNX pooling: padded positions are skipped by max; the average divides by the
/// window clipped to input + padding (count_include_pad) or by the input positions only.
private func pool(_ a: Pool2DAttributes, isMax: Bool, x: [Double], xs: [Int]) -> ReferenceOutput {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
    let oh = windowOutputSize(input: h, kernel: a.kernelH, stride: a.strideH, dilation: a.dilationH, padBegin: a.padding.top, padEnd: a.padding.bottom, ceilMode: a.ceilMode)
    let ow = windowOutputSize(input: w, kernel: a.kernelW, stride: a.strideW, dilation: a.dilationW, padBegin: a.padding.left, padEnd: a.padding.right, ceilMode: a.ceilMode)
    var v: [Double] = [], sc: [Double] = []
    for p in 0..<(n * c) {
        for oy in 0..<oh {
            for ox in 0..<ow {
                var best = -Double.infinity, sum = 0.0, mag = 0.0, inside = 0, padded = 0
                for ky in 0..<a.kernelH {
                    for kx in 0..<a.kernelW {
                        let y = oy * a.strideH - a.padding.top + ky * a.dilationH
                        let xx = ox * a.strideW - a.padding.left + kx * a.dilationW
                        if y < h + a.padding.bottom && xx < w + a.padding.right { padded += 1 }
                        guard y >= 0, y < h, xx >= 0, xx < w else { continue }
                        let e = x[p * h * w + y * w + xx]
                        best = max(best, e); sum += e; mag += Swift.abs(e); inside += 1
                    }
                }
                let divisor = Double(a.countIncludePad ? padded : inside)
                v.append(isMax ? best : sum / divisor)
                sc.append(isMax ? Swift.abs(best) : mag / divisor)
            }
        }
    }
    return ReferenceOutput(shape: [n, c, oh, ow], values: v, scale: sc)
}

private func attention(heads: Int, causal: Bool, q: [Double], qs: [Int], k: [Double], ks: [Int], v: [Double], vs: [Int], mask: [Double]?) -> ReferenceOutput {
    let (b, sq, sk) = (qs[0], qs[1], ks[1])
    let dq = qs[2] / heads, dv = vs[2] / heads
    var out = [Double](repeating: 0, count: b * sq * heads * dv), sc = out
    for bi in 0..<b {
        for h in 0..<heads {
            for i in 0..<sq {
                var scores = [Double](repeating: -.infinity, count: sk), scoreMag = [Double](repeating: 0, count: sk)
                for j in 0..<sk {
                    if causal && j > i { continue }
                    if let mask, mask[bi * sk + j] == 0 { continue }
                    var dot = 0.0, mag = 0.0
                    for d in 0..<dq {
                        let t = q[(bi * sq + i) * heads * dq + h * dq + d] * k[(bi * sk + j) * heads * dq + h * dq + d]
                        dot += t; mag += Swift.abs(t)
                    }
                    scores[j] = dot / Double(dq).squareRoot()
                    scoreMag[j] = mag / Double(dq).squareRoot()
                }
                let m = scores.max()!
                if m == -.infinity { continue }  // nothing to attend: zeros
                let e = scores.map { Foundation.exp($0 - m) }
                let total = e.reduce(0, +)
                // A score's rounding error moves its weight relatively by as much.
                let maxScoreMag = scoreMag.max()!
                for c in 0..<dv {
                    var acc = 0.0, mag = 0.0
                    for j in 0..<sk {
                        let t = e[j] * v[(bi * sk + j) * heads * dv + h * dv + c]
                        acc += t; mag += Swift.abs(t)
                    }
                    out[(bi * sq + i) * heads * dv + h * dv + c] = acc / total
                    sc[(bi * sq + i) * heads * dv + h * dv + c] = mag / total * (1 + maxScoreMag)
                }
            }
        }
    }
    return ReferenceOutput(shape: [b, sq, heads * dv], values: out, scale: sc)
}

/// LSTM (gates i, f, g, o) and GRU (gates r, z, n) as PyTorch defines them, step by step; bias is
/// [input biases, recurrent biases] per direction; GRU with linear_before_reset applies the reset
/// gate to (R h + Rb), without it to h before the recurrent product (ONNX's default form).
private func recurrent(isLSTM: Bool, _ a: RecurrentAttributes, x: [Double], xs: [Int], w: [Double], r: [Double], bias: [Double]?, h0: [Double]?, c0: [Double]?) -> [ReferenceOutput] {
    func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
    let (b, s, inp) = (xs[0], xs[1], xs[2])
    let h = a.hiddenSize, dirs = a.direction.count, g = isLSTM ? 4 : 3
    let bd = bias ?? [Double](repeating: 0, count: dirs * 2 * g * h)
    var y = [Double](repeating: 0, count: b * s * dirs * h)
    var hn = [Double](repeating: 0, count: dirs * b * h), cn = hn
    var stepMag = 0.0
    for d in 0..<dirs {
        let reverse = d == 1 || a.direction == .reverse
        for bi in 0..<b {
            var hs = (0..<h).map { j in h0?[(d * b + bi) * h + j] ?? 0 }
            var cs = (0..<h).map { j in c0?[(d * b + bi) * h + j] ?? 0 }
            for step in 0..<s {
                let t = reverse ? s - 1 - step : step
                func wx(_ row: Int) -> Double {
                    var acc = bd[d * 2 * g * h + row], mag = Swift.abs(acc)
                    for i in 0..<inp {
                        let term = w[(d * g * h + row) * inp + i] * x[(bi * s + t) * inp + i]
                        acc += term; mag += Swift.abs(term)
                    }
                    stepMag = max(stepMag, mag)
                    return acc
                }
                func rh(_ row: Int, _ hv: [Double]) -> Double {
                    var acc = bd[d * 2 * g * h + g * h + row], mag = Swift.abs(acc)
                    for k in 0..<h {
                        let term = r[(d * g * h + row) * h + k] * hv[k]
                        acc += term; mag += Swift.abs(term)
                    }
                    stepMag = max(stepMag, mag)
                    return acc
                }
                var newH = [Double](repeating: 0, count: h)
                if isLSTM {
                    for j in 0..<h {
                        let i = sigmoid(wx(j) + rh(j, hs)), f = sigmoid(wx(h + j) + rh(h + j, hs))
                        let gg = Foundation.tanh(wx(2 * h + j) + rh(2 * h + j, hs)), o = sigmoid(wx(3 * h + j) + rh(3 * h + j, hs))
                        cs[j] = f * cs[j] + i * gg
                        newH[j] = o * Foundation.tanh(cs[j])
                    }
                } else {
                    let rg = (0..<h).map { j in sigmoid(wx(j) + rh(j, hs)) }
                    let rTimesH = (0..<h).map { rg[$0] * hs[$0] }
                    for j in 0..<h {
                        let z = sigmoid(wx(h + j) + rh(h + j, hs))
                        let n = a.linearBeforeReset ? Foundation.tanh(wx(2 * h + j) + rg[j] * rh(2 * h + j, hs))
                                                    : Foundation.tanh(wx(2 * h + j) + rh(2 * h + j, rTimesH))
                        newH[j] = (1 - z) * n + z * hs[j]
                    }
                }
                hs = newH
                for j in 0..<h { y[(bi * s + t) * dirs * h + d * h + j] = hs[j] }
            }
            for j in 0..<h { hn[(d * b + bi) * h + j] = hs[j]; cn[(d * b + bi) * h + j] = cs[j] }
        }
    }
    // States stay within [-1, 1] (h) or grow by at most one a step (c); the error of every gate's
    // pre-activation, of size stepMag · eps, carries through the steps, so the scale is that
    // magnitude times the number of steps, for every element.
    let scale = max(stepMag, 1) * Double(max(s, 1))
    let state = [dirs, b, h]
    let outs = [
        ReferenceOutput(shape: [b, s, dirs * h], values: y, scale: y.map { _ in scale }),
        ReferenceOutput(shape: state, values: hn, scale: hn.map { _ in scale }),
        ReferenceOutput(shape: state, values: cn, scale: cn.map { _ in scale }),
    ]
    return isLSTM ? outs : Array(outs.prefix(2))
}

/// Nearest: src = min(floor(dst * in / out), in - 1) (PyTorch's `nearest`). Bilinear (half
/// pixel): src = (dst + 0.5) / scale - 0.5 clamped at 0, with in / out for the ratio when a size
/// is given; align corners: src = dst * (in - 1) / (out - 1).
private func upsample(mode: UpsampleMode, scaleH: Float, scaleW: Float, size: [Int]?, x: [Double], xs: [Int]) -> ReferenceOutput {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
    let oh = size?[0] ?? Int((Float(h) * scaleH).rounded(.down)), ow = size?[1] ?? Int((Float(w) * scaleW).rounded(.down))
    func source(_ o: Int, _ inN: Int, _ outN: Int, _ scale: Float) -> (Int, Int, Double) {
        switch mode {
        case .nearest:
            let i = min(o * inN / outN, inN - 1)
            return (i, i, 0)
        case .bilinear:
            let ratio = size == nil ? 1 / Double(scale) : Double(inN) / Double(outN)
            let src = max((Double(o) + 0.5) * ratio - 0.5, 0)
            let lo = min(Int(src), inN - 1)
            return (lo, min(lo + 1, inN - 1), src - Double(lo))
        case .bilinearAlignCorners:
            let src = outN > 1 ? Double(o) * Double(inN - 1) / Double(outN - 1) : 0
            let lo = min(Int(src), inN - 1)
            return (lo, min(lo + 1, inN - 1), src - Double(lo))
        }
    }
    var v: [Double] = [], sc: [Double] = []
    for p in 0..<(n * c) {
        for oy in 0..<oh {
            let (y0, y1, fy) = source(oy, h, oh, scaleH)
            for ox in 0..<ow {
                let (x0, x1, fx) = source(ox, w, ow, scaleW)
                let at = { (yy: Int, xx: Int) in x[(p * h + yy) * w + xx] }
                let top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
                let bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
                v.append(top * (1 - fy) + bottom * fy)
                sc.append(max(Swift.abs(at(y0, x0)), Swift.abs(at(y0, x1)), Swift.abs(at(y1, x0)), Swift.abs(at(y1, x1))))
            }
        }
    }
    return ReferenceOutput(shape: [n, c, oh, ow], values: v, scale: sc)
}
