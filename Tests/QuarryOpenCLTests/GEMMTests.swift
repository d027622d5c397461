import Foundation
import Quarry
import QuarryOpenCL
import XCTest

final class GEMMTests: XCTestCase {
    func testMatMulRandomShapes() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for _ in 0..<6 {
            let m = Int.random(in: 1...70, using: &rng), n = Int.random(in: 1...70, using: &rng)
            let k = Int.random(in: 1...90, using: &rng), batch = Int.random(in: 1...3, using: &rng)
            let ta = Bool.random(using: &rng), tb = Bool.random(using: &rng)
            let a = randomTensor(ta ? [batch, k, m] : [batch, m, k], &rng)
            let bShape = tb ? [n, k] : [k, n]
            let broadcastB = Bool.random(using: &rng)
            let b = randomTensor(broadcastB ? bShape : [batch] + bShape, &rng)
            let constant: Set<Int> = broadcastB && Bool.random(using: &rng) ? [1] : []
            let out = try runOpenCLNode(.matmul(transposeA: ta, transposeB: tb), [a, b], constantIndices: constant, device: device)[0]
            var ref = [Double](repeating: 0, count: batch * m * n)
            for g in 0..<batch { for i in 0..<m { for j in 0..<n {
                var s = 0.0
                for kk in 0..<k {
                    let av = ta ? a[flat: (g * k + kk) * m + i] : a[flat: (g * m + i) * k + kk]
                    let bo = broadcastB ? 0 : g * k * n
                    let bv = tb ? b[flat: bo + j * k + kk] : b[flat: bo + kk * n + j]
                    s += Double(av) * Double(bv)
                }
                ref[(g * m + i) * n + j] = s
            } } }
            assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "matmul \(batch)x\(m)x\(k)x\(n) ta \(ta) tb \(tb) bcast \(broadcastB)")
        }
    }

    func testDenseWithActivation() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        for _ in 0..<4 {
            let rows = Int.random(in: 1...40, using: &rng), k = Int.random(in: 1...100, using: &rng)
            let n = Int.random(in: 1...50, using: &rng)
            let x = randomTensor([2, rows, k], &rng), w = randomTensor([n, k], &rng), b = randomTensor([n], &rng)
            let constant: Set<Int> = Bool.random(using: &rng) ? [1, 2] : []
            let out = try runOpenCLNode(.dense(activation: .relu), [x, w, b], constantIndices: constant, device: device)[0]
            var ref = [Double](repeating: 0, count: 2 * rows * n)
            for r in 0..<(2 * rows) { for j in 0..<n {
                var s = Double(b[flat: j])
                for kk in 0..<k { s += Double(x[flat: r * k + kk]) * Double(w[flat: j * k + kk]) }
                ref[r * n + j] = max(s, 0)
            } }
            assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "dense \(rows)x\(k)->\(n)")
        }
    }

    /// Prints GFLOP/s of the GEMM schedules; runs only with QUARRY_GEMM_TUNE set (slow).
    func testTuneGEMM() throws {
        guard let sizes = ProcessInfo.processInfo.environment["QUARRY_GEMM_TUNE"] else {
            throw XCTSkip("set QUARRY_GEMM_TUNE=M,N,K to time the GEMM")
        }
        let d = sizes.split(separator: ",").compactMap { Int($0) }
        let device = try testDevice()
        let r = try device.benchmarkGEMM(m: d[0], n: d[1], k: d[2], repeats: 3)
        print("GEMM \(d): best \(r.seconds) s, \(r.gflops) GFLOP/s (median \(r.medianGFLOPS))")
    }
}
