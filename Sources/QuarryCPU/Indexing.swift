// Ops along one axis (argmax / argmin, top-k, cumulative sum) and index ops (gather on any axis,
// gather_elements, gather_nd, scatter_nd). Index operands hold integers as floats; the rule for
// an index that names no position (NaN written by gathers, the update skipped by scatter_nd) is
// documented once, in Op.swift. These are data movement, not arithmetic: plain loops, split over
// rows between threads where rows are independent.

import Quarry

/// The position an index value names on an axis of length `n`: rounded to the nearest integer
/// (ties to even, as OpenCL's rint), negative values counting from the end; nil for any value
/// outside [-n, n) and for NaN (which fails both comparisons).
@inline(__always)
func indexPosition(_ f: Float, _ n: Int) -> Int? {
    let r = f.rounded(.toNearestOrEven)
    guard r >= -Float(n), r < Float(n) else { return nil }
    let i = Int(r)
    let p = i < 0 ? i + n : i
    // Float(n) rounds for n above 2^24: checked again in integers.
    return p >= 0 && p < n ? p : nil
}

/// A tuple of `k` index values (at `tuple`) as a flat position in a block of dimensions `dims`
/// (row-major), or nil when any component names no position.
@inline(__always)
func tuplePosition(_ tuple: UnsafePointer<Float>, _ dims: [Int]) -> Int? {
    var off = 0
    for j in 0..<dims.count {
        guard let p = indexPosition(tuple[j], dims[j]) else { return nil }
        off = off * dims[j] + p
    }
    return off
}

extension CPUKernels {
    /// argmax / argmin, topk and cumsum: each output row along the axis depends on one input row
    /// (outer position o, inner position i, `len` elements `inner` apart).
    static func makeAlongAxis(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0)
        let axis: Int
        switch ctx.node.op {
        case .argExtreme(_, let a, _, _), .topK(_, let a, _), .cumSum(let a, _, _): axis = a
        default: throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not an op along an axis")
        }
        let ax = normalizeAxis(axis, rank: x.count)!
        let len = x[ax], inner = x[(ax + 1)...].reduce(1, *)
        let rows = x[..<ax].reduce(1, *) * inner
        let threads = ctx.threads
        let perThread = max(1, 4096 / max(len, 1))

        switch ctx.node.op {
        case .argExtreme(let largest, _, _, let selectLast):
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(rows, minimumPerThread: perThread) { r in
                    for row in r {
                        let base = src + (row / inner) * len * inner + row % inner
                        var best = base[0], at = 0
                        for l in 1..<max(len, 1) {
                            let v = base[l * inner]
                            // Strict comparisons keep the first of equal values; the others the last.
                            let better = largest ? (selectLast ? v >= best : v > best) : (selectLast ? v <= best : v < best)
                            if better { best = v; at = l }
                        }
                        // The output (keepDims or not) is [outer, inner]: row order.
                        dst[row] = Float(at)
                    }
                }
            }

        case .topK(let k, _, let largest):
            return { inputs, outputs in
                let src = inputs[0]!, values = outputs[0], indices = outputs[1]
                threads.parallelRanges(rows, minimumPerThread: perThread) { r in
                    var order = [Int](repeating: 0, count: len)
                    for row in r {
                        let o = row / inner, i = row % inner
                        let base = src + o * len * inner + i
                        for l in 0..<len { order[l] = l }
                        // Best first, equal values by position: a strict total order, so the
                        // result does not depend on the sort's stability.
                        order.sort { a, b in
                            let va = base[a * inner], vb = base[b * inner]
                            return va == vb ? a < b : (largest ? va > vb : va < vb)
                        }
                        let out = o * k * inner + i
                        for j in 0..<k {
                            values[out + j * inner] = base[order[j] * inner]
                            indices[out + j * inner] = Float(order[j])
                        }
                    }
                }
            }

        case .cumSum(_, let exclusive, let reverse):
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(rows, minimumPerThread: perThread) { r in
                    for row in r {
                        let off = (row / inner) * len * inner + row % inner
                        var acc: Float = 0
                        for step in 0..<len {
                            let at = off + (reverse ? len - 1 - step : step) * inner
                            let v = src[at]
                            if exclusive { dst[at] = acc; acc += v } else { acc += v; dst[at] = acc }
                        }
                    }
                }
            }

        default:
            throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not an op along an axis")
        }
    }

    /// gather, gather_elements, gather_nd and scatter_nd with run-time (float) indices.
    static func makeIndexing(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0), idx = ctx.shape(1)
        let threads = ctx.threads
        switch ctx.node.op {
        case .gather(let axis):
            // data [outer, n, inner], indices m values -> [outer, m, inner]: one row of `inner` per (o, j).
            let ax = normalizeAxis(axis, rank: x.count)!
            let n = x[ax], inner = x[(ax + 1)...].reduce(1, *), outer = x[..<ax].reduce(1, *)
            let m = idx.reduce(1, *)
            return { inputs, outputs in
                let data = inputs[0]!, ids = inputs[1]!, dst = outputs[0]
                threads.parallelRanges(outer * m, minimumPerThread: max(1, 16384 / max(inner, 1))) { r in
                    for row in r {
                        let d = dst + row * inner
                        if let p = indexPosition(ids[row % m], n) {
                            d.update(from: data + ((row / m) * n + p) * inner, count: inner)
                        } else {
                            d.initialize(repeating: .nan, count: inner)
                        }
                    }
                }
            }

        case .gatherElements(let axis):
            // Each output element's coordinates address the data, but for the axis, which the
            // index replaces; indices may be smaller than the data off the axis, so the
            // coordinates are taken apart per dimension.
            let ax = normalizeAxis(axis, rank: x.count)!
            let xs = contiguous(x)
            let total = idx.reduce(1, *)
            return { inputs, outputs in
                let data = inputs[0]!, ids = inputs[1]!, dst = outputs[0]
                threads.parallelRanges(total, minimumPerThread: 4096) { r in
                    for e in r {
                        var rem = e, off = 0
                        for d in stride(from: idx.count - 1, through: 0, by: -1) {
                            if d != ax { off += (rem % idx[d]) * xs[d] }
                            rem /= idx[d]
                        }
                        dst[e] = indexPosition(ids[e], x[ax]).map { data[off + $0 * xs[ax]] } ?? .nan
                    }
                }
            }

        case .gatherND(let b):
            // data [B, dims (k of them), S], indices [B, T, k] -> [B, T, S].
            let k = idx.last!
            let dims = Array(x[b..<(b + k)])
            let s = x[(b + k)...].reduce(1, *), block = x[b...].reduce(1, *)
            let t = idx[b..<(idx.count - 1)].reduce(1, *)
            let rows = x[..<b].reduce(1, *) * t
            return { inputs, outputs in
                let data = inputs[0]!, ids = inputs[1]!, dst = outputs[0]
                threads.parallelRanges(rows, minimumPerThread: max(1, 16384 / max(s, 1))) { r in
                    for row in r {
                        let d = dst + row * s
                        if let off = tuplePosition(ids + row * k, dims) {
                            d.update(from: data + (row / t) * block + off * s, count: s)
                        } else {
                            d.initialize(repeating: .nan, count: s)
                        }
                    }
                }
            }

        case .scatterND(let reduction):
            // data [dims (k of them), S], indices [T, k], updates [T, S]: the data copied, then
            // each update applied in order (so a repeated tuple's updates combine in order).
            let k = idx.last!
            let dims = Array(x[..<k])
            let s = x[k...].reduce(1, *), total = x.reduce(1, *)
            let t = idx.dropLast().reduce(1, *)
            return { inputs, outputs in
                let data = inputs[0]!, ids = inputs[1]!, upd = inputs[2]!, dst = outputs[0]
                dst.update(from: data, count: total)
                for j in 0..<t {
                    // An index that names no slice: the update is skipped (see Op.swift).
                    guard let off = tuplePosition(ids + j * k, dims) else { continue }
                    let d = dst + off * s, u = upd + j * s
                    switch reduction {
                    case .none: d.update(from: u, count: s)
                    case .add: for e in 0..<s { d[e] += u[e] }
                    case .mul: for e in 0..<s { d[e] *= u[e] }
                    case .max: for e in 0..<s { d[e] = Swift.max(d[e], u[e]) }
                    case .min: for e in 0..<s { d[e] = Swift.min(d[e], u[e]) }
                    }
                }
            }

        default:
            throw QuarryError.unsupported("node '\(ctx.node.name)': \(ctx.node.op.name) is not an index op")
        }
    }

    /// Row-major strides.
    private static func contiguous(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }
}
