// Data movement: concat, split, slice, pad, transpose, reshape / flatten / identity (copies; the
// executor may alias them instead), and upsampling.
//
// Every strided op reduces, at bind time, to "rows": an odometer over the outer dimensions that
// yields a source offset per output row, and a row copy that is a memcpy when the innermost
// source stride is 1. Transpose first coalesces dimensions that stay adjacent and in order, so
// NCHW -> NHWC becomes a batched 2-D transpose and takes the blocked path.

import CCPUHints
import CQuarryKernels
import Foundation
import Quarry

extension CPUKernels {
    static func makeLayout(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0)
        let threads = ctx.threads
        switch ctx.node.op {
        case .reshape, .flatten, .identity:
            let n = x.reduce(1, *)
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(n, minimumPerThread: 1 << 16) { r in
                    (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count)
                }
            }

        case .concat(let axisAttr):
            guard let axis = normalizeAxis(axisAttr, rank: x.count) else { throw badAxis(ctx, axisAttr, x) }
            let outer = x[..<axis].reduce(1, *)
            let chunks = ctx.inputShapes.map { $0![axis...].reduce(1, *) }
            let outChunk = chunks.reduce(0, +)
            var starts: [Int] = []
            var acc = 0
            for c in chunks { starts.append(acc); acc += c }
            let k = chunks.count
            return { inputs, outputs in
                let dst = outputs[0]
                threads.parallelRanges(outer * k, minimumPerThread: max(1, 32768 / max(outChunk / max(k, 1), 1))) { r in
                    for t in r {
                        let o = t / k, i = t % k
                        (dst + o * outChunk + starts[i]).update(from: inputs[i]! + o * chunks[i], count: chunks[i])
                    }
                }
            }

        case .split(let axisAttr, let sizes):
            guard let axis = normalizeAxis(axisAttr, rank: x.count) else { throw badAxis(ctx, axisAttr, x) }
            let outer = x[..<axis].reduce(1, *), inner = x[(axis + 1)...].reduce(1, *)
            let inChunk = x[axis] * inner
            let chunks = sizes.map { $0 * inner }
            var starts: [Int] = []
            var acc = 0
            for c in chunks { starts.append(acc); acc += c }
            let k = chunks.count
            return { inputs, outputs in
                let src = inputs[0]!
                threads.parallelRanges(outer * k, minimumPerThread: max(1, 32768 / max(inChunk / max(k, 1), 1))) { r in
                    for t in r {
                        let o = t / k, i = t % k
                        (outputs[i] + o * chunks[i]).update(from: src + o * inChunk + starts[i], count: chunks[i])
                    }
                }
            }

        case .slice(let starts, let ends, let axes, let steps):
            let out = ctx.outputShapes[0]
            var offset = 0
            var strides = rowMajorStrides(x)
            for i in 0..<axes.count {
                guard let ax = normalizeAxis(axes[i], rank: x.count) else { throw badAxis(ctx, axes[i], x) }
                let (s, _) = sliceRange(start: starts[i], end: ends[i], step: steps[i], dim: x[ax])
                offset += s * strides[ax]
                strides[ax] *= steps[i]
            }
            let copy = StridedCopy(outShape: out, srcStrides: strides, srcOffset: offset)
            return { inputs, outputs in copy.run(inputs[0]!, outputs[0], threads) }

        case .transpose(let perm):
            // Coalesce input dims that stay adjacent and in order in the output.
            var groups: [[Int]] = []
            for p in perm where x[p] != 1 {
                if let last = groups.last?.last, last + 1 == p { groups[groups.count - 1].append(p) } else { groups.append([p]) }
            }
            // Groups in input order give the coalesced input shape.
            let byInput = groups.sorted { $0[0] < $1[0] }
            let cShape = byInput.map { $0.reduce(1) { $0 * x[$1] } }
            let cPerm = groups.map { g in byInput.firstIndex { $0[0] == g[0] }! }
            let out = ctx.outputShapes[0]
            let n = out.reduce(1, *)
            if cPerm.count >= 2, cPerm[cPerm.count - 1] == cPerm.count - 2, cPerm[cPerm.count - 2] == cPerm.count - 1,
               Array(cPerm.dropLast(2)) == Array(0..<(cPerm.count - 2)) {
                // A batch of 2-D transposes.
                let rows = cShape[cShape.count - 2], cols = cShape[cShape.count - 1]
                let batch = n / max(rows * cols, 1)
                return { inputs, outputs in
                    transposeBatched(inputs[0]!, outputs[0], batch: batch, rows: rows, cols: cols, threads)
                }
            }
            let inStrides = rowMajorStrides(cShape)
            let copy = StridedCopy(outShape: cPerm.map { cShape[$0] }, srcStrides: cPerm.map { inStrides[$0] }, srcOffset: 0)
            return { inputs, outputs in copy.run(inputs[0]!, outputs[0], threads) }

        case .pad(let pads, let mode, let value):
            let out = ctx.outputShapes[0]
            let r = x.count
            let begins = Array(pads[..<r])
            let padder = Padder(inShape: x, outShape: out, begins: begins, mode: mode, value: value)
            return { inputs, outputs in padder.run(inputs[0]!, outputs[0], threads) }

        default: preconditionFailure()
        }
    }

    static func badAxis(_ ctx: KernelContext, _ axis: Int, _ shape: [Int]) -> QuarryError {
        .shapeMismatch(node: ctx.node.name, message: "\(ctx.node.op.name) axis \(axis) out of range for \(shape)")
    }
}

func rowMajorStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
    return s
}

/// out[i0, ..., ik] = src[offset + Σ ij * stride_j]: slices (negative strides included) and
/// general permutations.
struct StridedCopy {
    let outer: [Int], outerStrides: [Int]
    let inner: Int, innerStride: Int, offset: Int, rows: Int

    init(outShape: [Int], srcStrides: [Int], srcOffset: Int) {
        // Merge dims that are contiguous in the source as well.
        var dims: [Int] = [], st: [Int] = []
        for (d, s) in zip(outShape, srcStrides) where d != 1 {
            if let l = dims.indices.last, st[l] == s * d { dims[l] *= d; st[l] = s } else { dims.append(d); st.append(s) }
        }
        if dims.isEmpty { dims = [outShape.reduce(1, *)]; st = [1] }
        inner = dims.last!; innerStride = st.last!
        outer = Array(dims.dropLast()); outerStrides = Array(st.dropLast())
        offset = srcOffset
        rows = outer.reduce(1, *)
    }

    func run(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ threads: CPUThreads) {
        if inner == 0 || rows == 0 { return }
        threads.parallelRanges(rows, minimumPerThread: max(1, 32768 / inner)) { r in
            for row in r {
                var rem = row, o = offset
                var i = outer.count - 1
                while i >= 0 { o += (rem % outer[i]) * outerStrides[i]; rem /= outer[i]; i -= 1 }
                let s = src + o, d = dst + row * inner
                if innerStride == 1 {
                    d.update(from: s, count: inner)
                } else {
                    for j in 0..<inner { d[j] = s[j * innerStride] }
                }
            }
        }
    }
}

/// dst[b, c, r] = src[b, r, c], in 16x16 tiles: sixteen 16-wide row loads, transposed in
/// registers (`quarry_transpose16`, CQuarryKernels), leave as sixteen 16-wide stores, so both sides move whole
/// cache lines. A task owns a block of 64 source columns, i.e. 64 whole destination rows, which
/// it writes front to back.
func transposeBatched(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, rows: Int, cols: Int, _ threads: CPUThreads
) {
    let t = 16, block = 64
    let colBlocks = (cols + block - 1) / block
    threads.parallelRanges(batch * colBlocks, minimumPerThread: max(1, 16384 / max(rows * block, 1))) { r in
        for task in r {
            let b = task / colBlocks, cb0 = (task % colBlocks) * block, cb1 = min(cb0 + block, cols)
            let s = src + b * rows * cols, d = dst + b * rows * cols
            var r0 = 0
            while r0 < rows {
                let r1 = min(r0 + t, rows)
                var c0 = cb0
                if r1 - r0 == t {
                    while c0 + t <= cb1 {
                        quarry_transpose16(s + r0 * cols + c0, cols, d + c0 * rows + r0, rows)
                        c0 += t
                    }
                }
                for c in c0..<cb1 {
                    for rr in r0..<r1 { d[c * rows + rr] = s[rr * cols + c] }
                }
                r0 = r1
            }
        }
    }
}

/// Constant / reflect / edge padding; a negative pad crops.
struct Padder {
    let inShape: [Int], outShape: [Int], begins: [Int]
    let mode: PadMode, value: Float
    let inStrides: [Int]

    init(inShape: [Int], outShape: [Int], begins: [Int], mode: PadMode, value: Float) {
        self.inShape = inShape; self.outShape = outShape; self.begins = begins
        self.mode = mode; self.value = value
        inStrides = rowMajorStrides(inShape)
    }

    /// The source index along a dimension of size `n` for output position `o`, or nil for a
    /// constant-mode fill.
    @inline(__always)
    func source(_ o: Int, _ begin: Int, _ n: Int) -> Int? {
        let i = o - begin
        if i >= 0 && i < n { return i }
        switch mode {
        case .constant: return nil
        case .edge: return i < 0 ? 0 : n - 1
        case .reflect:
            if n == 1 { return 0 }
            // Reflect about the edges (the edge itself is not repeated); shape inference keeps
            // pads below n, so one reflection suffices.
            return i < 0 ? -i : 2 * (n - 1) - i
        }
    }

    func run(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ threads: CPUThreads) {
        let r = outShape.count
        if r == 0 { dst[0] = src[0]; return }
        let w = outShape[r - 1], inW = inShape[r - 1], bw = begins[r - 1]
        let rows = outShape.dropLast().reduce(1, *)
        if w == 0 || rows == 0 { return }
        // Output columns that copy a contiguous input span.
        let lo = min(max(bw, 0), w), hi = max(lo, min(bw + inW, w))
        threads.parallelRanges(rows, minimumPerThread: max(1, 32768 / w)) { range in
            for row in range {
                let d = dst + row * w
                var rem = row, off = 0, fill = false
                var i = r - 2
                while i >= 0 {
                    let o = rem % outShape[i]; rem /= outShape[i]
                    if let s = source(o, begins[i], inShape[i]) { off += s * inStrides[i] } else { fill = true; break }
                    i -= 1
                }
                if fill { d.initialize(repeating: value, count: w); continue }
                let s = src + off
                if hi > lo { (d + lo).update(from: s + (lo - bw), count: hi - lo) }
                for c in 0..<lo { d[c] = source(c, bw, inW).map { s[$0] } ?? value }
                for c in hi..<w { d[c] = source(c, bw, inW).map { s[$0] } ?? value }
            }
        }
    }
}

// MARK: - Upsample

extension CPUKernels {
    /// Nearest: src = min(floor(dst * in / out), in - 1) (PyTorch's `nearest`, ONNX asymmetric +
    /// floor). Bilinear without align_corners: src = (dst + 0.5) * ratio - 0.5 clamped at 0, where
    /// ratio is 1/scale when scales are given and in/out when a size is (PyTorch and ONNX
    /// half_pixel both do so; the two agree whenever in * scale is whole). With align_corners:
    /// src = dst * (in - 1) / (out - 1).
    static func makeUpsample(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .upsample(let mode, let scaleH, let scaleW, let size) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0), out = ctx.outputShapes[0]
        let (inH, inW, outH, outW) = (x[2], x[3], out[2], out[3])
        let planes = x[0] * x[1]
        let threads = ctx.threads

        func taps(_ inN: Int, _ outN: Int, _ scale: Float) -> (i0: [Int], i1: [Int], frac: [Float]) {
            var i0 = [Int](repeating: 0, count: outN), i1 = i0, f = [Float](repeating: 0, count: outN)
            for o in 0..<outN {
                switch mode {
                case .nearest:
                    i0[o] = min(o * inN / outN, inN - 1); i1[o] = i0[o]
                case .bilinear:
                    let ratio = size == nil ? 1 / Double(scale) : Double(inN) / Double(outN)
                    let src = max((Double(o) + 0.5) * ratio - 0.5, 0)
                    let lo = min(Int(src), inN - 1)
                    i0[o] = lo; i1[o] = min(lo + 1, inN - 1); f[o] = Float(src - Double(lo))
                case .bilinearAlignCorners:
                    let src = outN > 1 ? Double(o) * Double(inN - 1) / Double(outN - 1) : 0
                    let lo = min(Int(src), inN - 1)
                    i0[o] = lo; i1[o] = min(lo + 1, inN - 1); f[o] = Float(src - Double(lo))
                }
            }
            return (i0, i1, f)
        }
        let tables = UpsampleTables(y: taps(inH, outH, scaleH), x: taps(inW, outW, scaleW))
        let nearest = mode == .nearest
        return { inputs, outputs in
            let src = inputs[0]!, dst = outputs[0]
            threads.parallelRanges(planes * outH, minimumPerThread: max(1, 16384 / max(outW, 1))) { r in
                let x0 = tables.x0, x1 = tables.x1, fx = tables.fx
                if nearest {
                    for task in r {
                        let p = task / outH, oy = task % outH
                        let d = dst + p * outH * outW + oy * outW
                        let r0 = src + p * inH * inW + tables.y0[oy] * inW
                        for ox in 0..<outW { d[ox] = r0[x0[ox]] }
                    }
                    return
                }
                // Bilinear: source rows interpolated along W once and kept (two slots, tagged
                // by plane and row), since consecutive output rows share them; the blend along H
                // is then a vector lerp of two cached rows.
                let slots = UnsafeMutablePointer<Float>.allocate(capacity: 2 * outW)
                defer { slots.deallocate() }
                var tags = (-1, -1)
                func row(_ key: Int, keep: Int) -> UnsafeMutablePointer<Float> {
                    if tags.0 == key { return slots }
                    if tags.1 == key { return slots + outW }
                    let slot = tags.0 == keep ? 1 : 0
                    let h = slots + slot * outW
                    let s = src + key * inW  // key = plane * inH + source row
                    for ox in 0..<outW { h[ox] = s[x0[ox]] + (s[x1[ox]] - s[x0[ox]]) * fx[ox] }
                    if slot == 0 { tags.0 = key } else { tags.1 = key }
                    return h
                }
                for task in r {
                    let p = task / outH, oy = task % outH
                    let d = dst + p * outH * outW + oy * outW
                    let k0 = p * inH + tables.y0[oy], k1 = p * inH + tables.y1[oy]
                    let a = row(k0, keep: k1), b = row(k1, keep: k0)
                    let wy = tables.fy[oy], vw = V16(repeating: wy)
                    var ox = 0
                    while ox + 16 <= outW {
                        let va = load16(a + ox)
                        store16(va + (load16(b + ox) - va) * vw, d + ox)
                        ox += 16
                    }
                    while ox < outW { d[ox] = a[ox] + (b[ox] - a[ox]) * wy; ox += 1 }
                }
            }
        }
    }
}

/// Source rows / columns and weights per output row / column, kept for the kernel's life.
// @unchecked: the tables are written once at init and only read by the kernel afterwards.
final class UpsampleTables: @unchecked Sendable {
    let y0, y1, x0, x1: UnsafeMutablePointer<Int>
    let fy, fx: UnsafeMutablePointer<Float>

    init(y: (i0: [Int], i1: [Int], frac: [Float]), x: (i0: [Int], i1: [Int], frac: [Float])) {
        func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(a.count, 1))
            p.initialize(from: a, count: a.count)
            return p
        }
        y0 = copy(y.i0); y1 = copy(y.i1); fy = copy(y.frac)
        x0 = copy(x.i0); x1 = copy(x.i1); fx = copy(x.frac)
    }

    deinit {
        y0.deallocate(); y1.deallocate(); fy.deallocate(); x0.deallocate(); x1.deallocate(); fx.deallocate()
    }
}

/// Rows 0..<n (n <= 16) of a row-major block 16 wide (row stride `ld`: pixels by channels) into
/// sixteen planes, as pixels 0..<n of each: column c goes to `planes + c * planeStride`, plus the
/// same place of `residual` if given, clamped if `clamp` is given. `tile` is 256 floats of scratch.
/// The inverse of the layout the channel-vector kernels (`DepthwiseInterleaved`,
/// `PointwisePixelMajor`) compute in.
@inline(__always)
func storeRowsAsPlanes(_ src: UnsafePointer<Float>, ld: Int, rows n: Int, to planes: UnsafeMutablePointer<Float>,
                       planeStride: Int, residual: UnsafePointer<Float>? = nil, clamp: FusedClamp? = nil,
                       tile: UnsafeMutablePointer<Float>) {
    if n == 16 && residual == nil && clamp == nil {
        quarry_transpose16(src, ld, planes, planeStride)
        return
    }
    quarry_rows_to_planes(src, ld, n, planes, planeStride, residual, clamp == nil ? 0 : 1, clamp?.lo ?? 0,
                          clamp?.hi ?? 0, tile)
}
