// Measured compute figures of the CPU backend: the machine's fp32 FMA peak (measured by running FMAs,
// not taken from a spec sheet) and timed GEMM / convolution layers, for `quarry bench`.

import Dispatch
import Foundation
import Quarry
import CQuarryKernels

/// Sink that keeps the peak loop's results observable so the optimiser cannot drop the loop.
// @unchecked: each thread writes its own element of `values`; they are read after the join.
private final class PeakSink: @unchecked Sendable {
    var values: [Float]
    init(_ n: Int) { values = Array(repeating: 0, count: n) }
}

/// The fp32 throughput of FMAs on every thread at once, in GFLOP/s (one FMA = 2 flops), best of
/// three runs of about `seconds` each. Twelve independent vector chains cover the FMA latency times
/// the number of FMA pipes on current x86 cores. The loop is the kernels' own instruction-set level
/// (CQuarryKernels: AVX-512, AVX2 + FMA or the baseline, as chosen at run time), so the peak is the
/// one the kernels in use can reach.
public func measureFP32PeakGFLOPS(threads: CPUThreads, seconds: Double = 0.25) -> Double {
    measurePeak(threads: threads, seconds: seconds, flopsPerIteration: quarry_fma_peak_flops_per_iteration()) {
        quarry_fma_peak_loop($0, Float($1))
    }
}

/// The bf16 dot product's throughput (vdpbf16ps) on every thread at once, in GFLOP/s-equivalent (a
/// pair of multiply-adds = 4 flops), measured like the fp32 peak: the limit of the bf16 GEMM where
/// it runs on that instruction; nil where it does not (no bf16, or AMX tiles instead). Zen 4 runs
/// it at about twice the fp32 FMA rate; an Emerald Rapids guest without AMX at half of it (84-86
/// against 168-176 GFLOP/s on one thread), so there `--precision bf16` is slower than fp32.
public func measureBF16PeakGFLOPS(threads: CPUThreads, seconds: Double = 0.25) -> Double? {
    let flops = quarry_bf16_peak_flops_per_iteration()
    guard flops > 0, CPUGEMMPrecision.bf16Kernel == "vdpbf16ps" else { return nil }
    return measurePeak(threads: threads, seconds: seconds, flopsPerIteration: flops) { iterations, _ in
        quarry_bf16_peak_loop(iterations)
    }
}

/// Times `loop(iterations, thread)` on every thread at once: the iteration count doubled until a run
/// takes a quarter of `seconds`, then the best of three runs of four times that.
private func measurePeak(threads: CPUThreads, seconds: Double, flopsPerIteration: Int,
                         _ loop: @escaping (Int, Int) -> Float) -> Double {
    let sink = PeakSink(threads.count)
    func run(iterations: Int) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        sink.values.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            // Every thread on a core of its own (Dispatch's pool once ran both on one core).
            threads.parallelFor(threads.count) { t in out[t] = loop(iterations, t) }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    }
    var iterations = 1 << 14
    while run(iterations: iterations) < seconds / 4 && iterations < 1 << 34 { iterations *= 2 }
    let target = Int(Double(iterations) * 4)
    var best = Double.infinity
    for _ in 0..<3 { best = min(best, run(iterations: target)) }
    let flops = Double(target) * Double(flopsPerIteration) * Double(threads.count)
    return flops / best * 1e-9
}

/// A timed GEMM: the median of `repeats` runs after one warm-up.
public struct GEMMBenchmarkResult: Codable, Sendable {
    public var m, n, k, threads: Int
    public var seconds: Double
    public var gflops: Double
}

/// Times C = A * B on [m, k] x [k, n] random matrices (both operands packed at run time, as a
/// BLAS call would).
public func benchmarkGEMM(m: Int, n: Int, k: Int, threads: Int, repeats: Int = 10) -> GEMMBenchmarkResult {
    var rng = SeededGenerator(seed: 42)
    let a = Tensor.random(shape: [m, k], using: &rng), b = Tensor.random(shape: [k, n], using: &rng)
    let c = Tensor(shape: [m, n])
    let pool = CPUThreads(count: threads)
    let seconds = medianSeconds(repeats: repeats) {
        sgemm(m: m, n: n, k: k, a: .matrix(a.pointer, ld: k, transposed: false),
              b: .matrix(b.pointer, ld: n, transposed: false), c: c.pointer, ldc: n, threads: pool)
    }
    return GEMMBenchmarkResult(m: m, n: n, k: k, threads: pool.count, seconds: seconds,
                               gflops: 2 * Double(m) * Double(n) * Double(k) / seconds * 1e-9)
}

/// Runs `body` once to warm up, then `repeats` times, and returns the median time in seconds.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<max(1, repeats) {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
    }
    times.sort()
    return times[times.count / 2]
}

/// A timed convolution layer (weights and bias constant, so packed once as in a compiled model).
public struct ConvBenchmarkResult: Codable, Sendable {
    public var batch, channels, height, width, outChannels, kernel, stride, padding, groups, threads: Int
    public var outHeight, outWidth: Int
    public var seconds: Double
    /// Useful flops (2 per multiply-add of the convolution's definition) per second.
    public var gflops: Double
}

/// Times a square-kernel convolution [batch, channels, height, width] -> [batch, outChannels, ...]
/// with bias and a fused relu, through the same kernel factory the CPU device compiles with.
public func benchmarkConv2D(
    batch: Int, channels: Int, height: Int, width: Int, outChannels: Int, kernel: Int, stride: Int = 1,
    padding: Int = 0, groups: Int = 1, threads: Int, repeats: Int = 10
) throws -> ConvBenchmarkResult {
    let attributes = Conv2DAttributes(kernel: (kernel, kernel), stride: (stride, stride), padding: Padding2D(padding),
                                      groups: groups, activation: .relu)
    let outH = (height + 2 * padding - kernel) / stride + 1, outW = (width + 2 * padding - kernel) / stride + 1
    guard groups >= 1, channels % groups == 0, outChannels % groups == 0, outH > 0, outW > 0 else {
        throw QuarryError.invalidArgument(
            "conv benchmark: \(channels)->\(outChannels) channels, groups \(groups), \(height)x\(width) input, kernel \(kernel), stride \(stride), padding \(padding) is not a valid convolution")
    }
    var rng = SeededGenerator(seed: 7)
    let x = Tensor.random(shape: [batch, channels, height, width], using: &rng)
    let w = Tensor.random(shape: [outChannels, channels / groups, kernel, kernel], using: &rng)
    let b = Tensor.random(shape: [outChannels], using: &rng)
    let y = Tensor(shape: [batch, outChannels, outH, outW])
    let node = Node(name: "bench_conv", op: .conv2d(attributes), inputs: ["x", "w", "b"], outputs: ["y"])
    let pool = CPUThreads(count: threads)
    let ctx = KernelContext(node: node, inputShapes: [x.shape, w.shape, b.shape], outputShapes: [y.shape],
                            constants: [1: w, 2: b], threads: pool, packCache: PackCache())
    let run = try CPUKernels.make(ctx)
    let ins: [UnsafePointer<Float>?] = [UnsafePointer(x.pointer), UnsafePointer(w.pointer), UnsafePointer(b.pointer)]
    let seconds = medianSeconds(repeats: repeats) { run(ins, [y.pointer]) }
    let flops = 2.0 * Double(batch * outChannels * outH * outW) * Double(channels / groups * kernel * kernel)
    return ConvBenchmarkResult(
        batch: batch, channels: channels, height: height, width: width, outChannels: outChannels, kernel: kernel,
        stride: stride, padding: padding, groups: groups, threads: pool.count, outHeight: outH, outWidth: outW,
        seconds: seconds, gflops: flops / seconds * 1e-9)
}
