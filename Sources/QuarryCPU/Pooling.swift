// 2-D max / average pooling and global pooling over NCHW planes, parallel over planes.
//
// A window is separable, so each output row is made in two passes: the kernel's input rows are
// combined element by element into one row (contiguous, SIMD16), then that row is pooled along W
// (SIMD when the stride is 1 or 2, scalar gathers otherwise). Padded positions never reach a max;
// average divisors follow PyTorch: with count_include_pad the window is clipped to the padded
// extent (input + padding, so a ceil-mode window hanging past the bottom/right padding counts
// only what lies inside it), without it only input positions count.

import Quarry

extension CPUKernels {
    static func makePool(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0), out = ctx.outputShapes[0]
        let planes = x[0] * x[1]
        let threads = ctx.threads
        switch ctx.node.op {
        case .globalAvgPool, .globalMaxPool:
            let isMax: Bool
            if case .globalMaxPool = ctx.node.op { isMax = true } else { isMax = false }
            let size = x.dropFirst(2).reduce(1, *)
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(planes, minimumPerThread: max(1, 8192 / max(size, 1))) { r in
                    for p in r {
                        dst[p] = isMax ? maxOf(src + p * size, size) : sumOf(src + p * size, size) / Float(size)
                    }
                }
            }
        case .maxPool2d(let a), .avgPool2d(let a):
            var isMax = false
            if case .maxPool2d = ctx.node.op { isMax = true }
            let geometry = PoolGeometry(a, inH: x[2], inW: x[3], outH: out[2], outW: out[3])
            let inPlane = x[2] * x[3], outPlane = out[2] * out[3]
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(planes, minimumPerThread: max(1, 4096 / max(outPlane, 1))) { r in
                    let row = UnsafeMutablePointer<Float>.allocate(capacity: geometry.inW + 16)
                    defer { row.deallocate() }
                    for p in r { geometry.pool(src + p * inPlane, dst + p * outPlane, row, isMax: isMax) }
                }
            }
        default: preconditionFailure()
        }
    }
}

struct PoolGeometry {
    let kh, kw, sh, sw, dh, dw, pt, pl, inH, inW, outH, outW: Int
    let countIncludePad: Bool
    /// Ends of the padded extent: a count_include_pad window is clipped to these.
    let padEndH, padEndW: Int
    /// Output columns whose window lies inside the input, for the unchecked SIMD path.
    let interiorW: Range<Int>
    /// Per output column, how many window columns the average divides by.
    let columnCounts: [Float]

    init(_ a: Pool2DAttributes, inH: Int, inW: Int, outH: Int, outW: Int) {
        kh = a.kernelH; kw = a.kernelW; sh = a.strideH; sw = a.strideW
        dh = a.dilationH; dw = a.dilationW; pt = a.padding.top; pl = a.padding.left
        self.inH = inH; self.inW = inW; self.outH = outH; self.outW = outW
        countIncludePad = a.countIncludePad
        padEndH = inH + a.padding.bottom; padEndW = inW + a.padding.right
        var lo = 0
        while lo < outW, lo * sw - pl < 0 { lo += 1 }
        var hi = outW
        while hi > lo, (hi - 1) * sw - pl + (kw - 1) * dw >= inW { hi -= 1 }
        interiorW = lo..<hi
        var counts = [Float](repeating: 0, count: outW)
        for ox in 0..<outW {
            let x0 = ox * sw - pl
            var c = 0
            for kx in 0..<kw {
                let xx = x0 + kx * dw
                if countIncludePad { if xx < padEndW { c += 1 } } else if xx >= 0 && xx < inW { c += 1 }
            }
            counts[ox] = Float(c)
        }
        columnCounts = counts
    }

    func pool(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ row: UnsafeMutablePointer<Float>, isMax: Bool) {
        for oy in 0..<outH {
            let y0 = oy * sh - pt
            // Pass 1: combine the window's input rows.
            var rowsUsed = 0, padRows = 0
            for ky in 0..<kh {
                let y = y0 + ky * dh
                if y >= padEndH { break }
                padRows += 1
                if y < 0 || y >= inH { continue }
                let s = src + y * inW
                if rowsUsed == 0 {
                    row.update(from: s, count: inW)
                } else if isMax {
                    combineMax(row, s, inW)
                } else {
                    combineSum(row, s, inW)
                }
                rowsUsed += 1
            }
            let d = dst + oy * outW
            if rowsUsed == 0 {
                // Only possible with dilation skipping every input row: nothing to pool.
                for ox in 0..<outW { d[ox] = isMax ? -.infinity : 0 }
                continue
            }
            // Pass 2: pool the combined row along W.
            if sw == 2 && dw == 1 && !interiorW.isEmpty {
                // Stride 2: the even lanes of 32 consecutive floats are 16 window starts.
                var ox = interiorW.lowerBound
                let rows = Float(countIncludePad ? padRows : rowsUsed)
                // The last vector ends at the interior's end, overlapping the one before (the
                // same values written twice) rather than leaving up to 15 columns to the scalar
                // path: ResNet-50's 56 output columns left 7 of them.
                while ox < interiorW.upperBound && interiorW.count >= 16 {
                    ox = min(ox, interiorW.upperBound - 16)
                    let base = row + 2 * ox - pl
                    var acc = evenLanes(base)
                    for kx in 1..<max(kw, 1) {
                        let v = evenLanes(base + kx)
                        acc = isMax ? acc.replacing(with: v, where: v .> acc) : acc + v
                    }
                    if !isMax { acc = acc / (columnCounts.withUnsafeBufferPointer { load16($0.baseAddress! + ox) } * rows) }
                    store16(acc, d + ox)
                    ox += 16
                }
                scalarColumns(row, d, oy: oy, columns: 0..<interiorW.lowerBound, padRows: padRows, rowsUsed: rowsUsed, isMax: isMax)
                scalarColumns(row, d, oy: oy, columns: ox..<outW, padRows: padRows, rowsUsed: rowsUsed, isMax: isMax)
            } else if sw == 1 && !interiorW.isEmpty {
                var ox = interiorW.lowerBound
                while ox < interiorW.upperBound && interiorW.count >= 16 {
                    ox = min(ox, interiorW.upperBound - 16)
                    let base = row + ox - pl
                    var acc = load16(base)
                    for kx in 1..<max(kw, 1) {
                        let v = load16(base + kx * dw)
                        acc = isMax ? acc.replacing(with: v, where: v .> acc) : acc + v
                    }
                    if !isMax {
                        let rows = Float(countIncludePad ? padRows : rowsUsed)
                        acc = acc / (columnCounts.withUnsafeBufferPointer { load16($0.baseAddress! + ox) } * rows)
                    }
                    store16(acc, d + ox)
                    ox += 16
                }
                scalarColumns(row, d, oy: oy, columns: 0..<interiorW.lowerBound, padRows: padRows, rowsUsed: rowsUsed, isMax: isMax)
                scalarColumns(row, d, oy: oy, columns: ox..<outW, padRows: padRows, rowsUsed: rowsUsed, isMax: isMax)
            } else {
                scalarColumns(row, d, oy: oy, columns: 0..<outW, padRows: padRows, rowsUsed: rowsUsed, isMax: isMax)
            }
        }
    }

    @inline(__always)
    func divisor(ox: Int, padRows: Int, rowsUsed: Int) -> Float {
        Float(countIncludePad ? padRows : rowsUsed) * columnCounts[ox]
    }

    func scalarColumns(
        _ row: UnsafeMutablePointer<Float>, _ d: UnsafeMutablePointer<Float>, oy: Int, columns: Range<Int>,
        padRows: Int, rowsUsed: Int, isMax: Bool
    ) {
        for ox in columns {
            let x0 = ox * sw - pl
            var acc: Float = isMax ? -.infinity : 0
            for kx in 0..<kw {
                let xx = x0 + kx * dw
                if xx < 0 || xx >= inW { continue }
                acc = isMax ? Swift.max(acc, row[xx]) : acc + row[xx]
            }
            d[ox] = isMax ? acc : acc / divisor(ox: ox, padRows: padRows, rowsUsed: rowsUsed)
        }
    }
}

/// p[0], p[2], ..., p[30]. Reads p[31] too, so the buffer needs one float of slack.
@inline(__always)
func evenLanes(_ p: UnsafePointer<Float>) -> V16 {
    V16(lowHalf: load16(p).evenHalf, highHalf: load16(p + 16).evenHalf)
}

// Element-wise row combines (pooling's pass 1, reductions, softmax), one function each: written
// as one function taking the operation as closures, the vector closure was not inlined and cost
// a call per 16 floats.

/// dst[i] = max(dst[i], src[i]) for i < n.
@inline(__always)
func combineMax(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        let a = load16(dst + i), b = load16(src + i)
        store16(a.replacing(with: b, where: b .> a), dst + i)
        i += 16
    }
    while i < n { dst[i] = Swift.max(dst[i], src[i]); i += 1 }
}

/// dst[i] += src[i] for i < n.
@inline(__always)
func combineSum(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(dst + i) + load16(src + i), dst + i)
        i += 16
    }
    while i < n { dst[i] += src[i]; i += 1 }
}

/// dst[i] *= src[i] for i < n.
@inline(__always)
func combineProduct(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(dst + i) * load16(src + i), dst + i)
        i += 16
    }
    while i < n { dst[i] *= src[i]; i += 1 }
}

/// Sum of `n` floats with four vector accumulators.
func sumOf(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = V16(), a1 = V16(), a2 = V16(), a3 = V16()
    var i = 0
    while i + 64 <= n {
        a0 += load16(p + i); a1 += load16(p + i + 16); a2 += load16(p + i + 32); a3 += load16(p + i + 48)
        i += 64
    }
    while i + 16 <= n { a0 += load16(p + i); i += 16 }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Maximum of `n` floats (-inf for none).
func maxOf(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = V16(repeating: -.infinity), a1 = a0
    var i = 0
    while i + 32 <= n {
        let v0 = load16(p + i), v1 = load16(p + i + 16)
        a0 = a0.replacing(with: v0, where: v0 .> a0)
        a1 = a1.replacing(with: v1, where: v1 .> a1)
        i += 32
    }
    a0 = a0.replacing(with: a1, where: a1 .> a0)
    var m = a0.max()
    while i < n { m = Swift.max(m, p[i]); i += 1 }
    return m
}
