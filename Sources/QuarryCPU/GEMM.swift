// Single-precision GEMM, C = op(A) * op(B) (+ C) (+ bias), then an activation, all row-major.
//
// The structure is the GotoBLAS / BLIS one: B is packed a block of KC x NC at a time into panels
// of NR columns, A a block of MC x KC into panels of MR rows, and a 12 x 32 register-blocked
// micro-kernel (24 SIMD16 accumulators, two vector loads of B and twelve broadcasts of A per k)
// multiplies one A panel by one B panel. The loop order keeps one A panel (12 x KC floats, 12 KiB)
// in L1 while it sweeps the B block (KC x NC floats, held in L2 and L3), which suits Zen 4's
// 32 KiB L1. Constant operands (conv and dense weights) are packed once at compile
// time into `PackedMatrix`, so a run packs only the activation side. Edges are handled by
// zero-padding the packed panels and writing the partial tile through a stack buffer, except for
// panels of 4 or 8 full rows, which have exact kernels.
//
// Threads each take a rectangle of C (a range of row panels or of column panels, whichever dimension
// has more of them), pack their own operands and never synchronise: there is no barrier and no
// shared mutable state apart from disjoint parts of C and each thread's own packing buffers
// (`ThreadBuffers`).

import CCPUHints
import CQuarryKernels
import Foundation
import Quarry

/// Register tile and cache block sizes of the SGEMM.
public enum GEMMBlocking {
    /// Rows of C per micro-kernel call.
    public static let mr = 12
    /// Columns of C per micro-kernel call: two SIMD16 vectors.
    public static let nr = 32
    /// Depth of a packed block, rows of A and columns of B packed at a time: the host's
    /// (`HostBlocking`: from its cache sizes or `quarry tune --device cpu`), fixed for the
    /// process. On Zen 4 (32 KiB L1d, 1 MiB L2) KC 256 keeps the 12 x KC A panel (12 KiB) in L1,
    /// and NC 2048 lets the B block overflow L2 into L3, which still feeds the kernel fast
    /// enough: at 2048^3 NC = 2048 measured 103 GFLOP/s on one core against 84 with NC = 512.
    public static var kc: Int { current.kc }
    public static var mc: Int { current.mc }
    public static var nc: Int { current.nc }

    /// The values in force; `quarry tune --device cpu` changes them while it measures (through
    /// `withBlocking`), nothing else does.
    nonisolated(unsafe) static var current = HostBlocking.chosen.blocking

    /// Runs `body` with other blocking values (the tuner's candidates). Only GEMMs that pack at
    /// run time may run inside: a `PackedMatrix` keeps the KC it was packed with.
    public static func withBlocking<R>(_ b: HostBlocking, _ body: () throws -> R) rethrows -> R {
        let saved = current
        current = b
        defer { current = saved }
        return try body()
    }
}

/// The arithmetic of the CPU's GEMMs (and so of convolutions, dense layers and the recurrent
/// input projections): fp32, or bf16 operands with fp32 accumulation (`--precision bf16`, on hosts
/// with AVX512_BF16). Process-wide: the tool, the Python and C libraries set it from the precision
/// they are given, one per process.
public enum CPUGEMMPrecision {
    nonisolated(unsafe) static var useBF16 = false

    /// Whether this host (and the instruction-set level in use) runs the bf16 GEMM.
    public static var bf16Available: Bool { quarry_bf16_available() != 0 }

    /// The bf16 kernel in use: "amx" (tile multiply-adds, Intel from Sapphire Rapids) or
    /// "vdpbf16ps"; nil where bf16 is not available. QUARRY_CPU_AMX=0 keeps vdpbf16ps.
    public static var bf16Kernel: String? {
        !bf16Available ? nil : quarry_amx_available() != 0 ? "amx" : "vdpbf16ps"
    }

    /// Where bf16 runs on vdpbf16ps and that runs slower than the fp32 FMAs (measured once per
    /// process on one thread, about a third of a second): a note saying so with both rates, for a
    /// run asked to use bf16. The run stays in bf16 as asked (no silent change of arithmetic).
    public static let bf16SlowerThanFP32Note: String? = {
        let one = CPUThreads(count: 1)
        guard let bf16 = measureBF16PeakGFLOPS(threads: one, seconds: 0.05) else { return nil }
        let fp32 = measureFP32PeakGFLOPS(threads: one, seconds: 0.05)
        guard bf16 < fp32 else { return nil }
        return String(format: "note: bf16 runs on vdpbf16ps here, which this CPU executes at %.2fx the rate of its fp32 FMAs (%.0f against %.0f GFLOP/s on one thread): fp32 is faster on this host, and more accurate",
                      bf16 / fp32, bf16, fp32)
    }()

    /// Runs `body` with the AMX kernel on or off (the tests reach both bf16 kernels on AMX hosts).
    static func withAMX<R>(_ on: Bool, _ body: () throws -> R) rethrows -> R {
        let was = quarry_amx_enable(on ? 1 : 0)
        defer { _ = quarry_amx_enable(was) }
        return try body()
    }

    /// Sets the precision; bf16 where `bf16Available`, fp32 always. Anything else is refused.
    public static func set(_ precision: Precision) throws {
        switch precision {
        case .fp32: useBF16 = false
        case .bf16 where bf16Available: useBF16 = true
        case .bf16:
            throw QuarryError.unsupported("bf16 is not available on this CPU (it needs AVX512_BF16: Intel from Cooper Lake, AMD from Zen 4)")
        default:
            throw QuarryError.unsupported("\(precision.rawValue) is not available on the CPU (fp32, and bf16 on AVX512_BF16 hosts)")
        }
    }
}

/// What happens to each tile of C after the product is formed.
public struct GEMMEpilogue {
    public enum BiasAxis { case rows, columns }
    /// A bias of M values (one per row of C) or N values (one per column).
    public var bias: UnsafePointer<Float>?
    public var biasAxis: BiasAxis
    /// Adds the product to C's previous contents (beta = 1) instead of overwriting them.
    public var accumulate: Bool
    /// A matrix added to the result before the activation (a residual connection), with leading
    /// dimension `addendLd`; it may not alias C.
    public var addend: UnsafePointer<Float>?
    public var addendLd: Int
    public var activation: Activation?

    public init(bias: UnsafePointer<Float>? = nil, biasAxis: BiasAxis = .rows, accumulate: Bool = false,
                addend: UnsafePointer<Float>? = nil, addendLd: Int = 0, activation: Activation? = nil) {
        self.bias = bias; self.biasAxis = biasAxis; self.accumulate = accumulate
        self.addend = addend; self.addendLd = addendLd; self.activation = activation
    }
    public static var none: GEMMEpilogue { GEMMEpilogue() }
}

/// A constant operand packed once into the micro-kernel's panel layout.
///
/// Layout: the K dimension is cut into blocks of `GEMMBlocking.kc`; block b starts at
/// `b * kc * paddedOuter` and holds `paddedOuter / panel` panels of `panel x kcb` floats, element
/// (k, r) of a panel at `k * panel + r`. The outer dimension (M for A, N for B) is zero-padded to
/// a whole panel.
// @unchecked: the panels are written once while packing and only read afterwards.
public final class PackedMatrix: @unchecked Sendable {
    public enum Side { case a, b }
    public let side: Side
    /// M for an A operand, N for a B operand.
    public let outer: Int
    /// The shared dimension K.
    public let depth: Int
    let paddedOuter: Int
    let storage: UnsafeMutablePointer<Float>
    /// The KC the panels were packed with (the process's; checked at use).
    let packDepth = GEMMBlocking.kc
    /// An A operand's panels rounded to bf16 pairs once, when packed in bf16 mode (weights), so
    /// that a run does not convert them again: block k0 at k0 * paddedOuter halves, its panel o0
    /// at o0 * (kc rounded up to even) within.
    private(set) var bf16: UnsafeMutablePointer<UInt16>?
    /// The same panels as AMX rows (`quarry_pack_a_amx`), where the host multiplies bf16 on AMX.
    private(set) var amx: UnsafeMutablePointer<UInt16>?

    /// Packs op(A) of shape [m, k]: element (i, k) is `a[i * lda + k]`, or `a[k * lda + i]` if transposed.
    public convenience init(a: UnsafePointer<Float>, m: Int, k: Int, lda: Int, transposed: Bool = false) {
        self.init(side: .a, outer: m, depth: k)
        let src = DenseOperand(base: a, ld: lda, transposed: transposed)
        var k0 = 0
        while k0 < k {
            let kcb = min(GEMMBlocking.kc, k - k0)
            src.packA(i0: 0, rows: m, k0: k0, kc: kcb, into: storage + k0 * paddedOuter)
            k0 += kcb
        }
        if CPUGEMMPrecision.useBF16 {
            let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: paddedOuter * (k + 1))
            var k0 = 0
            while k0 < k {
                let kcb = min(GEMMBlocking.kc, k - k0), even = (kcb + 1) / 2 * 2
                for o0 in stride(from: 0, to: paddedOuter, by: GEMMBlocking.mr) {
                    quarry_pack_a_bf16(storage + k0 * paddedOuter + o0 * kcb, kcb, halves + k0 * paddedOuter + o0 * even)
                }
                k0 += kcb
            }
            bf16 = halves
            if quarry_amx_available() != 0 {
                // The AMX rows too: block k0 at (k0 / KC) * amxDepth * paddedOuter, panel o0 at
                // o0 * (kcb rounded up to 32) within.
                let tiles = UnsafeMutablePointer<UInt16>.allocate(capacity: paddedOuter * amxDepth * ((k + packDepth - 1) / packDepth))
                var k0 = 0
                while k0 < k {
                    let kcb = min(GEMMBlocking.kc, k - k0), rounded = (kcb + 31) / 32 * 32
                    for o0 in stride(from: 0, to: paddedOuter, by: GEMMBlocking.mr) {
                        quarry_pack_a_amx(storage + k0 * paddedOuter + o0 * kcb, kcb,
                                          tiles + (k0 / packDepth) * amxDepth * paddedOuter + o0 * rounded)
                    }
                    k0 += kcb
                }
                amx = tiles
            }
        }
    }

    /// KC rounded up to the AMX kernel's 32-k chunks.
    private var amxDepth: Int { (packDepth + 31) / 32 * 32 }

    /// Packs op(B) of shape [k, n]: element (k, j) is `b[k * ldb + j]`, or `b[j * ldb + k]` if transposed.
    public convenience init(b: UnsafePointer<Float>, k: Int, n: Int, ldb: Int, transposed: Bool = false) {
        self.init(side: .b, outer: n, depth: k)
        let src = DenseOperand(base: b, ld: ldb, transposed: transposed)
        var k0 = 0
        while k0 < k {
            let kcb = min(GEMMBlocking.kc, k - k0)
            src.packB(k0: k0, kc: kcb, j0: 0, cols: n, into: storage + k0 * paddedOuter)
            k0 += kcb
        }
    }

    private init(side: Side, outer: Int, depth: Int) {
        self.side = side; self.outer = outer; self.depth = depth
        let panel = side == .a ? GEMMBlocking.mr : GEMMBlocking.nr
        paddedOuter = (outer + panel - 1) / panel * panel
        storage = allocateFloats(max(1, paddedOuter * depth))
    }

    deinit { storage.deallocate(); bf16?.deallocate(); amx?.deallocate() }

    /// The packed block of panels starting at outer index `o0` (a panel multiple) and depth `k0`.
    @inline(__always)
    func block(o0: Int, k0: Int, kc: Int) -> UnsafePointer<Float> {
        assert(packDepth == GEMMBlocking.kc, "a packed operand used under another KC than it was packed with")
        return UnsafePointer(storage + k0 * paddedOuter + o0 * kc)
    }
}

/// One operand of `sgemm`.
public enum GEMMOperand {
    /// A row-major matrix with leading dimension `ld`, used as is or transposed.
    case matrix(UnsafePointer<Float>, ld: Int, transposed: Bool)
    case packed(PackedMatrix)
}

func allocateFloats(_ n: Int) -> UnsafeMutablePointer<Float> {
    allocateBuffer(bytes: max(n, 1) * 4).bindMemory(to: Float.self, capacity: max(n, 1))
}

/// C[m, n] (ldc) = op(A)[m, k] * op(B)[k, n] with the epilogue applied, split over `threads`.
/// A `.packed` operand must have been packed for the same side and sizes.
public func sgemm(
    m: Int, n: Int, k: Int, a: GEMMOperand, b: GEMMOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GEMMEpilogue = .none, threads: CPUThreads
) {
    switch (a, b) {
    case (.matrix(let pa, let lda, let ta), .matrix(let pb, let ldb, let tb)):
        gemmDriver(m: m, n: n, k: k, a: DenseOperand(base: pa, ld: lda, transposed: ta),
                   b: DenseOperand(base: pb, ld: ldb, transposed: tb), c: c, ldc: ldc,
                   epilogue: epilogue, threads: threads)
    case (.packed(let pa), .matrix(let pb, let ldb, let tb)):
        precondition(pa.side == .a && pa.outer == m && pa.depth == k, "packed A does not match the GEMM")
        gemmDriver(m: m, n: n, k: k, a: pa, b: DenseOperand(base: pb, ld: ldb, transposed: tb), c: c, ldc: ldc,
                   epilogue: epilogue, threads: threads)
    case (.matrix(let pa, let lda, let ta), .packed(let pb)):
        precondition(pb.side == .b && pb.outer == n && pb.depth == k, "packed B does not match the GEMM")
        gemmDriver(m: m, n: n, k: k, a: DenseOperand(base: pa, ld: lda, transposed: ta), b: pb, c: c, ldc: ldc,
                   epilogue: epilogue, threads: threads)
    case (.packed(let pa), .packed(let pb)):
        precondition(pa.side == .a && pb.side == .b && pa.outer == m && pb.outer == n && pa.depth == k && pb.depth == k,
                     "packed operands do not match the GEMM")
        gemmDriver(m: m, n: n, k: k, a: pa, b: pb, c: c, ldc: ldc,
                   epilogue: epilogue, threads: threads)
    }
}

// MARK: - Operand sources

/// Something that can produce packed A panels: either packs them or already holds them.
protocol GEMMSourceA {
    /// The packed block for rows i0..<i0+rows (i0 a multiple of MR), depth k0..<k0+kc; `scratch`
    /// is used when the source must pack.
    func blockA(i0: Int, rows: Int, k0: Int, kc: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
    var isPrepacked: Bool { get }
    /// The block in bf16 pairs where the source holds it so (weights packed in bf16 mode), else nil.
    func blockABF16(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>?
    /// The block as AMX rows where the source holds it so (weights packed in bf16 mode on an AMX
    /// host), else nil.
    func blockAAMX(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>?
}

extension GEMMSourceA {
    func blockABF16(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>? { nil }
    func blockAAMX(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>? { nil }
}

/// Something that can produce packed B panels.
protocol GEMMSourceB {
    func blockB(k0: Int, kc: Int, j0: Int, cols: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
    var isPrepacked: Bool { get }
    /// Where the micro-kernel may read B's full panels in place: element (k0 + k, j0 + j) at
    /// base[k * ld + j]; nil when B must be packed.
    func directB(k0: Int, j0: Int) -> (base: UnsafePointer<Float>, ld: Int)?
    /// Whether each row tile crosses a run of packed panels (see `sweepPanels`).
    var sweepsPackedPanels: Bool { get }
}

extension GEMMSourceB {
    func directB(k0: Int, j0: Int) -> (base: UnsafePointer<Float>, ld: Int)? { nil }
    var sweepsPackedPanels: Bool { false }
}

extension PackedMatrix: GEMMSourceA, GEMMSourceB {
    var isPrepacked: Bool { true }
    var sweepsPackedPanels: Bool { true }
    @inline(__always)
    func blockA(i0: Int, rows: Int, k0: Int, kc: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        block(o0: i0, k0: k0, kc: kc)
    }
    @inline(__always)
    func blockB(k0: Int, kc: Int, j0: Int, cols: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        block(o0: j0, k0: k0, kc: kc)
    }
    func blockABF16(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>? {
        bf16.map { UnsafePointer($0 + k0 * paddedOuter + i0 * ((kc + 1) / 2 * 2)) }
    }
    func blockAAMX(i0: Int, k0: Int, kc: Int) -> UnsafePointer<UInt16>? {
        amx.map { UnsafePointer($0 + (k0 / packDepth) * amxDepth * paddedOuter + i0 * ((kc + 31) / 32 * 32)) }
    }
}

/// A strided row-major matrix, possibly transposed.
struct DenseOperand: GEMMSourceA, GEMMSourceB {
    var sweepsPackedPanels: Bool { true }
    let base: UnsafePointer<Float>
    let ld: Int
    let transposed: Bool
    /// As B, read in place rather than packed (see `directB`).
    var inPlace = false
    var isPrepacked: Bool { false }

    func directB(k0: Int, j0: Int) -> (base: UnsafePointer<Float>, ld: Int)? {
        inPlace && !transposed ? (base + k0 * ld + j0, ld) : nil
    }

    func blockA(i0: Int, rows: Int, k0: Int, kc: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        packA(i0: i0, rows: rows, k0: k0, kc: kc, into: scratch)
        return UnsafePointer(scratch)
    }

    func blockB(k0: Int, kc: Int, j0: Int, cols: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        packB(k0: k0, kc: kc, j0: j0, cols: cols, into: scratch)
        return UnsafePointer(scratch)
    }

    /// Packs op(A)[i0..<i0+rows, k0..<k0+kc] into MR-row panels, zero-padding the last one.
    func packA(i0: Int, rows: Int, k0: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
        let mr = GEMMBlocking.mr
        var panel = 0
        while panel < rows {
            let pr = min(mr, rows - panel)
            let d = dst + panel * kc
            if transposed {
                // Element (i, k) at base[k * ld + i]: each k gives MR contiguous values.
                for kk in 0..<kc {
                    let s = base + (k0 + kk) * ld + i0 + panel
                    let dk = d + kk * mr
                    for r in 0..<pr { dk[r] = s[r] }
                    for r in pr..<mr { dk[r] = 0 }
                }
            } else if pr == mr {
                // k outer, each k's 12 values stored as two vectors. Written as scalar stores 12
                // floats apart, LLVM vectorised them into AVX-512 scatters, which Zen 4 runs
                // slowly (6% of a 2048^3 GEMM); a loop that already holds vectors is left alone.
                let s0 = base + (i0 + panel) * ld + k0
                let s1 = s0 + ld, s2 = s1 + ld, s3 = s2 + ld, s4 = s3 + ld, s5 = s4 + ld
                let s6 = s5 + ld, s7 = s6 + ld, s8 = s7 + ld, s9 = s8 + ld, s10 = s9 + ld, s11 = s10 + ld
                for kk in 0..<kc {
                    let dk = UnsafeMutableRawPointer(d + kk * mr)
                    dk.storeBytes(of: SIMD8<Float>(s0[kk], s1[kk], s2[kk], s3[kk], s4[kk], s5[kk], s6[kk], s7[kk]),
                                  as: SIMD8<Float>.self)
                    dk.storeBytes(of: SIMD4<Float>(s8[kk], s9[kk], s10[kk], s11[kk]), toByteOffset: 32,
                                  as: SIMD4<Float>.self)
                }
            } else {
                for kk in 0..<kc {
                    let dk = d + kk * mr
                    for r in 0..<pr { dk[r] = base[(i0 + panel + r) * ld + k0 + kk] }
                    for r in pr..<mr { dk[r] = 0 }
                }
            }
            panel += mr
        }
    }

    /// Packs op(B)[k0..<k0+kc, j0..<j0+cols] into NR-column panels, zero-padding the last one.
    func packB(k0: Int, kc: Int, j0: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
        let nr = GEMMBlocking.nr
        var panel = 0
        while panel < cols {
            let pc = min(nr, cols - panel)
            let d = dst + panel * kc
            if !transposed {
                // In CQuarryKernels: in Swift these copies ran as SSE in the plain build.
                quarry_pack_b(base + k0 * ld + j0 + panel, ld, kc, pc, d)
            } else if pc == nr {
                // Element (k, j) at base[j * ld + k]: k outer, each k's 32 values gathered from
                // the 32 source rows into two vectors (not 32 scalar stores, which LLVM turns
                // into AVX-512 scatters; see packA).
                let s = base + (j0 + panel) * ld + k0
                for kk in 0..<kc {
                    let t = UnsafeMutableRawPointer(d + kk * nr), c = s + kk
                    t.storeBytes(of: SIMD16<Float>(
                        c[0], c[ld], c[2 * ld], c[3 * ld], c[4 * ld], c[5 * ld], c[6 * ld], c[7 * ld],
                        c[8 * ld], c[9 * ld], c[10 * ld], c[11 * ld], c[12 * ld], c[13 * ld], c[14 * ld], c[15 * ld]),
                        as: SIMD16<Float>.self)
                    let c16 = c + 16 * ld
                    t.storeBytes(of: SIMD16<Float>(
                        c16[0], c16[ld], c16[2 * ld], c16[3 * ld], c16[4 * ld], c16[5 * ld], c16[6 * ld], c16[7 * ld],
                        c16[8 * ld], c16[9 * ld], c16[10 * ld], c16[11 * ld], c16[12 * ld], c16[13 * ld], c16[14 * ld],
                        c16[15 * ld]),
                        toByteOffset: 64, as: SIMD16<Float>.self)
                }
            } else {
                for j in 0..<pc {
                    let s = base + (j0 + panel + j) * ld + k0
                    for kk in 0..<kc { d[kk * nr + j] = s[kk] }
                }
                if pc < nr { for kk in 0..<kc { for j in pc..<nr { d[kk * nr + j] = 0 } } }
            }
            panel += nr
        }
    }
}

// MARK: - Driver

/// The blocked, threaded GEMM over any pair of operand sources (specialised per pair).
func gemmDriver<A: GEMMSourceA, B: GEMMSourceB>(
    m: Int, n: Int, k: Int, a: A, b: B, c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GEMMEpilogue, threads: CPUThreads
) {
    if m <= 0 || n <= 0 { return }
    if k <= 0 {
        // An empty sum: C keeps (or becomes zero), plus bias, then the activation.
        for i in 0..<m {
            let row = c + i * ldc
            for j in 0..<n {
                var v: Float = epilogue.accumulate ? row[j] : 0
                if let bias = epilogue.bias { v += epilogue.biasAxis == .rows ? bias[i] : bias[j] }
                if let addend = epilogue.addend { v += addend[i * epilogue.addendLd + j] }
                row[j] = v
            }
            if let act = epilogue.activation { applyActivation(act, row, count: n) }
        }
        return
    }
    let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
    let rowPanels = (m + mr - 1) / mr, colPanels = (n + nr - 1) / nr
    // Split the dimension with more panels; a thread with no panels is not started. Splitting on
    // the columns when possible keeps each thread's C rows long (better for the epilogue).
    let splitColumns = colPanels >= 2 * threads.count || colPanels >= rowPanels
    let parts = min(threads.count, splitColumns ? colPanels : rowPanels)
    threads.parallelFor(parts) { t in
        // Each thread packs into its own buffers, warm from its previous GEMM.
        ThreadBuffers.current.withPackBuffers { scratchA, scratchB in
            if splitColumns {
                let p0 = colPanels * t / parts, p1 = colPanels * (t + 1) / parts
                gemmRegion(m0: 0, m1: m, n0: p0 * nr, n1: min(n, p1 * nr), k: k, a: a, b: b, c: c, ldc: ldc,
                           epilogue: epilogue, scratchA: scratchA, scratchB: scratchB)
            } else {
                let p0 = rowPanels * t / parts, p1 = rowPanels * (t + 1) / parts
                gemmRegion(m0: p0 * mr, m1: min(m, p1 * mr), n0: 0, n1: n, k: k, a: a, b: b, c: c, ldc: ldc,
                           epilogue: epilogue, scratchA: scratchA, scratchB: scratchB)
            }
        }
    }
}

/// One thread's rectangle of C: rows m0..<m1, columns n0..<n1 (m0, n0 multiples of the panels).
@inline(__always)
func gemmRegion<A: GEMMSourceA, B: GEMMSourceB>(
    m0: Int, m1: Int, n0: Int, n1: Int, k: Int, a: A, b: B, c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GEMMEpilogue, scratchA: UnsafeMutablePointer<Float>, scratchB: UnsafeMutablePointer<Float>
) {
    let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
    let fused = FusedClamp(epilogue.activation)
    var jc = n0
    while jc < n1 {
        let ncb = min(GEMMBlocking.nc, n1 - jc)
        var pc = 0
        while pc < k {
            let kcb = min(GEMMBlocking.kc, k - pc)
            let first = pc == 0, last = pc + kcb == k
            // B read in place where the source allows it (only a partial last panel is packed),
            // otherwise packed block by block.
            let direct = b.directB(k0: pc, j0: jc)
            let fullCols = ncb / nr * nr
            let bBlock = direct == nil ? b.blockB(k0: pc, kc: kcb, j0: jc, cols: ncb, scratch: scratchB)
                : fullCols < ncb ? b.blockB(k0: pc, kc: kcb, j0: jc + fullCols, cols: ncb - fullCols, scratch: scratchB)
                : UnsafePointer(scratchB)
            if CPUGEMMPrecision.useBF16 {
                gemmBlockBF16(m0: m0, m1: m1, jc: jc, ncb: ncb, pc: pc, kcb: kcb, first: first, last: last, a: a,
                              direct: direct, bBlock: bBlock, c: c, ldc: ldc, epilogue: epilogue, fused: fused,
                              scratchA: scratchA)
                pc += kcb
                continue
            }
            var ic = m0
            while ic < m1 {
                let mcb = min(GEMMBlocking.mc, m1 - ic)
                let aBlock = a.blockA(i0: ic, rows: mcb, k0: pc, kc: kcb, scratch: scratchA)
                let sweep = sweepPanels(direct: direct != nil, packedSweeps: b.sweepsPackedPanels, first: first, last: last, kcb: kcb)
                @inline(__always)
                func runTile(_ ir: Int, _ jr: Int) {
                    let cols = min(nr, ncb - jr)
                    let j = jc + jr
                    let (bp, bStride) = bPanel(jr, cols: cols, kc: kcb, direct: direct, bBlock: bBlock)
                    let rows = min(mr, mcb - ir)
                    let ap = aBlock + ir * kcb
                    let i = ic + ir
                    let tile = tileEpilogue(epilogue, first: first, last: last, fused: fused, i: i, j: j)
                    let ct = c + i * ldc + j
                    // The tile's residual rows, and its output lines when this is their first
                    // write (one depth block: a 1x1 convolution's), asked for while the
                    // micro-kernel runs its K loop: cold at the store, they stalled it.
                    // ResNet-50 batch 8: its 1x1 layers with a residual 81.6 -> 78.6 ms.
                    if last, let addend = tile.addend {
                        for r in 0..<rows {
                            quarry_prefetch_for_read(addend + r * tile.addendLd)
                            quarry_prefetch_for_read(addend + r * tile.addendLd + 16)
                        }
                    }
                    if first && last && !epilogue.accumulate {
                        for r in 0..<rows {
                            quarry_prefetch_for_write(ct + r * ldc)
                            quarry_prefetch_for_write(ct + r * ldc + 16)
                        }
                    }
                    // A B panel read in place is K rows of far-apart planes, more streams
                    // than the hardware prefetcher follows: the next panel's rows are asked
                    // for while this one's row tiles run, a share of them per tile.
                    if let direct, jr + 2 * nr <= fullCols {
                        if sweep == 1 {
                            let next = direct.base + jr + nr, tiles = (mcb + mr - 1) / mr, t = ir / mr
                            for kk in (kcb * t / tiles)..<(kcb * (t + 1) / tiles) {
                                quarry_prefetch_for_read(next + kk * direct.ld)
                                quarry_prefetch_for_read(next + kk * direct.ld + 16)
                            }
                        } else if ir == 0 {
                            // The first row tile of a run brings its panels into L2 for the
                            // rest: the next panel is asked for while this one computes.
                            let next = direct.base + jr + nr
                            for kk in 0..<kcb {
                                quarry_prefetch_for_read(next + kk * direct.ld)
                                quarry_prefetch_for_read(next + kk * direct.ld + 16)
                            }
                        }
                    }
                    if cols == nr || cols == 16 {
                        gemmTile(rows: rows, cols: cols, kc: kcb, a: ap, b: bp, bStride: bStride, c: ct, ldc: ldc, tile)
                    } else {
                        edgeTile(c: ct, ldc: ldc, rows: rows, cols: cols, tile) { t, width, plain in
                            quarry_gemm_tile(Int32(rows), Int32(width), kcb, ap, bp, bStride, t, nr, &plain)
                        }
                    }
                    if last, fused == nil, let act = epilogue.activation {
                        for r in 0..<rows { applyActivation(act, c + (i + r) * ldc + j, count: cols) }
                    }
                }
                // Runs of `sweep` B panels: within a run, each row tile crosses all its panels
                // (with runs of one panel, each panel meets every row tile in turn).
                var run0 = 0
                while run0 < ncb {
                    let runEnd = min(ncb, run0 + sweep * nr)
                    var ir = 0
                    while ir < mcb {
                        var jr = run0
                        while jr < runEnd { runTile(ir, jr); jr += nr }
                        ir += mr
                    }
                    run0 = runEnd
                }
                ic += mcb
            }
            pc += kcb
        }
        jc += ncb
    }
}

/// One K block of the rectangle in bf16: the B block's panels and each A block's panels are
/// rounded to bf16 pairs once (B per K block, A per row block), then the bf16 micro-kernel runs
/// every tile with the same epilogues as the fp32 path.
func gemmBlockBF16<A: GEMMSourceA>(
    m0: Int, m1: Int, jc: Int, ncb: Int, pc: Int, kcb: Int, first: Bool, last: Bool, a: A,
    direct: (base: UnsafePointer<Float>, ld: Int)?, bBlock: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
    ldc: Int, epilogue: GEMMEpilogue, fused: FusedClamp?, scratchA: UnsafeMutablePointer<Float>
) {
    if quarry_amx_available() != 0 {
        gemmBlockAMX(m0: m0, m1: m1, jc: jc, ncb: ncb, pc: pc, kcb: kcb, first: first, last: last, a: a,
                     direct: direct, bBlock: bBlock, c: c, ldc: ldc, epilogue: epilogue, fused: fused, scratchA: scratchA)
        return
    }
    let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
    let depth = (kcb + 1) / 2 * 2
    ThreadBuffers.current.withBF16Buffers { aBF, bBF in
        packBlockBBF16(ncb: ncb, kcb: kcb, depth: depth, direct: direct, bBlock: bBlock, into: bBF)
        var ic = m0
        while ic < m1 {
            let mcb = min(GEMMBlocking.mc, m1 - ic)
            let aHalves = blockAInBF16Layout(a, prepacked: a.blockABF16(i0: ic, k0: pc, kc: kcb), ic: ic, mcb: mcb, pc: pc,
                                             kcb: kcb, depth: depth, scratchA: scratchA, into: aBF) {
                quarry_pack_a_bf16($0, $1, $2)
            }
            var ir = 0
            while ir < mcb {
                let rows = min(mr, mcb - ir), i = ic + ir
                let ap = aHalves + (ir / mr) * depth * mr
                var jr = 0
                while jr < ncb {
                    let cols = min(nr, ncb - jr), j = jc + jr
                    let tile = tileEpilogue(epilogue, first: first, last: last, fused: fused, i: i, j: j)
                    let bp = UnsafePointer(bBF + (jr / nr) * depth * nr)
                    let ct = c + i * ldc + j
                    if cols == nr || cols == 16 {
                        var ce = tile.c
                        quarry_gemm_tile_bf16(Int32(rows), Int32(cols), kcb, ap, bp, ct, ldc, &ce)
                    } else {
                        edgeTile(c: ct, ldc: ldc, rows: rows, cols: cols, tile) { t, width, plain in
                            quarry_gemm_tile_bf16(Int32(rows), Int32(width), kcb, ap, bp, t, nr, &plain)
                        }
                    }
                    if last, fused == nil, let act = epilogue.activation {
                        for r in 0..<rows { applyActivation(act, c + (i + r) * ldc + j, count: cols) }
                    }
                    jr += nr
                }
                ir += mr
            }
            ic += mcb
        }
    }
}

/// gemmBlockBF16 on AMX tiles: B's panels converted to bf16 pairs (padded to whole 32-k chunks),
/// A's panels as AMX rows (weights converted when packed), then 24 x 32 blocks of C, two A panels
/// by one B panel, each finished with the fp32 epilogue.
func gemmBlockAMX<A: GEMMSourceA>(
    m0: Int, m1: Int, jc: Int, ncb: Int, pc: Int, kcb: Int, first: Bool, last: Bool, a: A,
    direct: (base: UnsafePointer<Float>, ld: Int)?, bBlock: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
    ldc: Int, epilogue: GEMMEpilogue, fused: FusedClamp?, scratchA: UnsafeMutablePointer<Float>
) {
    let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
    let chunks = (kcb + 31) / 32, depth = chunks * 32
    ThreadBuffers.current.withBF16Buffers { aBF, bBF in
        packBlockBBF16(ncb: ncb, kcb: kcb, depth: depth, direct: direct, bBlock: bBlock, into: bBF)
        quarry_amx_begin()
        var ic = m0
        while ic < m1 {
            let mcb = min(GEMMBlocking.mc, m1 - ic)
            let aTiles = blockAInBF16Layout(a, prepacked: a.blockAAMX(i0: ic, k0: pc, kc: kcb), ic: ic, mcb: mcb, pc: pc,
                                            kcb: kcb, depth: depth, scratchA: scratchA, into: aBF) {
                quarry_pack_a_amx($0, $1, $2)
            }
            var ir = 0
            while ir < mcb {
                let rows = min(2 * mr, mcb - ir), i = ic + ir
                let a0 = aTiles + (ir / mr) * depth * mr
                // One panel left: the second A tile repeats the first and its rows are not stored.
                let a1 = rows > mr ? a0 + depth * mr : a0
                var jr = 0
                while jr < ncb {
                    let cols = min(nr, ncb - jr), j = jc + jr
                    var tile = tileEpilogue(epilogue, first: first, last: last, fused: fused, i: i, j: j).c
                    quarry_amx_tile(Int32(rows), Int32(cols), chunks, a0, a1, bBF + (jr / nr) * depth * nr,
                                    c + i * ldc + j, ldc, &tile)
                    if last, fused == nil, let act = epilogue.activation {
                        for r in 0..<rows { applyActivation(act, c + (i + r) * ldc + j, count: cols) }
                    }
                    jr += nr
                }
                ir += 2 * mr
            }
            ic += mcb
        }
        quarry_amx_end()
    }
}

/// The B block's panels in bf16 pairs (`quarry_pack_b_bf16`), panel p at dst + p * depth * NR
/// halves: `depth` is kcb rounded up to pairs, or to the AMX kernel's whole 32-k chunks, whose
/// pairs past kcb are zero.
@inline(__always)
func packBlockBBF16(ncb: Int, kcb: Int, depth: Int, direct: (base: UnsafePointer<Float>, ld: Int)?,
                    bBlock: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>) {
    let nr = GEMMBlocking.nr
    let written = (kcb + 1) / 2 * 2 * nr
    var jr = 0
    while jr < ncb {
        let cols = min(nr, ncb - jr)
        let (bp, bStride) = bPanel(jr, cols: cols, kc: kcb, direct: direct, bBlock: bBlock)
        let panel = dst + (jr / nr) * depth * nr
        quarry_pack_b_bf16(bp, bStride, kcb, cols, panel)
        (panel + written).initialize(repeating: 0, count: depth * nr - written)
        jr += nr
    }
}

/// A's block (rows ic ..< ic + mcb, depth pc ..< pc + kcb) in a bf16 layout: `prepacked`, the
/// source's own (weights converted when they were packed), or else converted now from the fp32
/// panels by `pack`, panel by panel, depth * MR halves apart in `buffer`.
@inline(__always)
func blockAInBF16Layout<A: GEMMSourceA>(
    _ a: A, prepacked: UnsafePointer<UInt16>?, ic: Int, mcb: Int, pc: Int, kcb: Int, depth: Int,
    scratchA: UnsafeMutablePointer<Float>, into buffer: UnsafeMutablePointer<UInt16>,
    pack: (UnsafePointer<Float>, Int, UnsafeMutablePointer<UInt16>) -> Void
) -> UnsafePointer<UInt16> {
    if let prepacked { return prepacked }
    let mr = GEMMBlocking.mr
    let aBlock = a.blockA(i0: ic, rows: mcb, k0: pc, kc: kcb, scratch: scratchA)
    var ir = 0
    while ir < mcb {
        pack(aBlock + ir * kcb, kcb, buffer + (ir / mr) * depth * mr)
        ir += mr
    }
    return UnsafePointer(buffer)
}

/// The epilogue of the tile at (i, j) in a K block (`first`, `last`) of a GEMM with `epilogue`.
@inline(__always)
func tileEpilogue(_ epilogue: GEMMEpilogue, first: Bool, last: Bool, fused: FusedClamp?, i: Int, j: Int) -> TileEpilogue {
    var tile = TileEpilogue(loadC: !first || epilogue.accumulate, rowBias: nil, colBias: nil, clamp: last ? fused : nil)
    if last, let addend = epilogue.addend {
        tile.addend = addend + i * epilogue.addendLd + j
        tile.addendLd = epilogue.addendLd
    }
    if first, let bias = epilogue.bias {
        if epilogue.biasAxis == .rows { tile.rowBias = bias + i } else { tile.colBias = bias + j }
    }
    return tile
}

/// relu and clip are applied in registers before the store; other activations run on the tile
/// after it is written.
struct FusedClamp: Equatable {
    var lo: Float, hi: Float
    init?(_ act: Activation?) {
        switch act {
        case .relu?: lo = 0; hi = .infinity
        case .clip(let l, let h)?: lo = l; hi = h
        default: return nil
        }
    }
}

struct TileEpilogue {
    var loadC: Bool
    var rowBias: UnsafePointer<Float>?
    var colBias: UnsafePointer<Float>?
    var clamp: FusedClamp?
    /// The tile's corner in the addend matrix (added before the clamp), and that matrix's ld.
    var addend: UnsafePointer<Float>? = nil
    var addendLd = 0

    /// The same for CQuarryKernels' micro-kernels.
    var c: quarry_tile_epilogue {
        quarry_tile_epilogue(
            load_c: loadC ? 1 : 0, clamp: clamp == nil ? 0 : 1, lo: clamp?.lo ?? 0, hi: clamp?.hi ?? 0,
            row_bias: rowBias, col_bias: colBias, addend: addend, addend_ld: addendLd)
    }
}

/// A tile of `rows` x `cols` (cols 16 or 32) through the micro-kernel of the instruction-set level
/// in use (CQuarryKernels: AVX-512, AVX2 + FMA or the baseline, chosen at run time), epilogue
/// included.
@inline(__always)
func gemmTile(rows: Int, cols: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bStride: Int,
              c: UnsafeMutablePointer<Float>, ldc: Int, _ e: TileEpilogue) {
    var ce = e.c
    quarry_gemm_tile(Int32(rows), Int32(cols), kc, a, b, bStride, c, ldc, &ce)
}

/// A tile of another width: `kernel` writes the tile's first 16 or 32 columns (`width`) into a
/// stack tile of 32 floats a row, with the plain epilogue it is given, and the valid part is
/// merged into C with the tile's epilogue.
@inline(never)
func edgeTile(c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, cols: Int, _ e: TileEpilogue,
              _ kernel: (_ t: UnsafeMutablePointer<Float>, _ width: Int, _ plain: inout quarry_tile_epilogue) -> Void) {
    let mr = GEMMBlocking.mr, nr = GEMMBlocking.nr
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: mr * nr / 16) { buf in
        let t = UnsafeMutableRawPointer(buf.baseAddress!).assumingMemoryBound(to: Float.self)
        // At most 16 columns (MobileNet's and ResNet's 7x7 layers, 4 of 196 stacked columns): the
        // half-width kernel, half the multiply-adds.
        var plain = TileEpilogue(loadC: false, rowBias: nil, colBias: nil, clamp: nil).c
        kernel(t, cols <= 16 ? 16 : 32, &plain)
        // The merge runs in vectors, a partial one for the last columns: written per element it
        // was most of an edge tile's time where K is small (MobileNet's 1x1 layers).
        let clip = e.clamp.map(Clip.init)
        for r in 0..<rows {
            let dst = c + r * ldc, src = t + r * nr
            var j = 0
            while j < cols {
                let n = min(16, cols - j)
                var v = load16(src + j)
                if e.loadC { v += n == 16 ? load16(dst + j) : loadPartial(dst + j, n) }
                if let rb = e.rowBias { v += SIMD16<Float>(repeating: rb[r]) }
                if let cb = e.colBias { v += n == 16 ? load16(cb + j) : loadPartial(cb + j, n) }
                if let add = e.addend {
                    let row = add + r * e.addendLd + j
                    v += n == 16 ? load16(row) : loadPartial(row, n)
                }
                if let clip { v = clip(v) }
                if n == 16 { store16(v, dst + j) } else { storePartial(v, dst + j, n) }
                j += 16
            }
        }
    }
}

/// How many B panels a row tile runs across before the next row tile starts, for one K block.
/// With runs of one panel, each B panel stays in cache while every row tile of the A block passes
/// over it. With longer runs each row tile's A panel stays in L1 while it crosses the run's B
/// panels, held in L2 (the run is the panels whose K rows fill a quarter of it):
/// - a B read in place in one K block (a 1x1 convolution's image planes, K up to KC): each row
///   tile then writes C as MR long rows instead of 12 x 32 floats in each of all M output planes
///   per panel, which the prefetchers cannot follow. ResNet-50 batch 8 on the Emerald Rapids
///   host, per-layer minima alternated over 4 rounds: 64->256 at 56x56 4.2-4.4 -> 3.3-3.4 ms,
///   128->512 at 28x28 3.1-3.2 -> 2.8-2.9 ms, the layers with K = 256 level; with K over KC,
///   level, so those keep runs of one;
/// - packed matrices (dense layers, matrix products: `sweepsPackedPanels`): SGEMM 2048^3 on one
///   thread 141.8-149.5 -> 153.2-153.7 GFLOP/s alternated. Not the Winograd products (VGG16's
///   512-channel 3x3 layers went 15% slower) nor the im2col panels (level).
@inline(__always)
func sweepPanels(direct: Bool, packedSweeps: Bool, first: Bool, last: Bool, kcb: Int) -> Int {
    if direct ? !(first && last) : !packedSweeps { return 1 }
    return max(1, sweepBudgetBytes / (kcb * GEMMBlocking.nr * MemoryLayout<Float>.size))
}

/// A quarter of the host's L2 (256 KiB where unknown), read once per process.
let sweepBudgetBytes: Int = (HostBlocking.cacheSizes().l2 ?? 1 << 20) / 4

/// Where the micro-kernel reads column panel `jr` (of `cols` columns) of a K block of B: in place
/// when the source allows it and the panel is full, else in the packed block (a stride of NR).
@inline(__always)
func bPanel(_ jr: Int, cols: Int, kc: Int, direct: (base: UnsafePointer<Float>, ld: Int)?,
            bBlock: UnsafePointer<Float>) -> (UnsafePointer<Float>, Int) {
    let nr = GEMMBlocking.nr
    if let direct { return cols == nr ? (direct.base + jr, direct.ld) : (bBlock, nr) }
    return (bBlock + jr * kc, nr)
}
