// Kernel source texts: embedded at build time from Kernels/*.cl (see Plugins/EmbedKernels), or
// read from the folder QUARRY_KERNELS_DIR names, so that a kernel can be edited and rerun without
// rebuilding Swift. Every program is common.cl (shared helpers: activations, index maths) followed
// by its family's file.

import Foundation
import Quarry

public enum KernelSources {
    /// The folder that overrides the embedded kernels, if QUARRY_KERNELS_DIR is set and non-empty.
    public static var overrideDirectory: String? {
        guard let d = ProcessInfo.processInfo.environment["QUARRY_KERNELS_DIR"], !d.isEmpty else { return nil }
        return d
    }

    /// The names of the embedded kernel files (without ".cl").
    public static var families: [String] { EmbeddedKernels.sources.keys.filter { !$0.contains(".") }.sorted() }

    /// A data file shipped in Kernels/ beside the kernels (the tuned-parameter table).
    static func data(_ fileName: String) -> String? { EmbeddedKernels.sources[fileName] }

    /// The text of one kernel file, from the override folder or the embedded copy.
    public static func file(_ family: String) throws -> String {
        if let dir = overrideDirectory {
            let path = (dir as NSString).appendingPathComponent("\(family).cl")
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw QuarryError.file(path: path, message: "cannot read kernel file (QUARRY_KERNELS_DIR is set): \(error.localizedDescription)")
            }
        }
        guard let text = EmbeddedKernels.sources[family] else {
            throw QuarryError.invalidArgument("no kernel file '\(family).cl' is embedded (have: \(families.joined(separator: ", ")))")
        }
        return text
    }

    /// The full program text for a family: the shared helpers, then the family's kernels.
    public static func program(_ family: String) throws -> String {
        let common = try file("common")
        return family == "common" ? common : common + "\n#line 1\n" + (try file(family))
    }
}

/// 64-bit FNV-1a: the cache's source hash and entry checksum (not cryptographic; the header also
/// holds the full key, so a collision is detected as a stale entry).
func fnv1a64<S: Sequence>(_ bytes: S, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = seed
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

func fnv1a64(_ data: UnsafeRawBufferPointer) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
