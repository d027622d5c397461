// The decode pipeline on its own: batches come out in order with every row in its place, failed
// items named and left out (rows after them move up), direct writes and per-item loads alike,
// whatever the number of workers and the depth of the queue.

import Foundation
import Quarry
@testable import QuarryRuntime
import XCTest

final class DecodePipelineTests: XCTestCase {
    /// Items whose row i is filled with i + 0.5 (poisoned batch rows would show NaN); every 7th
    /// fails; items sleep a little, unevenly, so workers finish out of order.
    private func makeItems(_ count: Int, direct: Bool, varyingShape: Bool = false) -> [ExtractItem] {
        (0..<count).map { i in
            let shape = varyingShape && i % 5 == 4 ? [2, 2] : [2, 3]
            let fill: (UnsafeMutablePointer<Float>, Int) throws -> Void = { p, n in
                usleep(UInt32((i * 37) % 5) * 200)
                if i % 7 == 3 { throw RuntimeError(message: "item \(i) is broken") }
                for k in 0..<n { p[k] = Float(i) + 0.5 }
            }
            let load: () throws -> Tensor = {
                let t = Tensor(shape: shape, repeating: .nan)
                try fill(t.pointer, t.count)
                return t
            }
            return ExtractItem(
                source: "item\(i)", load: load, rowShape: direct ? shape : nil,
                write: direct ? { p in try fill(p, 6) } : nil)
        }
    }

    func testBatchesComeInOrderWithFailuresLeftOut() throws {
        for (direct, workers, depth, batch, start) in [
            (true, 3, 1, 4, 0), (true, 1, 3, 5, 2), (false, 4, 2, 3, 0), (true, 8, 4, 1, 5), (false, 2, 1, 64, 1),
        ] {
            let items = makeItems(41, direct: direct)
            let pipeline = DecodePipeline(items: items, range: start..<41, batch: batch, workers: workers, depth: depth,
                                          yieldToCompute: workers % 2 == 0)
            var seen = start
            while let b = pipeline.next() {
                XCTAssertEqual(b.range.lowerBound, seen)
                XCTAssertEqual(b.range.count, min(batch, 41 - seen))
                let expectedFailed = b.range.filter { $0 % 7 == 3 }
                XCTAssertEqual(b.failed.map(\.index), expectedFailed)
                for f in b.failed { XCTAssertTrue("\(f.error)".contains("item \(f.index) is broken")) }
                XCTAssertEqual(b.good, b.range.filter { $0 % 7 != 3 })
                if b.good.isEmpty {
                    XCTAssertNil(b.tensor)
                } else {
                    let t = try XCTUnwrap(b.tensor)
                    XCTAssertEqual(t.shape, [b.good.count, 2, 3])
                    for (row, index) in b.good.enumerated() {
                        for k in 0..<6 { XCTAssertEqual(t[flat: row * 6 + k], Float(index) + 0.5, "row \(row) of \(b.range)") }
                    }
                }
                seen = b.range.upperBound
            }
            XCTAssertEqual(seen, 41, "direct \(direct) workers \(workers) depth \(depth)")
        }
    }

    /// Rows loaded one by one: one whose shape differs from the batch's first is a failed row.
    func testRowsOfAnotherShapeFail() throws {
        let items = makeItems(10, direct: false, varyingShape: true)
        let pipeline = DecodePipeline(items: items, range: 0..<10, batch: 10, workers: 2, depth: 1, yieldToCompute: false)
        let b = try XCTUnwrap(pipeline.next())
        XCTAssertEqual(b.failed.map(\.index), [3, 4, 9])
        XCTAssertTrue("\(b.failed[1].error)".contains("differs from the batch's"))
        XCTAssertNil(pipeline.next())
    }

    /// Cancelling while workers wait on a full queue returns promptly and ends the batches.
    func testCancelStopsWaitingWorkers() {
        let items = makeItems(100, direct: true)
        let pipeline = DecodePipeline(items: items, range: 0..<100, batch: 2, workers: 4, depth: 1, yieldToCompute: false)
        XCTAssertNotNil(pipeline.next())
        pipeline.cancel()
        XCTAssertNil(pipeline.next())
    }
}
