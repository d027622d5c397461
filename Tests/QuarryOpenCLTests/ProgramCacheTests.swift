import Foundation
import Quarry
@testable import QuarryOpenCL
import XCTest

final class ProgramCacheTests: XCTestCase {
    var directory: URL!
    let log = LogCollector()

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-cache-test-\(UUID().uuidString)")
        OpenCLLog.setHandler { [log] in log.append($0) }
    }

    override func tearDown() {
        OpenCLLog.setHandler { FileHandle.standardError.write(Data("quarry opencl: \($0)\n".utf8)) }
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// The one entry file in the cache folder.
    func entry() throws -> URL {
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "clbin" }
        XCTAssertEqual(files.count, 1, "\(files)")
        return try XCTUnwrap(files.first)
    }

    /// Builds the pool program through a fresh cache (a new process, as far as the cache knows)
    /// and checks that it runs.
    func freshBuild(_ device: OpenCLDevice) throws -> ProgramCache.Statistics {
        let cache = ProgramCache(device: device, directory: directory)
        let program = try cache.program("pool", options: ["-DIS_MAX=1"])
        XCTAssertNotNil(program)
        _ = try cache.kernel("pool", "global_pool", options: ["-DIS_MAX=1"])
        return cache.statistics
    }

    func testColdThenWarmThenDamagedEntries() throws {
        let device = try testDevice()
        var s = try freshBuild(device)
        XCTAssertEqual(s.builtFromSource, 1)
        XCTAssertEqual(s.loadedFromDisk, 0)
        let url = try entry()
        let good = try Data(contentsOf: url)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: directory.path).contains { $0.hasSuffix(".tmp") })

        s = try freshBuild(device)
        XCTAssertEqual(s.loadedFromDisk, 1, "the second run compiled again")
        XCTAssertEqual(s.builtFromSource, 0)

        let damaged: [(String, Data)] = [
            ("truncated", good.prefix(good.count / 2)),
            ("truncated header", good.prefix(10)),
            ("empty", Data()),
            ("flipped binary byte", { var d = good; d[d.count - 7] ^= 0x5A; return d }()),
            ("not an entry", Data("garbage that is not a cache entry at all".utf8)),
            ("padded", good + Data([1, 2, 3])),
        ]
        for (what, bytes) in damaged {
            try bytes.write(to: url)
            let before = log.all.count
            s = try freshBuild(device)
            XCTAssertEqual(s.rejectedEntries, 1, what)
            XCTAssertEqual(s.builtFromSource, 1, what)
            XCTAssertGreaterThan(log.all.count, before, "\(what) was not logged")
            // The rebuilt entry is whole again.
            XCTAssertEqual(try freshBuild(device).loadedFromDisk, 1, what)
        }

        // An entry written for another key (another driver, say) under this name is stale.
        let key = "quarry OpenCL program v1\nkernel: pool\ndriver: some other driver"
        try ProgramCache.writeEntry(url, key: key, binary: [1, 2, 3, 4])
        s = try freshBuild(device)
        XCTAssertEqual(s.rejectedEntries, 1)
        XCTAssertTrue(log.all.last?.contains("stale") ?? false, "\(log.all.last ?? "")")
    }

    func testReadEntryRejectsBadChecksum() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-entry-\(UUID().uuidString).clbin")
        defer { try? FileManager.default.removeItem(at: url) }
        try ProgramCache.writeEntry(url, key: "k", binary: Array(repeating: 7, count: 100))
        guard case .success(let b) = ProgramCache.readEntry(url, key: "k") else { return XCTFail("valid entry rejected") }
        XCTAssertEqual(b.count, 100)
        var data = try Data(contentsOf: url)
        data[data.count - 1] = 8
        try data.write(to: url)
        guard case .failure(let why) = ProgramCache.readEntry(url, key: "k") else { return XCTFail("corrupt entry accepted") }
        XCTAssertTrue(why.message.contains("checksum"))
    }

    /// QUARRY_KERNELS_DIR replaces the embedded kernels; a kernel that does not compile throws
    /// an error with the compiler's log and the kernel's name.
    func testKernelsDirectoryOverrideAndBuildLog() throws {
        let device = try testDevice()
        let dir = directory.appendingPathComponent("kernels")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for family in KernelSources.families {
            try KernelSources.file(family).write(to: dir.appendingPathComponent("\(family).cl"), atomically: true, encoding: .utf8)
        }
        try "__kernel void broken(__global float* x) { x[0] = undefined_name; }\n"
            .write(to: dir.appendingPathComponent("pool.cl"), atomically: true, encoding: .utf8)
        setenv("QUARRY_KERNELS_DIR", dir.path, 1)
        defer { unsetenv("QUARRY_KERNELS_DIR") }
        XCTAssertTrue(try KernelSources.file("pool").contains("broken"))
        let cache = ProgramCache(device: device, directory: nil)
        do {
            _ = try cache.program("pool")
            XCTFail("a broken kernel built")
        } catch let e as OpenCLBuildError {
            XCTAssertEqual(e.kernel, "pool.cl")
            XCTAssertTrue(e.log.contains("undefined_name"), e.log)
        }
        unsetenv("QUARRY_KERNELS_DIR")
        XCTAssertFalse(try KernelSources.file("pool").contains("broken"))
    }
}
