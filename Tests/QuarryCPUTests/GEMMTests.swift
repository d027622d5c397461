import CQuarryKernels
import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

final class GEMMTests: XCTestCase {
    /// One random GEMM problem and its float64 reference.
    struct Case {
        var m, n, k: Int
        var transA = false, transB = false
        var padA = 0, padB = 0, padC = 0
        var packA = false, packB = false
        var bias: GEMMEpilogue.BiasAxis? = nil
        var accumulate = false
        var activation: Activation? = nil
        var threads = 1
        /// B read by the micro-kernel where it lies (a 1x1 convolution's planes), not packed.
        var bInPlace = false
        /// Run in bf16 (CPUGEMMPrecision): the reference multiplies the operands rounded to bf16.
        var bf16 = false
    }

    /// x rounded to the nearest bf16 (ties to even), as a Double: what the bf16 GEMM multiplies.
    static func bf16(_ x: Float) -> Double {
        let u = x.bitPattern
        let r = (u &+ 0x7fff &+ ((u >> 16) & 1)) & 0xffff_0000
        return Double(Float(bitPattern: r))
    }

    /// Runs the case under every instruction-set level the host has (each level's micro-kernel in
    /// CQuarryKernels), on fresh random operands each time.
    func run(_ t: Case, _ rng: inout SeededGenerator) {
        if t.bf16 {
            runOnce(t, &rng, "bf16")
            return
        }
        CPUInstructionSet.forEachAvailable { level in runOnce(t, &rng, "\(level)") }
    }

    func runOnce(_ t: Case, _ rng: inout SeededGenerator, _ level: String) {
        // Stored shapes of op(A) = [m, k] and op(B) = [k, n] with padded leading dimensions.
        let aRows = t.transA ? t.k : t.m, aCols = t.transA ? t.m : t.k
        let bRows = t.transB ? t.n : t.k, bCols = t.transB ? t.k : t.n
        let lda = aCols + t.padA, ldb = bCols + t.padB, ldc = t.n + t.padC
        let a = randomTensor([max(aRows * lda, 1)], &rng)
        let b = randomTensor([max(bRows * ldb, 1)], &rng)
        let biasCount = t.bias == .rows ? t.m : t.n
        let bias = randomTensor([max(biasCount, 1)], &rng)
        let c0 = randomTensor([max(t.m * ldc, 1)], &rng)
        let c = t.accumulate ? c0.copy() : Tensor(shape: c0.shape, repeating: .nan)

        func round(_ x: Float) -> Double { t.bf16 ? Self.bf16(x) : Double(x) }
        func av(_ i: Int, _ p: Int) -> Double { round(t.transA ? a[flat: p * lda + i] : a[flat: i * lda + p]) }
        func bv(_ p: Int, _ j: Int) -> Double { round(t.transB ? b[flat: j * ldb + p] : b[flat: p * ldb + j]) }
        var expected = [Double](repeating: 0, count: t.m * t.n)
        for i in 0..<t.m {
            for j in 0..<t.n {
                var s = 0.0
                for p in 0..<t.k { s += av(i, p) * bv(p, j) }
                if t.accumulate { s += Double(c0[flat: i * ldc + j]) }
                if let axis = t.bias { s += Double(bias[flat: axis == .rows ? i : j]) }
                if let act = t.activation { s = referenceActivation(act, s) }
                expected[i * t.n + j] = s
            }
        }

        let opA: GEMMOperand = t.packA
            ? .packed(PackedMatrix(a: a.pointer, m: t.m, k: t.k, lda: lda, transposed: t.transA))
            : .matrix(a.pointer, ld: lda, transposed: t.transA)
        let opB: GEMMOperand = t.packB
            ? .packed(PackedMatrix(b: b.pointer, k: t.k, n: t.n, ldb: ldb, transposed: t.transB))
            : .matrix(b.pointer, ld: ldb, transposed: t.transB)
        let epilogue = GEMMEpilogue(
            bias: t.bias == nil ? nil : UnsafePointer(bias.pointer), biasAxis: t.bias ?? .rows,
            accumulate: t.accumulate, activation: t.activation)
        if t.bInPlace {
            precondition(!t.transB && !t.packB)
            let packedA = t.packA ? PackedMatrix(a: a.pointer, m: t.m, k: t.k, lda: lda, transposed: t.transA) : nil
            gemmWith(m: t.m, n: t.n, k: t.k, packedA: packedA, a: a.pointer, lda: lda, transposeA: t.transA,
                     b: DenseOperand(base: b.pointer, ld: ldb, transposed: false, inPlace: true), c: c.pointer, ldc: ldc,
                     epilogue: epilogue, threads: CPUThreads(count: t.threads))
        } else {
            sgemm(m: t.m, n: t.n, k: t.k, a: opA, b: opB, c: c.pointer, ldc: ldc, epilogue: epilogue,
                  threads: CPUThreads(count: t.threads))
        }

        let got = Tensor(shape: [t.m * t.n])
        for i in 0..<t.m { for j in 0..<t.n { got[flat: i * t.n + j] = c[flat: i * ldc + j] } }
        assertClose(got, expected, rtol: 1e-4, atol: 1e-4 * Double(max(t.k, 1)).squareRoot(), "\(level) \(t)")
        // Padding columns of C between rows must be left untouched.
        if t.padC > 0 && t.m > 1 {
            for i in 0..<(t.m - 1) {
                for j in t.n..<ldc {
                    let v = c[flat: i * ldc + j], w = t.accumulate ? c0[flat: i * ldc + j] : Float.nan
                    XCTAssert(v == w || (v.isNaN && w.isNaN), "C padding written at row \(i), column \(j): \(level) \(t)")
                }
            }
        }
    }

    func testTinyAndTileStraddlingShapes() {
        var rng = makeTestRNG()
        let sizes = [1, 2, 4, 8, 11, 12, 13, 16, 31, 32, 33, 40, 47]
        for m in sizes {
            for n in sizes {
                run(Case(m: m, n: n, k: [1, 3, 17, 64][(m + n) % 4]), &rng)
            }
        }
    }

    func testDeepAndBlockStraddlingShapes() {
        var rng = makeTestRNG()
        // K across the KC block boundary, M across MC, N across NC, with two threads.
        for (m, n, k) in [(5, 7, 257), (241, 33, 19), (13, 2083, 9), (25, 65, 513), (250, 130, 270), (3, 4100, 2)] {
            run(Case(m: m, n: n, k: k, threads: 2), &rng)
        }
    }

    func testTransposesLeadingDimensionsAndPacking() {
        var rng = makeTestRNG()
        for trial in 0..<24 {
            var t = Case(m: Int.random(in: 1...60, using: &rng), n: Int.random(in: 1...80, using: &rng),
                         k: Int.random(in: 1...300, using: &rng))
            t.transA = trial & 1 != 0
            t.transB = trial & 2 != 0
            t.packA = trial & 4 != 0
            t.packB = trial & 8 != 0
            t.padA = Int.random(in: 0...5, using: &rng)
            t.padB = Int.random(in: 0...5, using: &rng)
            t.padC = Int.random(in: 0...3, using: &rng)
            t.threads = 1 + trial % 2
            run(t, &rng)
        }
    }

    func testEpilogues() {
        var rng = makeTestRNG()
        let activations: [Activation?] = [nil, .relu, .relu6, .clip(min: -0.5, max: 0.25), .sigmoid, .gelu(approximate: false)]
        for (trial, act) in activations.enumerated() {
            for accumulate in [false, true] {
                for axis in [GEMMEpilogue.BiasAxis.rows, .columns] {
                    var t = Case(m: Int.random(in: 1...40, using: &rng), n: Int.random(in: 1...70, using: &rng),
                                 k: Int.random(in: 1...280, using: &rng))
                    t.bias = axis; t.accumulate = accumulate; t.activation = act
                    t.packA = trial % 2 == 0; t.packB = trial % 3 == 0
                    t.padC = trial % 2
                    t.threads = 1 + (trial + (accumulate ? 1 : 0)) % 2
                    run(t, &rng)
                }
            }
        }
    }

    /// B read in place: full panels straight from B (row stride ldb), a partial last panel
    /// packed; K across several KC blocks, N across panels and NC, half-width edge tiles.
    func testBReadInPlace() {
        var rng = makeTestRNG()
        let activations: [Activation?] = [nil, .relu, .relu6]
        for trial in 0..<16 {
            var t = Case(m: Int.random(in: 1...50, using: &rng), n: Int.random(in: 1...150, using: &rng),
                         k: Int.random(in: 1...600, using: &rng))
            t.bInPlace = true
            t.packA = trial % 2 == 0
            t.transA = trial % 4 == 1
            t.padB = Int.random(in: 0...9, using: &rng)
            t.padC = Int.random(in: 0...3, using: &rng)
            t.bias = trial % 3 == 0 ? .rows : nil
            t.accumulate = trial % 5 == 0
            t.activation = activations.randomElement(using: &rng)!
            t.threads = 1 + trial % 2
            run(t, &rng)
        }
        run(Case(m: 13, n: 2100, k: 40, threads: 2, bInPlace: true), &rng)
        // One K block read in place runs each row tile across a run of panels (a quarter of L2's
        // worth): at the deepest single block, the fewest panels a run, two runs and a short third
        // one ending in a partial panel.
        for (m, threads, less) in [(40, 1, 0), (29, 2, 3)] {
            let k = GEMMBlocking.kc - less
            let runColumns = sweepPanels(direct: true, packedSweeps: false, first: true, last: true, kcb: k) * GEMMBlocking.nr
            XCTAssertLessThan(runColumns, GEMMBlocking.nc, "one run of panels covers the NC block")
            var t = Case(m: m, n: 2 * runColumns + 45, k: k, threads: threads, bInPlace: true)
            t.bias = .rows; t.activation = .relu; t.padB = 3
            run(t, &rng)
        }
    }

    /// Packed B (packed per block, or prepacked) crossed in runs of panels by each row tile: K
    /// over several KC blocks (C accumulated), runs ending short and in a partial panel.
    func testPackedPanelsInRuns() {
        var rng = makeTestRNG()
        let runColumns = sweepPanels(direct: false, packedSweeps: true, first: true, last: true, kcb: GEMMBlocking.kc)
            * GEMMBlocking.nr
        XCTAssertLessThan(runColumns, GEMMBlocking.nc, "one run of panels covers the NC block")
        for trial in 0..<4 {
            var t = Case(m: 25 + trial * 7, n: 2 * runColumns + 45 + trial, k: GEMMBlocking.kc * 2 + 5 - trial, threads: 1 + trial % 2)
            t.packB = trial % 2 == 0
            t.packA = trial >= 2
            t.bias = .columns; t.activation = trial == 3 ? .relu6 : nil; t.padC = trial % 3
            run(t, &rng)
        }
    }

    func testEmptyDepthGivesBiasOnly() {
        var rng = makeTestRNG()
        var t = Case(m: 5, n: 9, k: 0)
        t.bias = .columns; t.activation = .relu
        run(t, &rng)
    }

    /// bf16 operands with fp32 accumulation (AMX tiles and vdpbf16ps), against a float64 product of the operands
    /// rounded to bf16: edge tiles, odd depths, depth across KC blocks, B in place and packed, A
    /// packed before the mode was set (converted per run) and after it (converted once), epilogues.
    func testBF16AgainstRoundedOperands() throws {
        guard CPUGEMMPrecision.bf16Available else {
            // Refused with a clear error where the host cannot run it.
            XCTAssertThrowsError(try CPUGEMMPrecision.set(.bf16))
            throw XCTSkip("this host has no AVX512_BF16 (or the AVX-512 kernels are not in use)")
        }
        // Every bf16 kernel this host has: AMX tiles where present, and vdpbf16ps.
        let kernels = CPUGEMMPrecision.bf16Kernel == "amx" ? ["amx", "vdpbf16ps"] : ["vdpbf16ps"]
        for kernel in kernels {
            try CPUGEMMPrecision.withAMX(kernel == "amx") { try runBF16Cases(kernel) }
        }
    }

    private func runBF16Cases(_ kernel: String) throws {
        var rng = makeTestRNG()
        let activations: [Activation?] = [nil, .relu, .relu6, .sigmoid]
        try CPUGEMMPrecision.set(.bf16)
        defer { try? CPUGEMMPrecision.set(.fp32) }
        for trial in 0..<20 {
            var t = Case(m: Int.random(in: 1...40, using: &rng), n: Int.random(in: 1...120, using: &rng),
                         k: trial % 5 == 0 ? Int.random(in: 257...600, using: &rng) : Int.random(in: 1...90, using: &rng))
            t.bf16 = true
            t.packA = trial % 2 == 0
            t.packB = trial % 3 == 1
            t.bInPlace = !t.packB && trial % 3 == 2
            t.transA = !t.bInPlace && trial % 4 == 3
            t.padB = Int.random(in: 0...5, using: &rng)
            t.padC = Int.random(in: 0...2, using: &rng)
            t.bias = trial % 2 == 0 ? .rows : .columns
            t.accumulate = trial % 6 == 1
            t.activation = activations[trial % activations.count]
            t.threads = 1 + trial % 2
            run(t, &rng)
        }
        // A packed in fp32 mode and used in bf16 mode: its panels are converted at each run.
        try CPUGEMMPrecision.set(.fp32)
        let (m, n, k) = (30, 70, 301)
        let a = randomTensor([m, k], &rng), b = randomTensor([k, n], &rng)
        let packed = PackedMatrix(a: a.pointer, m: m, k: k, lda: k)
        try CPUGEMMPrecision.set(.bf16)
        let c = Tensor(shape: [m, n], repeating: .nan)
        sgemm(m: m, n: n, k: k, a: .packed(packed), b: .matrix(b.pointer, ld: n, transposed: false), c: c.pointer, ldc: n,
              threads: CPUThreads(count: 2))
        var expected = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Self.bf16(a[flat: i * k + p]) * Self.bf16(b[flat: p * n + j]) }
                expected[i * n + j] = s
            }
        }
        assertClose(c, expected, rtol: 1e-4, atol: 1e-4 * Double(k).squareRoot(), "bf16 (\(kernel)) with A packed in fp32 mode")
    }

    func testPeakMeasurementIsPositive() {
        let peak = measureFP32PeakGFLOPS(threads: CPUThreads(count: 1), seconds: 0.02)
        XCTAssert(peak > 0 && peak.isFinite, "peak \(peak)")
    }

    /// The bf16 peak loop runs every iteration on every chain: its result is exact (276 + 24 n 2^-9),
    /// so a loop cut short or a chain dropped changes it. Without bf16 there is no figure.
    func testBF16PeakLoopDoesItsIterations() {
        guard quarry_bf16_peak_flops_per_iteration() > 0 else {
            XCTAssertNil(measureBF16PeakGFLOPS(threads: CPUThreads(count: 1), seconds: 0.01))
            XCTAssertEqual(quarry_bf16_peak_loop(100), 0)
            return
        }
        XCTAssertEqual(quarry_bf16_peak_flops_per_iteration(), 24 * 32 * 2)
        for n in [0, 1, 7, 1000, 100_003] {
            XCTAssertEqual(quarry_bf16_peak_loop(n), 276 + Float(24 * n) / 512, "\(n) iterations")
        }
        // A figure only where the bf16 GEMM runs on vdpbf16ps (on AMX, the loop is not its limit).
        let peak = measureBF16PeakGFLOPS(threads: CPUThreads(count: 1), seconds: 0.02)
        if CPUGEMMPrecision.bf16Kernel == "vdpbf16ps" {
            XCTAssert(peak.map { $0 > 0 && $0.isFinite } == true, "bf16 peak \(String(describing: peak))")
        } else {
            XCTAssertNil(peak)
        }
    }
}

/// The host's cache blocking: derived values, forced candidates, and the tuner.
final class HostBlockingTests: XCTestCase {
    func testDerivedBlockingFitsTheCaches() {
        // Zen 4 (32 KiB L1d, 1 MiB L2): KC 256 (a 12 KiB A panel), MC a quarter of L2.
        XCTAssertEqual(HostBlocking.derived(l1: 32 * 1024, l2: 1 << 20), HostBlocking(kc: 256, mc: 252, nc: 2048))
        // Sapphire Rapids (48 KiB, 2 MiB): deeper blocks.
        XCTAssertEqual(HostBlocking.derived(l1: 48 * 1024, l2: 2 << 20), HostBlocking(kc: 384, mc: 336, nc: 2048))
        for l1 in [16, 32, 48, 64, 80] {
            for l2 in [256, 512, 1024, 2048] {
                let b = HostBlocking.derived(l1: l1 * 1024, l2: l2 * 1024)
                XCTAssert(b.isValid, "\(b) from L1 \(l1) KiB, L2 \(l2) KiB")
            }
        }
        XCTAssertFalse(HostBlocking(kc: 255, mc: 240, nc: 2048).isValid)
        XCTAssertFalse(HostBlocking(kc: 256, mc: 250, nc: 2048).isValid)
    }

    /// Products stay right under other blockings (blocks straddled in every dimension), as the
    /// tuner's candidates run them.
    func testProductsUnderOtherBlockings() {
        var rng = makeTestRNG()
        for b in [HostBlocking(kc: 128, mc: 96, nc: 512), HostBlocking(kc: 200, mc: 36, nc: 64), HostBlocking(kc: 512, mc: 480, nc: 4096)] {
            GEMMBlocking.withBlocking(b) {
                for (m, n, k) in [(50, 130, 301), (100, 70, 1030), (7, 600, 33)] {
                    let a = randomTensor([m, k], &rng), bm = randomTensor([k, n], &rng)
                    let c = Tensor(shape: [m, n], repeating: .nan)
                    sgemm(m: m, n: n, k: k, a: .matrix(a.pointer, ld: k, transposed: false),
                          b: .matrix(bm.pointer, ld: n, transposed: false), c: c.pointer, ldc: n, threads: CPUThreads(count: 2))
                    var expected = [Double](repeating: 0, count: m * n)
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0
                            for p in 0..<k { s += Double(a[flat: i * k + p]) * Double(bm[flat: p * n + j]) }
                            expected[i * n + j] = s
                        }
                    }
                    assertClose(c, expected, rtol: 1e-4, atol: 1e-4 * Double(k).squareRoot(), "\(b) \(m)x\(n)x\(k)")
                }
            }
        }
    }

    func testTunerMeasuresChecksAndPicksAValidWinner() throws {
        let (results, winner, gflops) = try CPUBlockingTuner.tune(threads: 1, repeats: 1, shapes: [[40, 70, 300]], store: false)
        XCTAssert(winner.isValid, "\(winner)")
        XCTAssert(gflops > 0 && gflops.isFinite)
        XCTAssertGreaterThan(results.count, 5)
        XCTAssert(results.allSatisfy { $0.rejected == nil }, "a correct GEMM was rejected: \(results.filter { $0.rejected != nil })")
        XCTAssertEqual(GEMMBlocking.current, HostBlocking.chosen.blocking, "the tuner left its candidate in force")
    }
}
