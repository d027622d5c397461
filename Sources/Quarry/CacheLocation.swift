// Where Quarry keeps what it measures or compiles between runs: OpenCL program binaries in
// `kernels`, tuning results (OpenCL GEMM schedules, the CPU GEMM's blocking) in `tuning` beside it.
// QUARRY_CACHE_DIR names the kernels folder ("off" or empty: no disk cache at all); otherwise
// $XDG_CACHE_HOME/quarry or ~/.cache/quarry holds both.

import Foundation

public enum CacheLocation {
    /// The OpenCL program binaries' folder, or nil when the cache is off.
    public static var programs: URL? {
        let env = ProcessInfo.processInfo.environment
        if let d = env["QUARRY_CACHE_DIR"] {
            return d.isEmpty || d == "off" ? nil : URL(fileURLWithPath: d)
        }
        let home = env["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return home.appendingPathComponent("quarry/kernels")
    }

    /// The tuning results' folder (beside the programs'), or nil when the cache is off.
    public static var tuning: URL? { programs?.deletingLastPathComponent().appendingPathComponent("tuning") }
}
