// Compute benchmarks of the CPU backend without the rest of the tool (no OpenCL, formats or zoo to
// build), for bench/gemm_vs_openblas.sh. Build it as bench/README says:
//   swift build -c release --product quarry-bench
// Usage: quarry-bench peak THREADS
//        quarry-bench gemm M N K THREADS [REPEATS]
//        quarry-bench conv N C H W O KERNEL STRIDE PAD GROUPS THREADS [REPEATS]

import Foundation
import Quarry
import QuarryCPU

let args = Array(CommandLine.arguments.dropFirst())
func int(_ i: Int) -> Int {
    guard i < args.count, let v = Int(args[i]) else {
        FileHandle.standardError.write("argument \(i + 1) must be an integer\n".data(using: .utf8)!)
        exit(2)
    }
    return v
}

switch args.first {
case "peak":
    let t = int(1)
    let peak = measureFP32PeakGFLOPS(threads: CPUThreads(count: t))
    print(String(format: "peak threads=%d gflops=%.1f", t, peak))
case "gemm":
    let r = benchmarkGEMM(m: int(1), n: int(2), k: int(3), threads: int(4), repeats: args.count > 5 ? int(5) : 10)
    print(String(format: "gemm m=%d n=%d k=%d threads=%d median_ms=%.3f gflops=%.1f", r.m, r.n, r.k, r.threads, r.seconds * 1e3, r.gflops))
case "gemm-packed-a":
    // A packed once beforehand (as conv weights are): isolates the run-time cost of packing A.
    let m = int(1), n = int(2), k = int(3), pool = CPUThreads(count: int(4))
    var rng = SeededGenerator(seed: 1)
    let a = Tensor.random(shape: [m, k], using: &rng), b = Tensor.random(shape: [k, n], using: &rng)
    let c = Tensor(shape: [m, n])
    let pa = PackedMatrix(a: a.pointer, m: m, k: k, lda: k)
    let bias = Tensor.random(shape: [m], using: &rng)
    let env = ProcessInfo.processInfo.environment
    let epilogue = GEMMEpilogue(bias: env["QBIAS"] != nil ? UnsafePointer(bias.pointer) : nil, biasAxis: .rows,
                                activation: env["QRELU"] != nil ? .relu : nil)
    var times: [Double] = []
    for _ in 0..<6 {
        let t0 = Date()
        sgemm(m: m, n: n, k: k, a: .packed(pa), b: .matrix(b.pointer, ld: n, transposed: false), c: c.pointer, ldc: n, epilogue: epilogue, threads: pool)
        times.append(Date().timeIntervalSince(t0))
    }
    times.sort()
    print(String(format: "gemm-packed-a median_ms=%.3f gflops=%.1f", times[3] * 1e3, 2 * Double(m * n * k) / times[3] * 1e-9))
case "conv":
    do {
        let r = try benchmarkConv2D(batch: int(1), channels: int(2), height: int(3), width: int(4), outChannels: int(5),
                                    kernel: int(6), stride: int(7), padding: int(8), groups: int(9), threads: int(10),
                                    repeats: args.count > 11 ? int(11) : 20)
        print(String(format: "conv n=%d c=%d hw=%dx%d o=%d k=%d s=%d p=%d g=%d -> %dx%d threads=%d median_ms=%.3f gflops=%.1f",
                     r.batch, r.channels, r.height, r.width, r.outChannels, r.kernel, r.stride, r.padding, r.groups,
                     r.outHeight, r.outWidth, r.threads, r.seconds * 1e3, r.gflops))
    } catch {
        FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
        exit(1)
    }
default:
    FileHandle.standardError.write("usage: quarry-bench peak THREADS | gemm M N K THREADS [REPEATS] | conv N C H W O KERNEL STRIDE PAD GROUPS THREADS [REPEATS]\n".data(using: .utf8)!)
    exit(2)
}
