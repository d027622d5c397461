// The decode pipeline of an extraction: worker threads decode and preprocess inputs ahead of the
// devices into a bounded queue of batches, each written straight into its batch tensor (the
// model's [N, C, H, W] input layout) when the inputs' row shape is known ahead.
//
// Work is handed out an item at a time, not a batch at a time: a worker that finishes one image
// takes the next undone item of the oldest batch that is not complete, across batch boundaries,
// so one large photo never leaves the other cores idle at the end of a batch. At most `depth`
// batches are in the making at once, which bounds memory; the consumer takes them in order.
//
// When the CPU computes too, decode workers still run on every core but at a lower scheduling
// priority: while the compute team has a batch, decoding takes only what the team leaves idle
// (its waits and joins); when the team runs out of batches, it waits and decoding has the cores.
// The split of core time between the two is thus set by what each side measurably takes, not by a
// fixed count; `measuredSplit` reports it.

import Foundation
import Quarry

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One batch out of the pipeline: the rows that could be read, stacked, and the ones that could not.
struct DecodedBatch {
    var range: Range<Int>
    /// Indices (into the item list) of the rows of `tensor`, in order.
    var good: [Int]
    var failed: [(index: Int, error: Error)]
    /// [good.count, ...rowShape]; nil when no row could be read.
    var tensor: Tensor?
}

// @unchecked: every mutable field changes only under `condition`; a slot's rows are written by
// the one worker that claimed them, and read after its `remaining` count reached zero.
final class DecodePipeline: @unchecked Sendable {
    private let items: [ExtractItem]
    private let range: Range<Int>
    private let batchSize: Int
    private let depth: Int
    /// Makes the batch tensors rows are written into (host-mapped device memory for an OpenCL
    /// GPU, so the upload is a DMA); ordinary memory when nil or when it fails.
    private let makeTensor: (([Int]) throws -> Tensor)?
    private let condition = NSCondition()

    /// One batch in the making.
    private final class Slot {
        let range: Range<Int>
        /// Every item of the batch writes into this tensor's rows, when they share a row shape.
        let direct: Tensor?
        var tensors: [Tensor?]
        var errors: [Error?]
        var remaining: Int
        init(range: Range<Int>, direct: Tensor?) {
            self.range = range
            self.direct = direct
            tensors = Array(repeating: nil, count: range.count)
            errors = Array(repeating: nil, count: range.count)
            remaining = range.count
        }
    }
    private var slots: [Int: Slot] = [:]
    private var nextItem: Int
    private var consumed = 0  // batches taken by the consumer
    private var cancelled = false
    private var threads: [Thread] = []
    private var running = 0
    // Measured: seconds of decoding (summed over workers) and items decoded.
    private var decodeSeconds = 0.0
    private var decodedItems = 0

    /// Starts `workers` threads over `items[range]` in batches of `batch`, at most `depth` batches
    /// ahead of the consumer. `yieldToCompute` lowers the workers' priority (the CPU computes too).
    init(items: [ExtractItem], range: Range<Int>, batch: Int, workers: Int, depth: Int, yieldToCompute: Bool,
         makeTensor: (([Int]) throws -> Tensor)? = nil) {
        self.items = items
        self.makeTensor = makeTensor
        self.range = range
        self.batchSize = max(batch, 1)
        self.depth = max(depth, 1)
        nextItem = range.lowerBound
        let count = max(1, min(workers, range.count))
        running = count
        for w in 0..<count {
            let thread = Thread { [self] in
                if yieldToCompute { lowerThreadPriority() }
                work()
                condition.lock()
                running -= 1
                condition.broadcast()
                condition.unlock()
            }
            thread.name = "quarry-decode-\(w)"
            thread.stackSize = 1 << 20
            threads.append(thread)
        }
        for t in threads { t.start() }
    }

    deinit { cancel() }

    private var batchCount: Int { (range.count + batchSize - 1) / batchSize }

    private func batchRange(_ b: Int) -> Range<Int> {
        let lo = range.lowerBound + b * batchSize
        return lo..<min(range.upperBound, lo + batchSize)
    }

    /// The slot of batch `b`, made on first use (called with the lock held).
    private func slot(_ b: Int) -> Slot {
        if let s = slots[b] { return s }
        let r = batchRange(b)
        // Direct writes need every item of the batch to know its row shape, and the same one.
        var direct: Tensor? = nil
        if let shape = items[r.lowerBound].rowShape, items[r].allSatisfy({ $0.rowShape == shape && $0.write != nil }) {
            let batchShape = [r.count] + shape
            direct = (try? makeTensor?(batchShape)) ?? Tensor(uninitializedShape: batchShape)
        }
        let s = Slot(range: r, direct: direct)
        slots[b] = s
        return s
    }

    private func work() {
        while true {
            condition.lock()
            var claimed: (index: Int, slot: Slot)? = nil
            while !cancelled, nextItem < range.upperBound {
                let b = (nextItem - range.lowerBound) / batchSize
                if b < consumed + depth {
                    claimed = (nextItem, slot(b))
                    nextItem += 1
                    break
                }
                condition.wait()  // the queue is full: wait for the consumer
            }
            condition.unlock()
            guard let (index, s) = claimed else { return }

            let start = DispatchTime.now().uptimeNanoseconds
            let row = index - s.range.lowerBound
            var tensor: Tensor? = nil
            var failure: Error? = nil
            do {
                if let direct = s.direct, let write = items[index].write {
                    let rowCount = direct.count / max(direct.shape[0], 1)
                    try write(direct.pointer + row * rowCount)
                } else {
                    tensor = try items[index].load()
                }
            } catch {
                failure = error
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

            condition.lock()
            s.tensors[row] = tensor
            s.errors[row] = failure
            s.remaining -= 1
            decodeSeconds += seconds
            decodedItems += 1
            if s.remaining == 0 { condition.broadcast() }
            condition.unlock()
        }
    }

    /// The next batch in order, or nil when all were taken (or the pipeline was cancelled).
    func next() -> DecodedBatch? {
        condition.lock()
        let b = consumed
        guard b < batchCount, !cancelled else { condition.unlock(); return nil }
        let s = slot(b)
        while s.remaining > 0 && !cancelled { condition.wait() }
        if cancelled { condition.unlock(); return nil }
        slots[b] = nil
        consumed += 1
        condition.broadcast()  // room for one more batch
        condition.unlock()
        return assemble(s)
    }

    /// Stops the workers after the items they hold; `next` returns nil from then on.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    /// Decoding time per item (one core's seconds), measured so far.
    var secondsPerItem: Double {
        condition.lock(); defer { condition.unlock() }
        return decodedItems == 0 ? 0 : decodeSeconds / Double(decodedItems)
    }

    private func assemble(_ s: Slot) -> DecodedBatch {
        var good: [Int] = []
        var failed: [(index: Int, error: Error)] = []
        if let direct = s.direct {
            let rowCount = direct.count / max(direct.shape[0], 1)
            for (row, error) in s.errors.enumerated() {
                if let error {
                    failed.append((s.range.lowerBound + row, error))
                } else {
                    // Rows after a failed one move up, so the good rows are contiguous.
                    if good.count != row {
                        (direct.pointer + good.count * rowCount).update(from: direct.pointer + row * rowCount, count: rowCount)
                    }
                    good.append(s.range.lowerBound + row)
                }
            }
            let tensor: Tensor?
            if good.isEmpty {
                tensor = nil
            } else if good.count == s.range.count {
                tensor = direct
            } else {
                tensor = direct.rows(0..<good.count)
            }
            return DecodedBatch(range: s.range, good: good, failed: failed, tensor: tensor)
        }
        // Rows loaded one by one (arrays, images of varying size): the first row's shape decides.
        var rows: [Tensor] = []
        for row in 0..<s.range.count {
            let index = s.range.lowerBound + row
            if let error = s.errors[row] {
                failed.append((index, error))
            } else if let t = s.tensors[row] {
                if let first = rows.first, first.shape != t.shape {
                    failed.append((index, RuntimeError(message: "shape \(t.shape) differs from the batch's \(first.shape)")))
                } else {
                    rows.append(t)
                    good.append(index)
                }
            }
        }
        failed.sort { $0.index < $1.index }
        var tensor: Tensor? = nil
        if !rows.isEmpty {
            do {
                tensor = try Tensor.stacking(rowsOf: rows.map { try $0.reshaped([1] + $0.shape) })
            } catch {
                return DecodedBatch(range: s.range, good: [], failed: good.map { ($0, error) } + failed, tensor: nil)
            }
        }
        return DecodedBatch(range: s.range, good: good, failed: failed, tensor: tensor)
    }
}

/// Lowers the calling thread's scheduling priority. On Linux the nice value belongs to the thread,
/// and `who` 0 names the calling one.
private func lowerThreadPriority() {
    #if canImport(Glibc)
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
    #endif
}
