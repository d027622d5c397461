// Binary ops with numpy broadcasting, reductions, and embedding lookup.
//
// Broadcasting is resolved at bind time: the output's dimensions are coalesced wherever both
// operands stay contiguous (or both stay broadcast) across the boundary, which leaves a few
// "runs" whose innermost one each operand reads either densely or as one repeated value. So a
// per-channel operand ([C,1,1] against [N,C,H,W]) becomes runs of H*W against a scalar, and a
// trailing vector ([D] against [B,S,D]) becomes runs of D against D, with no per-element index
// arithmetic.

import Foundation
import Quarry

/// A broadcast iteration: output dims (outermost first) and each operand's element strides.
struct BroadcastPlan {
    var dims: [Int] = []
    var strideA: [Int] = []
    var strideB: [Int] = []

    init(out: [Int], a: [Int], b: [Int]) {
        let r = out.count
        func strides(_ s: [Int]) -> [Int] {
            var st = [Int](repeating: 0, count: r)
            var acc = 1
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                let oi = i + (r - s.count)
                st[oi] = s[i] == 1 ? 0 : acc
                acc *= s[i]
            }
            return st
        }
        let sa = strides(a), sb = strides(b)
        for i in 0..<r where out[i] != 1 {
            if let last = dims.indices.last,
               strideA[last] == sa[i] * out[i], strideB[last] == sb[i] * out[i] {
                dims[last] *= out[i]; strideA[last] = sa[i]; strideB[last] = sb[i]
            } else {
                dims.append(out[i]); strideA.append(sa[i]); strideB.append(sb[i])
            }
        }
        if dims.isEmpty { dims = [1]; strideA = [0]; strideB = [0] }
    }

    var inner: Int { dims.last! }
    var innerStrideA: Int { strideA.last! }
    var innerStrideB: Int { strideB.last! }

    /// Offsets into A and B of the start of the run containing output element `runIndex * inner`.
    @inline(__always)
    func offsets(ofRun run: Int) -> (Int, Int) {
        var rem = run, oa = 0, ob = 0
        var i = dims.count - 2
        while i >= 0 {
            let c = rem % dims[i]
            rem /= dims[i]
            oa += c * strideA[i]; ob += c * strideB[i]
            i -= 1
        }
        return (oa, ob)
    }
}

extension CPUKernels {
    static func makeBinary(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .binary(let op, let act) = ctx.node.op else { preconditionFailure() }
        let out = ctx.outputShapes[0]
        let plan = BroadcastPlan(out: out, a: ctx.shape(0), b: ctx.shape(1))
        let total = out.reduce(1, *)
        let threads = ctx.threads
        // x^2 and x^0.5 with a constant exponent are common in decomposed ONNX norms.
        var powKind = 0
        if op == .pow, let e = ctx.constants[1], e.count == 1 {
            if e[flat: 0] == 2 { powKind = 2 } else if e[flat: 0] == 0.5 { powKind = 3 } else if e[flat: 0] == 1 { powKind = 1 }
        }
        let inner = plan.inner, sa = plan.innerStrideA, sb = plan.innerStrideB
        return { inputs, outputs in
            let a = inputs[0]!, b = inputs[1]!, dst = outputs[0]
            threads.parallelRanges(total, minimumPerThread: 16384) { r in
                var pos = r.lowerBound
                while pos < r.upperBound {
                    let run = pos / inner, col = pos % inner
                    // Pieces of at most 4096 so a fused activation finds them in L1.
                    let n = min(inner - col, r.upperBound - pos, 4096)
                    let (oa, ob) = plan.offsets(ofRun: run)
                    let pa = a + oa + col * sa, pb = b + ob + col * sb
                    binaryRun(op, powKind, pa, sa, pb, sb, dst + pos, n)
                    if let act { applyActivation(act, dst + pos, count: n) }
                    pos += n
                }
            }
        }
    }
}

@inline(__always)
func binaryRun(
    _ op: BinaryOp, _ powKind: Int, _ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
    _ d: UnsafeMutablePointer<Float>, _ n: Int
) {
    switch op {
    case .add: binaryLoop(a, sa, b, sb, d, n, { $0 + $1 }, { $0 + $1 })
    case .sub: binaryLoop(a, sa, b, sb, d, n, { $0 - $1 }, { $0 - $1 })
    case .mul: binaryLoop(a, sa, b, sb, d, n, { $0 * $1 }, { $0 * $1 })
    case .div: binaryLoop(a, sa, b, sb, d, n, { $0 / $1 }, { $0 / $1 })
    case .max: binaryLoop(a, sa, b, sb, d, n, { $0.replacing(with: $1, where: $1 .> $0) }, { Swift.max($0, $1) })
    case .min: binaryLoop(a, sa, b, sb, d, n, { $0.replacing(with: $1, where: $1 .< $0) }, { Swift.min($0, $1) })
    case .equal: binaryLoop(a, sa, b, sb, d, n, { boolMask($0 .== $1) }, { $0 == $1 ? 1 : 0 })
    case .less: binaryLoop(a, sa, b, sb, d, n, { boolMask($0 .< $1) }, { $0 < $1 ? 1 : 0 })
    case .lessOrEqual: binaryLoop(a, sa, b, sb, d, n, { boolMask($0 .<= $1) }, { $0 <= $1 ? 1 : 0 })
    case .greater: binaryLoop(a, sa, b, sb, d, n, { boolMask($0 .> $1) }, { $0 > $1 ? 1 : 0 })
    case .greaterOrEqual: binaryLoop(a, sa, b, sb, d, n, { boolMask($0 .>= $1) }, { $0 >= $1 ? 1 : 0 })
    case .and: binaryLoop(a, sa, b, sb, d, n, { boolMask(($0 .!= 0) .& ($1 .!= 0)) }, { $0 != 0 && $1 != 0 ? 1 : 0 })
    case .or: binaryLoop(a, sa, b, sb, d, n, { boolMask(($0 .!= 0) .| ($1 .!= 0)) }, { $0 != 0 || $1 != 0 ? 1 : 0 })
    case .xor: binaryLoop(a, sa, b, sb, d, n, { boolMask(($0 .!= 0) .^ ($1 .!= 0)) }, { ($0 != 0) != ($1 != 0) ? 1 : 0 })
    // Remainders are exact in floating point (no rounding), so integers held as floats stay exact.
    case .fmod: for i in 0..<n { d[i] = a[i * sa].truncatingRemainder(dividingBy: b[i * sb]) }
    case .mod: for i in 0..<n { d[i] = floorMod(a[i * sa], b[i * sb]) }
    case .pow:
        switch powKind {
        case 1: binaryLoop(a, sa, b, sb, d, n, { x, _ in x }, { x, _ in x })
        case 2: binaryLoop(a, sa, b, sb, d, n, { x, _ in x * x }, { x, _ in x * x })
        case 3: binaryLoop(a, sa, b, sb, d, n, { x, _ in x.squareRoot() }, { x, _ in x.squareRoot() })
        default: for i in 0..<n { d[i] = Foundation.pow(a[i * sa], b[i * sb]) }
        }
    }
}

/// 1 where `m` is set, else 0.
@inline(__always) func boolMask(_ m: SIMDMask<SIMD16<Int32>>) -> V16 { V16(repeating: 0).replacing(with: 1, where: m) }

/// The remainder with the divisor's sign (Python's a % b): C's fmod, moved by one divisor when
/// the signs differ.
@inline(__always) func floorMod(_ a: Float, _ b: Float) -> Float {
    let r = a.truncatingRemainder(dividingBy: b)
    return r != 0 && (r < 0) != (b < 0) ? r + b : r
}

/// One run with each operand dense (stride 1) or repeated (stride 0).
@inline(__always)
func binaryLoop(
    _ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
    _ d: UnsafeMutablePointer<Float>, _ n: Int,
    _ f: (V16, V16) -> V16, _ g: (Float, Float) -> Float
) {
    var i = 0
    if sa == 1 && sb == 1 {
        while i + 32 <= n {
            store16(f(load16(a + i), load16(b + i)), d + i)
            store16(f(load16(a + i + 16), load16(b + i + 16)), d + i + 16)
            i += 32
        }
        while i + 16 <= n { store16(f(load16(a + i), load16(b + i)), d + i); i += 16 }
    } else if sa == 1 {
        let vb = V16(repeating: b[0])
        while i + 16 <= n { store16(f(load16(a + i), vb), d + i); i += 16 }
    } else if sb == 1 {
        let va = V16(repeating: a[0])
        while i + 16 <= n { store16(f(va, load16(b + i)), d + i); i += 16 }
    }
    while i < n { d[i] = g(a[i * sa], b[i * sb]); i += 1 }
}

// MARK: - Select

extension CPUKernels {
    /// out = condition != 0 ? x : y with the three operands broadcast to the output. The output
    /// is walked in rows of its last dimension, where each operand is dense or one repeated value.
    static func makeSelect(_ ctx: KernelContext) throws -> CPUKernel {
        let out = ctx.outputShapes[0]
        let r = out.count
        // Element strides of each operand against the output's dimensions (0 where it broadcasts).
        func strides(_ s: [Int]) -> [Int] {
            var st = [Int](repeating: 0, count: r), acc = 1
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                st[i + r - s.count] = s[i] == 1 ? 0 : acc
                acc *= s[i]
            }
            return st
        }
        let sc = strides(ctx.shape(0)), sx = strides(ctx.shape(1)), sy = strides(ctx.shape(2))
        let inner = r == 0 ? 1 : out[r - 1]
        let rows = inner == 0 ? 0 : out.reduce(1, *) / inner
        let ic = r == 0 ? 0 : sc[r - 1], ix = r == 0 ? 0 : sx[r - 1], iy = r == 0 ? 0 : sy[r - 1]
        let threads = ctx.threads
        return { inputs, outputs in
            let cond = inputs[0]!, x = inputs[1]!, y = inputs[2]!, dst = outputs[0]
            threads.parallelRanges(rows, minimumPerThread: max(1, 16384 / max(inner, 1))) { range in
                for row in range {
                    var rem = row, oc = 0, ox = 0, oy = 0
                    var d = r - 2
                    while d >= 0 {
                        let k = rem % out[d]
                        rem /= out[d]
                        oc += k * sc[d]; ox += k * sx[d]; oy += k * sy[d]
                        d -= 1
                    }
                    let pc = cond + oc, px = x + ox, py = y + oy, pd = dst + row * inner
                    for i in 0..<inner { pd[i] = pc[i * ic] != 0 ? px[i * ix] : py[i * iy] }
                }
            }
        }
    }
}

// MARK: - Reduce

extension CPUKernels {
    static func makeReduce(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .reduce(let op, let axesAttr, _) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0)
        var reduced = Set<Int>()
        for a in axesAttr {
            guard let n = normalizeAxis(a, rank: x.count) else {
                throw QuarryError.shapeMismatch(node: ctx.node.name, message: "reduce axis \(a) out of range for \(x)")
            }
            reduced.insert(n)
        }
        if axesAttr.isEmpty { reduced = Set(0..<x.count) }
        // Coalesce into alternating kept / reduced groups (size-1 dims vanish).
        var groups: [(size: Int, reduced: Bool)] = []
        for (i, d) in x.enumerated() where d != 1 {
            let r = reduced.contains(i)
            if let last = groups.last, last.reduced == r { groups[groups.count - 1].size *= d } else { groups.append((d, r)) }
        }
        let count = x.enumerated().filter { reduced.contains($0.offset) }.reduce(1) { $0 * $1.element }
        let total = x.reduce(1, *)
        let threads = ctx.threads
        // Each pass removes the innermost remaining reduced group: (outer, len, inner) -> (outer, inner).
        var passes: [(outer: Int, len: Int, inner: Int)] = []
        var g = groups
        while let ri = g.lastIndex(where: { $0.reduced }) {
            let outer = g[..<ri].reduce(1) { $0 * $1.size }, inner = g[(ri + 1)...].reduce(1) { $0 * $1.size }
            passes.append((outer, g[ri].size, inner))
            g.remove(at: ri)
            // Merge the kept neighbours that are now adjacent.
            if ri > 0, ri < g.count, !g[ri - 1].reduced, !g[ri].reduced {
                g[ri - 1].size *= g[ri].size; g.remove(at: ri)
            }
        }
        let isMax = op == .max
        let scale: Float = op == .mean ? 1 / Float(max(count, 1)) : 1
        if count == 0 {
            // Reducing over an empty axis: the identity of the reduction (numpy's mean gives NaN).
            let n = ctx.outputShapes[0].reduce(1, *)
            let fill: Float = op == .sum ? 0 : (op == .mean ? .nan : -.infinity)
            return { _, outputs in outputs[0].initialize(repeating: fill, count: n) }
        }
        return { inputs, outputs in
            let src = inputs[0]!, dst = outputs[0]
            if passes.isEmpty {
                dst.update(from: src, count: total)
                return
            }
            // Intermediate results are larger than the output, so they alternate between two
            // scratch buffers (only reductions over non-adjacent axes need more than one pass).
            let scratchCount = passes.count > 1 ? total / passes[0].len : 0
            let scratch: UnsafeMutablePointer<Float>? = passes.count > 1 ? .allocate(capacity: 2 * scratchCount) : nil
            defer { scratch?.deallocate() }
            var cur = src
            for (k, p) in passes.enumerated() {
                let last = k == passes.count - 1
                let target: UnsafeMutablePointer<Float> = last ? dst : scratch! + (k % 2) * scratchCount
                reducePass(cur, target, p.outer, p.len, p.inner, isMax: isMax, scale: last ? scale : 1, threads)
                cur = UnsafePointer(target)
            }
        }
    }
}

/// out[o, i] = reduce over l of x[o, l, i].
func reducePass(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ outer: Int, _ len: Int, _ inner: Int,
    isMax: Bool, scale: Float, _ threads: CPUThreads
) {
    if inner == 1 {
        threads.parallelRanges(outer, minimumPerThread: max(1, 16384 / max(len, 1))) { r in
            for o in r {
                dst[o] = isMax ? maxOf(src + o * len, len) : sumOf(src + o * len, len) * scale
            }
        }
        return
    }
    let block = 1024
    let blocks = (inner + block - 1) / block
    threads.parallelRanges(outer * blocks, minimumPerThread: max(1, 16384 / max(len * min(block, inner), 1))) { r in
        for task in r {
            let o = task / blocks, b0 = (task % blocks) * block, w = min(block, inner - b0)
            let s = src + o * len * inner + b0, d = dst + o * inner + b0
            d.update(from: s, count: w)
            for l in 1..<max(len, 1) {
                if isMax {
                    combineMax(d, s + l * inner, w)
                } else {
                    combineSum(d, s + l * inner, w)
                }
            }
            if scale != 1 { affine(UnsafePointer(d), d, w, scale, 0) }
        }
    }
}

// MARK: - Embedding

extension CPUKernels {
    /// Ids are floats holding integers. An id in [-V, V) selects a row (negative ids count from
    /// the end, as ONNX Gather); any other id — out of range, fractional, NaN — cannot throw at run
    /// time, so its output row is NaN, which every later op carries to the caller. Constant ids
    /// are checked here and throw instead.
    static func makeEmbedding(_ ctx: KernelContext) throws -> CPUKernel {
        let table = ctx.shape(1)
        let v = table[0], d = table[1]
        let n = ctx.shape(0).reduce(1, *)
        if let ids = ctx.constants[0] {
            for i in 0..<ids.count {
                let id = ids[flat: i]
                guard id.rounded() == id, id >= Float(-v), id < Float(v) else {
                    throw QuarryError.invalidArgument("embedding '\(ctx.node.name)': id \(id) at position \(i) is not a row of the \(v)-row table")
                }
            }
        }
        let threads = ctx.threads
        return { inputs, outputs in
            let ids = inputs[0]!, tab = inputs[1]!, dst = outputs[0]
            threads.parallelRanges(n, minimumPerThread: max(1, 16384 / max(d, 1))) { r in
                for i in r {
                    let f = ids[i]
                    if f.rounded() == f, f >= Float(-v), f < Float(v) {
                        var row = Int(f)
                        if row < 0 { row += v }
                        (dst + i * d).update(from: tab + row * d, count: d)
                    } else {
                        (dst + i * d).initialize(repeating: .nan, count: d)
                    }
                }
            }
        }
    }
}
