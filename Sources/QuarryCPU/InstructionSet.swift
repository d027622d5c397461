// Which x86-64 level's kernel variants run. The hottest loops (GEMM micro-kernel, the recurrent
// product and LSTM cell, the peak loop) live in CQuarryKernels, compiled once per level with
// per-function target attributes and chosen at run time from CPUID, so a plain
// `swift build -c release` runs AVX-512 code on a host that has it and still runs on one that has not.

import CQuarryKernels

public enum CPUInstructionSet: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// x86-64 baseline (SSE2), or any other architecture: the compiler's default target.
    case baseline = 0
    /// x86-64-v3: AVX2 and FMA.
    case avx2 = 1
    /// x86-64-v4: AVX-512 F/BW/DQ/VL.
    case avx512 = 2

    /// The best level this host's CPU and operating system support.
    public static var host: CPUInstructionSet { CPUInstructionSet(rawValue: Int(quarry_host_isa())) ?? .baseline }

    /// The level in use: the host's, or a lower one asked for with QUARRY_CPU_ISA=avx2|baseline
    /// (read once, at the first kernel call) or `select`.
    public static var active: CPUInstructionSet { CPUInstructionSet(rawValue: Int(quarry_active_isa())) ?? .baseline }

    /// The levels this host can run, lowest first.
    public static var available: [CPUInstructionSet] { allCases.filter { $0.rawValue <= host.rawValue } }

    /// Uses `level`'s kernels from now on (at most the host's level); returns the level in force.
    @discardableResult
    public static func select(_ level: CPUInstructionSet) -> CPUInstructionSet {
        CPUInstructionSet(rawValue: Int(quarry_select_isa(Int32(level.rawValue)))) ?? .baseline
    }

    /// Runs `body` under every level the host supports, then restores the level that was in force:
    /// how the tests check each variant against the reference on one machine.
    public static func forEachAvailable(_ body: (CPUInstructionSet) throws -> Void) rethrows {
        let previous = active
        defer { select(previous) }
        for level in available {
            select(level)
            try body(level)
        }
    }

    /// "avx512", "avx2" or "baseline" (the names QUARRY_CPU_ISA takes).
    public var description: String { String(cString: quarry_isa_name(Int32(rawValue))) }
}
