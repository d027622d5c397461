// The GEMM's cache blocking for this host: KC (depth of a packed block, sized so the A panel stays
// in L1 while it sweeps B), MC (rows of A packed at a time, an A block in L2) and NC (columns of B
// packed at a time, a B block in L2 / L3). Derived from the host's cache sizes, or measured by
// `quarry tune --device cpu` and stored per host beside the OpenCL tuning files; QUARRY_CPU_BLOCKING
// =KC,MC,NC forces values. The register tile (12 x 32) is the kernels' own and does not change.

import Foundation
import Quarry

public struct HostBlocking: Codable, Hashable, Sendable, CustomStringConvertible {
    public var kc: Int
    public var mc: Int
    public var nc: Int

    public init(kc: Int, mc: Int, nc: Int) {
        self.kc = kc; self.mc = mc; self.nc = nc
    }

    public var description: String { "kc \(kc), mc \(mc), nc \(nc)" }

    /// Whether the values are usable: multiples of the panels, within sane bounds.
    public var isValid: Bool {
        (16...2048).contains(kc) && kc % 2 == 0 && mc >= GEMMBlocking.mr && mc % GEMMBlocking.mr == 0 && mc <= 4096
            && nc >= GEMMBlocking.nr && nc % GEMMBlocking.nr == 0 && nc <= 16384
    }

    /// Per-core data cache sizes in bytes (L1d, L2, L3) from sysfs, nil where unknown.
    public static func cacheSizes() -> (l1: Int?, l2: Int?, l3: Int?) {
        var l1: Int?, l2: Int?, l3: Int?
        for index in 0..<8 {
            let dir = "/sys/devices/system/cpu/cpu0/cache/index\(index)/"
            guard let level = read(dir + "level").flatMap(Int.init), let type = read(dir + "type"),
                  let sizeText = read(dir + "size") else { continue }
            guard type == "Data" || type == "Unified" else { continue }
            var size = sizeText
            var scale = 1
            if size.hasSuffix("K") { scale = 1024; size.removeLast() } else if size.hasSuffix("M") { scale = 1 << 20; size.removeLast() }
            guard let n = Int(size) else { continue }
            switch level {
            case 1: l1 = n * scale
            case 2: l2 = n * scale
            case 3: l3 = n * scale
            default: break
            }
        }
        return (l1, l2, l3)
    }

    private static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// From the cache sizes: the 12-row A panel (48 bytes per k) in 3/8 of L1, an MC x KC block of A
    /// in a quarter of L2, and NC = 2048 (measured best on Zen 4; the tuner tries others). Without
    /// sysfs: Zen 4's figures (32 KiB L1d, 1 MiB L2), which gave KC 256 and MC 240 by measurement.
    public static func derived(l1: Int?, l2: Int?) -> HostBlocking {
        let l1 = l1 ?? 32 * 1024, l2 = l2 ?? 1 << 20
        let kc = min(512, max(128, l1 * 3 / 8 / (4 * GEMMBlocking.mr) / 16 * 16))
        let mc = min(960, max(96, l2 / 4 / (4 * kc) / GEMMBlocking.mr * GEMMBlocking.mr))
        return HostBlocking(kc: kc, mc: mc, nc: 2048)
    }

    /// What identifies the host for a stored measurement: CPU model, kernel level, cache sizes.
    public static var hostKey: String {
        let c = cacheSizes()
        return "\(CPUDevice.modelName()) | \(CPUInstructionSet.active) | L1 \(c.l1 ?? 0) L2 \(c.l2 ?? 0) L3 \(c.l3 ?? 0)"
    }

    /// The stored measurement's file, in the tuning folder beside the OpenCL tuner's
    /// (`CacheLocation.tuning`); nil when the cache is off.
    public static var file: URL? {
        let name = "cpu-" + String(CPUDevice.modelName().map { $0.isLetter || $0.isNumber ? $0 : "_" }) + ".json"
        return CacheLocation.tuning?.appendingPathComponent(name)
    }

    /// A stored measurement: the host's key and the winner.
    public struct Stored: Codable {
        public var key: String
        public var blocking: HostBlocking
        public var gflops: Double
    }

    /// The blocking in force and where it came from, decided once per process.
    public static let chosen: (blocking: HostBlocking, source: String) = {
        let env = ProcessInfo.processInfo.environment
        if let forced = env["QUARRY_CPU_BLOCKING"], !forced.isEmpty {
            let v = forced.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if v.count == 3, HostBlocking(kc: v[0], mc: v[1], nc: v[2]).isValid {
                return (HostBlocking(kc: v[0], mc: v[1], nc: v[2]), "QUARRY_CPU_BLOCKING")
            }
            FileHandle.standardError.write(Data("quarry: QUARRY_CPU_BLOCKING='\(forced)' ignored: it must be KC,MC,NC with KC even in 16...2048, MC a multiple of 12, NC a multiple of 32\n".utf8))
        }
        if let url = file, let data = FileManager.default.contents(atPath: url.path),
           let s = try? JSONDecoder().decode(Stored.self, from: data), s.key == hostKey, s.blocking.isValid {
            return (s.blocking, "measured by quarry tune (\(url.path))")
        }
        let c = cacheSizes()
        return (derived(l1: c.l1, l2: c.l2), "derived from the cache sizes (`quarry tune --device cpu` measures this host's best)")
    }()
}
