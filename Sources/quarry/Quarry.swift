// The quarry command-line tool. One file a subcommand; shared options live in Options.swift.

import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

@main
struct QuarryTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarry",
        abstract: "Fast deep-learning feature extraction on CPUs and OpenCL devices.",
        version: quarryVersion,
        subcommands: [ExtractCommand.self, RunCommand.self, BenchCommand.self, DevicesCommand.self, ModelsCommand.self, TuneCommand.self,
                      TestOpsCommand.self, TokenizeCommand.self]
    )

    static func main() {
        keepLargeBlocksOnTheHeap()
        main(nil)
    }
}

/// glibc serves blocks above a threshold (128 KiB, raised as such blocks are freed, at most 32 MiB)
/// from fresh mappings and gives the heap's free top back to the system: every decoded image
/// (half a megabyte at 500x375) and its resize buffers then cost page faults and zeroing, which
/// measured 544 minor faults an image and 14-20% of one core's decode + preprocess time (bench:
/// decode-only runs with and without GLIBC_TUNABLES set this way). The tool keeps blocks up to
/// 32 MiB on the heap and trims it only past 256 MiB free; the library leaves malloc alone.
/// mallopt is looked up at run time: Swift's Glibc module leaves <malloc.h> out, and a C library
/// without it (musl) simply keeps its defaults. The parameter numbers are glibc's <malloc.h>.
private func keepLargeBlocksOnTheHeap() {
    #if canImport(Glibc)
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
    let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
    let trimThreshold: Int32 = -1, mmapThreshold: Int32 = -3
    _ = mallopt(mmapThreshold, 32 << 20)
    _ = mallopt(trimThreshold, 256 << 20)
    #endif
}

/// The tool's version (`quarry --version`, the bundle's file name).
let quarryVersion = "0.1.0"
