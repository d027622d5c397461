// `quarry tune --device cpu`: measures the GEMM's cache blocking (KC, MC, NC) on this host, one
// dimension at a time around the values derived from its cache sizes, on three shape classes
// (square, a ResNet-style convolution as a GEMM, a BERT feed-forward layer), checks every
// candidate's product against float64 on sampled elements, and stores the fastest.

import Foundation
import Quarry

public enum CPUBlockingTuner {
    /// One candidate on one shape: its median time, or why it was rejected.
    public struct Result: Codable, Sendable {
        public var blocking: HostBlocking
        public var shape: [Int]
        public var gflops: Double?
        public var error: Double?
        public var rejected: String?
    }

    /// The shape classes, m x n x k: square, ResNet-50's 3x3 at 56x56 (256 x 3136 x 2304), and
    /// BERT-base's feed-forward over 8 x 128 tokens (1024 x 3072 x 768).
    public static let shapes: [[Int]] = [[1024, 1024, 1024], [256, 3136, 2304], [1024, 3072, 768]]

    /// Measures and returns every result and the winner (least total time over the shapes, among
    /// the candidates correct on all of them); stores the winner unless `store` is false.
    public static func tune(threads: Int, repeats: Int = 3, shapes: [[Int]] = shapes, store: Bool = true,
                            progress: (Result) -> Void = { _ in }) throws -> (results: [Result], winner: HostBlocking, gflops: Double) {
        let pool = CPUThreads(count: threads)
        var rng = SeededGenerator(seed: 11)
        let operands = shapes.map { s in
            (a: Tensor.random(shape: [s[0], s[2]], using: &rng), b: Tensor.random(shape: [s[2], s[1]], using: &rng),
             c: Tensor(shape: [s[0], s[1]]))
        }
        var results: [Result] = []
        var measured: [HostBlocking: Double] = [:]
        /// Total seconds over the shapes, or nil if the candidate was wrong on one.
        func measure(_ b: HostBlocking) -> Double? {
            if let t = measured[b] { return t.isFinite ? t : nil }
            var total = 0.0
            for (s, o) in zip(shapes, operands) {
                let (m, n, k) = (s[0], s[1], s[2])
                var result = Result(blocking: b, shape: s)
                let seconds = GEMMBlocking.withBlocking(b) { () -> Double in
                    o.c.pointer.update(repeating: .nan, count: m * n)
                    return medianSeconds(repeats: repeats) {
                        sgemm(m: m, n: n, k: k, a: .matrix(o.a.pointer, ld: k, transposed: false),
                              b: .matrix(o.b.pointer, ld: n, transposed: false), c: o.c.pointer, ldc: n, threads: pool)
                    }
                }
                // 64 sampled elements against float64 dot products.
                var worst = 0.0
                for sample in 0..<64 {
                    let i = (sample * 7919) % m, j = (sample * 104_729) % n
                    var exact = 0.0, scale = 0.0
                    for p in 0..<k {
                        let x = Double(o.a.pointer[i * k + p]) * Double(o.b.pointer[p * n + j])
                        exact += x; scale += abs(x)
                    }
                    let got = Double(o.c.pointer[i * n + j])
                    worst = max(worst, got.isFinite ? abs(got - exact) / max(scale, 1e-30) : .infinity)
                }
                result.error = worst
                if worst > 1e-5 {
                    result.rejected = "wrong result (error \(worst) of the sum of |products|)"
                    results.append(result); progress(result)
                    measured[b] = .infinity
                    return nil
                }
                result.gflops = 2 * Double(m) * Double(n) * Double(k) / seconds * 1e-9
                results.append(result); progress(result)
                total += seconds
            }
            measured[b] = total
            return total
        }
        // Coordinate search from the derived values: KC, then MC, then NC.
        let c = HostBlocking.cacheSizes()
        var best = HostBlocking.derived(l1: c.l1, l2: c.l2)
        var bestTime = measure(best) ?? .infinity
        func consider(_ b: HostBlocking) {
            guard b.isValid, let t = measure(b), t < bestTime else { return }
            best = b; bestTime = t
        }
        for kc in [128, 192, 256, 320, 384, 512] { consider(HostBlocking(kc: kc, mc: best.mc, nc: best.nc)) }
        for mc in [96, 144, 192, 240, 288, 384, 480, 720] { consider(HostBlocking(kc: best.kc, mc: mc, nc: best.nc)) }
        for nc in [512, 1024, 2048, 4096, 8192] { consider(HostBlocking(kc: best.kc, mc: best.mc, nc: nc)) }
        guard bestTime.isFinite else { throw QuarryError.device("every GEMM blocking candidate gave a wrong result on this host") }
        let flops = shapes.reduce(0.0) { $0 + 2 * Double($1[0]) * Double($1[1]) * Double($1[2]) }
        let gflops = flops / bestTime * 1e-9
        if store, let url = HostBlocking.file {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let data = try JSONEncoder().encode(HostBlocking.Stored(key: HostBlocking.hostKey, blocking: best, gflops: gflops))
            // Atomic (written beside and renamed), as the OpenCL tuner's: a reader never sees half a file.
            try data.write(to: url, options: .atomic)
        }
        return (results, best, gflops)
    }
}
