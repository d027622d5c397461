// The cache of large freed buffers behind TensorStorage: a storage of the same size gets the last
// one back (no fresh pages); small buffers are never kept; the cache holds at most its count and
// bytes, dropping the oldest; a reused buffer is a whole, writable, 64-byte aligned allocation.
// Also the host copies that move a tensor's batch dimension to the front and back.

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

    func testBorrowedStorageIsNeitherFreedNorCached() {
        // A caller's buffer (a NumPy array through the C ABI): readable and writable through the
        // tensor, and still the caller's after the storage is gone (not freed, not cached).
        let big = (5 << 20) / 4 + 7  // over 1 MiB, a size no other test uses
        let mine = UnsafeMutablePointer<Float>.allocate(capacity: big)
        defer { mine.deallocate() }
        mine.update(repeating: 2, count: big)
        do {
            let t = Tensor(shape: [big], storage: TensorStorage(borrowing: mine, count: big))
            XCTAssertEqual(t.pointer, mine)
            XCTAssertEqual(t[flat: big - 1], 2)
            t[flat: 0] = 5
        }
        XCTAssertNil(LargeBufferCache.shared.take(big * 4), "a borrowed buffer must not enter the cache")
        XCTAssertEqual(mine[0], 5)
        mine[big - 1] = 3  // still ours to write (a freed or cached buffer would be reused)
        XCTAssertEqual(mine[big - 1], 3)
    }
}

final class TensorAxisMoveTests: XCTestCase {
    /// Moving a dimension to the front and back again, on random shapes and values, against index
    /// arithmetic: every element lands where the permutation says, and the round trip is exact.
    func testMovingAnAxisToTheFrontAndBack() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<40 {
            let rank = Int.random(in: 1...5, using: &rng)
            let shape = (0..<rank).map { _ in Int.random(in: 1...5, using: &rng) }
            let t = Tensor.random(shape: shape, in: 1...2, using: &rng)
            let axis = Int.random(in: 0..<rank, using: &rng)
            let front = t.movingAxisToFront(axis)
            var expectedShape = shape
            expectedShape.insert(expectedShape.remove(at: axis), at: 0)
            XCTAssertEqual(front.shape, expectedShape)
            // Element (i0..i{r-1}) of t is element (i_axis, the others in order) of front.
            var strides = [Int](repeating: 1, count: rank)
            for d in stride(from: rank - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
            var frontStrides = [Int](repeating: 1, count: rank)
            for d in stride(from: rank - 2, through: 0, by: -1) { frontStrides[d] = frontStrides[d + 1] * expectedShape[d + 1] }
            for flat in 0..<t.count {
                let index = (0..<rank).map { flat / strides[$0] % shape[$0] }
                var moved = index
                moved.insert(moved.remove(at: axis), at: 0)
                let target = zip(moved, frontStrides).reduce(0) { $0 + $1.0 * $1.1 }
                XCTAssertEqual(front[flat: target], t[flat: flat], "shape \(shape) axis \(axis) index \(index)")
            }
            let back = front.movingFrontAxis(to: axis)
            XCTAssertEqual(back.shape, shape)
            XCTAssertEqual(back.scalars, t.scalars)
        }
    }
}

final class TensorRandomTests: XCTestCase {
    /// `random` called with the concrete generator (specialised and inlined at the call) gives the
    /// values of the unspecialised generic path, element for element (tests and benchmarks
    /// reproduce inputs from seeds through either).
    func testSeededRandomMatchesTheGenericFill() {
        func generic<G: RandomNumberGenerator>(_ rng: inout G, _ range: ClosedRange<Float>) -> Tensor {
            Tensor.random(shape: [3, 1001], in: range, using: &rng)
        }
        for (seed, range) in [(UInt64(1), Float(-1)...1), (77, 0...5), (123_456, -0.25...0.5)] {
            var r1 = SeededGenerator(seed: seed), r2 = SeededGenerator(seed: seed)
            let a = Tensor.random(shape: [3, 1001], in: range, using: &r1), b = generic(&r2, range)
            XCTAssertEqual(a.scalars, b.scalars)
            XCTAssertTrue(a.scalars.allSatisfy { range.contains($0) })
            XCTAssertEqual(r1.next(), r2.next(), "both consumed the same draws")
        }
    }
}
