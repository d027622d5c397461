// Work splitting for the CPU backend. Kernels split their work into `threads` chunks by index, so
// a run never starts more threads than the backend was given (no oversubscription of the cores).

import Dispatch
import Foundation

public struct CPUThreads: Sendable {
    /// How many threads kernels split work across (at least 1).
    public let count: Int

    public init(count: Int? = nil) {
        self.count = max(1, count ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Calls `body(chunk)` for every chunk in 0..<chunks, spread over at most `count` threads.
    /// With one thread (or one chunk) it runs inline, with no dispatch overhead.
    @inline(__always)
    public func parallelFor(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 0 { return }
        if count == 1 || chunks == 1 {
            for i in 0..<chunks { body(i) }
            return
        }
        let workers = min(count, chunks)
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                // Static contiguous partition: chunks of equal cost stay on one thread, which keeps
                // packed panels in that core's cache.
                let lo = chunks * w / workers, hi = chunks * (w + 1) / workers
                for i in lo..<hi { body(i) }
            }
        }
    }

    /// Splits 0..<n into at most `count` contiguous ranges and runs them in parallel.
    @inline(__always)
    public func parallelRanges(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let workers = max(1, min(count, n / max(minimumPerThread, 1)))
        if workers == 1 { body(0..<n); return }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                body((n * w / workers)..<(n * (w + 1) / workers))
            }
        }
    }
}
