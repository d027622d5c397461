// Depthwise convolution (one input and one output channel per group) on flattened planes.
//
// Row by row, a 14x14 or 7x7 output row is shorter than one SIMD16 vector and runs almost all in
// scalar tails. Instead each input plane is copied once into zero-padded "phase" planes, one per
// (row, column) residue of the stride: phase (py, px) holds input element (s·r + py, s·i + px) at
// r·Q + i. With the output flattened the same way (row pitch Q, a few junk columns at the end of
// each row), every tap becomes a constant offset: out[q] = Σ w_t · phase_t[q + offset_t] for all
// q at once, so vectors run across row ends and a 7x7 plane is four vectors, not seven tails. The
// valid columns are then copied out, with bias and a clamp activation applied in registers.

import Foundation
import Quarry

/// Layout of the phase planes and the flattened output for one depthwise geometry.
struct DepthwisePlan {
    let g: ConvGeometry
    /// Rows and row pitch of each phase plane; the flattened output uses the same pitch.
    let rows, pitch: Int
    /// Floats between phase planes: a plane plus zeroed slack that the last vectors read past its end.
    let phaseStride: Int
    /// Which phases some tap reads; only those are filled.
    let usedPhases: [Int]
    /// Offset of each tap (ky, kx) from the phase-plane base, in floats.
    let tapOffsets: [Int]
    /// Flattened output length, rounded up to whole vectors.
    let flatCount: Int

    init(_ g: ConvGeometry) {
        self.g = g
        rows = g.outHeight + (g.dilationH * (g.kernelH - 1)) / g.strideH
        pitch = g.outWidth + (g.dilationW * (g.kernelW - 1)) / g.strideW
        // A vector starting at the last rounded-up output index reads at most pitch + 16 floats
        // past rows * pitch.
        phaseStride = rows * pitch + pitch + 32
        var offsets: [Int] = [], used = Set<Int>()
        for ky in 0..<g.kernelH {
            for kx in 0..<g.kernelW {
                let dy = g.dilationH * ky, dx = g.dilationW * kx
                let phase = (dy % g.strideH) * g.strideW + dx % g.strideW
                used.insert(phase)
                offsets.append(phase * phaseStride + (dy / g.strideH) * pitch + dx / g.strideW)
            }
        }
        tapOffsets = offsets
        usedPhases = used.sorted()
        flatCount = (g.outHeight * pitch + 15) & ~15
    }

    /// Scratch floats for one worker: the phase planes, then the flattened output.
    var scratchCount: Int { g.strideH * g.strideW * phaseStride + flatCount }

    /// Convolves one plane: `src` is an input plane, `dst` the output plane.
    @inline(__always)
    func run(src: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, clamp: FusedClamp?,
             scratch: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>) {
        for phase in usedPhases {
            let py = phase / g.strideW, px = phase % g.strideW
            let base = scratch + phase * phaseStride
            for r in 0..<rows {
                let iy = g.strideH * r + py - g.padTop
                if iy < 0 || iy >= g.height {
                    (base + r * pitch).update(repeating: 0, count: pitch)
                } else {
                    copyWindowRow(from: src + iy * g.width, width: g.width, firstX: px - g.padLeft, stride: g.strideW,
                                  count: pitch, to: base + r * pitch)
                }
            }
            // Zero slack: junk lanes stay finite (no NaN or denormal slow paths).
            (base + rows * pitch).update(repeating: 0, count: phaseStride - rows * pitch)
        }
        let flat = scratch + g.strideH * g.strideW * phaseStride
        let taps = tapOffsets.count
        // Always applied: without a clamp activation the bounds are infinite.
        let clip = Clip(lo: V16(repeating: clamp?.lo ?? -.infinity), hi: V16(repeating: clamp?.hi ?? .infinity))
        let b = V16(repeating: bias)
        tapOffsets.withUnsafeBufferPointer { offsets in
            let off = offsets.baseAddress!
            var q = 0
            // Four independent accumulators hide the FMA latency.
            while q + 64 <= flatCount {
                var a0 = b, a1 = b, a2 = b, a3 = b
                for t in 0..<taps {
                    let w = V16(repeating: weights[t])
                    let p = UnsafePointer(scratch + off[t] + q)
                    a0 = a0.addingProductFast(load16(p), w)
                    a1 = a1.addingProductFast(load16(p + 16), w)
                    a2 = a2.addingProductFast(load16(p + 32), w)
                    a3 = a3.addingProductFast(load16(p + 48), w)
                }
                store16(clip(a0), flat + q)
                store16(clip(a1), flat + q + 16)
                store16(clip(a2), flat + q + 32)
                store16(clip(a3), flat + q + 48)
                q += 64
            }
            while q < flatCount {
                var a0 = b
                for t in 0..<taps {
                    a0 = a0.addingProductFast(load16(UnsafePointer(scratch + off[t] + q)), V16(repeating: weights[t]))
                }
                store16(clip(a0), flat + q)
                q += 16
            }
        }
        for oy in 0..<g.outHeight {
            (dst + oy * g.outWidth).update(from: flat + oy * pitch, count: g.outWidth)
        }
    }
}

extension CPUKernels {
    /// One filter per channel: 3x3 layers on planes up to 32x32 with channels in sixteens run
    /// sixteen channels at a time (`DepthwiseInterleaved`), other stride-1 layers on planes up to
    /// 32 wide on the flattened plane (`DepthwiseFlat`), other 3x3 stride-1 and stride-2 layers
    /// read their planes in place (`Depthwise3x3`), the rest go through `DepthwisePlan`'s phase planes.
    static func makeDepthwiseConv2D(geometry g: ConvGeometry, batch: Int, channels: Int, hasBias: Bool,
                                    activation: Activation?, threads: CPUThreads) -> CPUKernel {
        let clamp = FusedClamp(activation)
        // Always applied: without a clamp activation the bounds are infinite.
        let clip = Clip(lo: V16(repeating: clamp?.lo ?? -.infinity), hi: V16(repeating: clamp?.hi ?? .infinity))
        let inPlane = g.height * g.width, planes = batch * channels
        if DepthwiseInterleaved.supports(g, channels: channels) {
            return depthwiseInterleaved(DepthwiseInterleaved(g), batch: batch, channels: channels, hasBias: hasBias,
                                        activation: activation, clip: clip, threads: threads)
        }
        if DepthwiseFlat.supports(g) {
            let kernel = DepthwiseFlat(g)
            return depthwisePlanes(g, batch: batch, channels: channels, hasBias: hasBias, activation: activation,
                                   threads: threads, scratchCount: kernel.scratchCount) { _, nearEnd, src, weights, bias, scratch, dst in
                kernel.run(src: src, weights: weights, bias: bias, clip: clip, scratch: scratch, dst: dst, spill: !nearEnd)
            }
        }
        if Depthwise3x3.supports(g) {
            let kernel = Depthwise3x3(g)
            // Planes whose loads could leave the tensor: those within `before` floats of its
            // start or `after` floats of its end.
            let firstDirect = (Depthwise3x3.before + inPlane - 1) / inPlane
            let lastDirect = planes - 1 - (Depthwise3x3.after + inPlane - 1) / inPlane
            return depthwisePlanes(g, batch: batch, channels: channels, hasBias: hasBias, activation: activation,
                                   threads: threads, scratchCount: kernel.scratchCount) { plane, _, src, weights, bias, scratch, dst in
                if plane >= firstDirect && plane <= lastDirect {
                    kernel.run(src: src, weights: weights, bias: bias, clip: clip, dst: dst)
                } else {
                    kernel.runCopied(src: src, weights: weights, bias: bias, clip: clip, scratch: scratch, dst: dst)
                }
            }
        }
        let plan = DepthwisePlan(g)
        return depthwisePlanes(g, batch: batch, channels: channels, hasBias: hasBias, activation: activation,
                               threads: threads, scratchCount: plan.scratchCount) { _, _, src, weights, bias, scratch, dst in
            plan.run(src: src, weights: weights, bias: bias, clamp: clamp, scratch: scratch, dst: dst)
        }
    }

    /// Blocks of sixteen channels of one image split over the threads, each with its thread's
    /// scratch (the padded buffer's border zeroed once).
    private static func depthwiseInterleaved(_ kernel: DepthwiseInterleaved, batch: Int, channels: Int, hasBias: Bool,
                                             activation: Activation?, clip: Clip, threads: CPUThreads) -> CPUKernel {
        let inPlane = kernel.inPixels, outPlane = kernel.outPixels
        let after: Activation? = FusedClamp(activation) == nil ? activation : nil
        let blocks = channels / 16, units = batch * blocks
        let workers = max(1, min(threads.count, units))
        return { inputs, outputs in
            let xp = inputs[0]!, wp = inputs[1]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            threads.parallelFor(workers) { w in
                ThreadBuffers.current.withScratch(kernel.scratchCount) { s in
                    kernel.prepare(scratch: s)
                    for unit in (units * w / workers)..<(units * (w + 1) / workers) {
                        let c0 = unit % blocks * 16, plane = unit / blocks * channels + c0
                        let dst = y + plane * outPlane
                        kernel.run(src: xp + plane * inPlane, weights: wp + c0 * 9, bias: bias.map { $0 + c0 }, clip: clip,
                                   scratch: s, dst: dst)
                        if let after { applyActivation(after, dst, count: 16 * outPlane) }
                    }
                }
            }
        }
    }

    /// The planes split over the threads, each with its thread's scratch; `convolve`
    /// gets the plane's index, whether less than a vector of its thread's output follows, the input, filter,
    /// bias, scratch and output, and activations other than a clamp (which `convolve` applies)
    /// run over the output plane afterwards.
    private static func depthwisePlanes(
        _ g: ConvGeometry, batch: Int, channels: Int, hasBias: Bool, activation: Activation?, threads: CPUThreads,
        scratchCount: Int,
        _ convolve: @escaping (_ plane: Int, _ nearEnd: Bool, _ src: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, _ bias: Float,
                               _ scratch: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>) -> Void
    ) -> CPUKernel {
        let inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        let taps = g.kernelH * g.kernelW
        let after: Activation? = FusedClamp(activation) == nil ? activation : nil
        let planes = batch * channels
        let workers = max(1, min(threads.count, planes))
        return { inputs, outputs in
            let xp = inputs[0]!, wp = inputs[1]!, bias = hasBias ? inputs[2] : nil, y = outputs[0]
            threads.parallelFor(workers) { w in
                ThreadBuffers.current.withScratch(scratchCount) { s in
                    let end = planes * (w + 1) / workers
                    for plane in (planes * w / workers)..<end {
                        let c = plane % channels
                        let dst = y + plane * outPlane
                        // Whether less than a vector of this thread's output follows the plane.
                        let nearEnd = (end - 1 - plane) * outPlane < 16
                        convolve(plane, nearEnd, xp + plane * inPlane, wp + c * taps, bias?[c] ?? 0, s, dst)
                        if let after { applyActivation(after, dst, count: outPlane) }
                    }
                }
            }
        }
    }
}
