// The cache of large freed buffers behind TensorStorage: a storage of the same size gets the last
// one back (no fresh pages); small buffers are never kept; the cache holds at most its count and
// bytes, dropping the oldest; a reused buffer is a whole, writable, 64-byte aligned allocation.

@testable import Quarry
import XCTest

final class TensorStorageTests: XCTestCase {
    func testLargeBuffersAreReusedAndSmallOnesAreNot() {
        let big = (3 << 20) / 4 + 13  // just over 3 MiB of floats: a size no other test uses
        let bytes = big * 4
        // A freed storage's buffer goes to the cache (the storage is freed at the end of the
        // statement; only its address is kept)...
        let freed = TensorStorage(count: big).pointer
        let cached = LargeBufferCache.shared.take(bytes)
        XCTAssertEqual(cached, UnsafeMutableRawPointer(freed), "a freed large buffer is kept")
        // ... and a cached buffer serves the next storage of its size.
        let offered = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        XCTAssertTrue(LargeBufferCache.shared.keep(offered, bytes: bytes))
        let again = TensorStorage(count: big)
        XCTAssertEqual(UnsafeMutableRawPointer(again.pointer), offered)
        again.pointer.update(repeating: 1, count: big)
        XCTAssertEqual(again.pointer[big - 1], 1)
        cached?.deallocate()

        _ = TensorStorage(count: 1000)
        XCTAssertNil(LargeBufferCache.shared.take(4000), "small buffers are not kept")
    }

    func testCacheKeepsAtMostItsCountAndBytes() {
        let cache = LargeBufferCache()
        let size = 2 << 20
        var kept: [UnsafeMutableRawPointer] = []
        for _ in 0..<(LargeBufferCache.maximumCount + 3) {
            let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
            XCTAssertTrue(cache.keep(p, bytes: size))
            kept.append(p)
        }
        // The newest `maximumCount` come back, newest first; the three oldest were freed.
        for i in stride(from: kept.count - 1, through: 3, by: -1) { XCTAssertEqual(cache.take(size), kept[i]) }
        XCTAssertNil(cache.take(size))
        let huge = LargeBufferCache.maximumBytes + 64
        let p = UnsafeMutableRawPointer.allocate(byteCount: huge, alignment: 64)
        XCTAssertFalse(cache.keep(p, bytes: huge), "a buffer over the byte limit is freed by the caller")
        p.deallocate()
    }
}
