// Work splitting for the CPU backend. Kernels split their work into `threads` chunks by index, so
// a run never starts more threads than the backend was given (no oversubscription of the cores).

import CCPUHints
import Dispatch
import Foundation
import Synchronization

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
        // Static contiguous partition: chunks of equal cost stay on one thread, which keeps
        // packed panels in that core's cache.
        let member = { (w: Int) in
            for i in (chunks * w / workers)..<(chunks * (w + 1) / workers) { body(i) }
        }
        // The team's helpers; Dispatch's pool when another team holds them (a kernel called
        // from inside a team).
        if runTeam(workers, pinCaller: false, member) { return }
        concurrentlyOnDispatch(workers, member)
    }

    /// Splits 0..<n into at most `count` contiguous ranges and runs them in parallel.
    @inline(__always)
    public func parallelRanges(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let workers = max(1, min(count, n / max(minimumPerThread, 1)))
        if workers == 1 { body(0..<n); return }
        let member = { (w: Int) in body((n * w / workers)..<(n * (w + 1) / workers)) }
        if runTeam(workers, pinCaller: false, member) { return }
        concurrentlyOnDispatch(workers, member)
    }
}

/// A barrier for a fixed team of threads that meet many times in quick succession (every step of
/// a recurrence): arriving threads spin on a generation counter, yielding the core after a while
/// so that a team on a busy machine still progresses.
// @unchecked: its state is atomics.
final class SpinBarrier: @unchecked Sendable {
    let parties: Int
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)

    init(parties: Int) { self.parties = parties }

    func wait() {
        let gen = generation.load(ordering: .acquiring)
        // The last to arrive resets the count and releases the others. Acquire-release on the
        // count, release on the generation: everything written before the barrier is seen after.
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            generation.wrappingAdd(1, ordering: .releasing)
            return
        }
        var spins = 0
        while generation.load(ordering: .acquiring) == gen {
            spins += 1
            if spins >= 4_000 { sched_yield(); spins = 0 }
        }
    }
}

extension CPUThreads {
    /// Runs `steps` steps of `phases` loops over `0..<chunks`, each loop's chunks split into fixed
    /// contiguous ranges over a team of at most `count` threads that stays together for the whole
    /// sequence, with a barrier after each loop: one dispatch for the sequence rather than one per
    /// loop (a recurrence of 64 steps at batch 1 spent more on dispatch than it gained).
    func teamSteps(steps: Int, phases: Int, chunks: Int, _ body: (_ step: Int, _ phase: Int, _ chunk: Int) -> Void) {
        let team = min(count, chunks)
        if team <= 1 {
            for s in 0..<steps { for p in 0..<phases { for c in 0..<chunks { body(s, p, c) } } }
            return
        }
        let barrier = SpinBarrier(parties: team)
        let ran = runTeam(team) { m in
            let mine = (chunks * m / team)..<(chunks * (m + 1) / team)
            for s in 0..<steps {
                for p in 0..<phases {
                    for c in mine { body(s, p, c) }
                    barrier.wait()
                }
            }
        }
        // Another team holds the helpers: the whole sequence on this thread.
        if !ran { for s in 0..<steps { for p in 0..<phases { for c in 0..<chunks { body(s, p, c) } } } }
    }

    /// Runs `body` with the calling thread held on the CPU the team leaves it (the first allowed
    /// one), when kernels will split work over a team: for a whole run of a graph, so three system
    /// calls per run, not per layer. Unpinned, the caller (a new thread per batch) sometimes sat on
    /// the helper's core, and every layer's two halves took turns on one core: MobileNetV2 at
    /// batch 1 ran at 5.4 or 9 ms from one run to the next.
    public func withCallerPinned<R>(_ body: () throws -> R) rethrows -> R {
        if count <= 1 { return try body() }
        let restore = TeamPool.shared.pinCaller()
        defer { restore() }
        return try body()
    }

    /// Runs `member(0)` … `member(team - 1)` at once, each on a core of its own: the caller is
    /// member 0, parked helper threads the others. Returns false, having run nothing, if another
    /// team holds the helpers. `pinCaller` holds the caller on the first allowed CPU for the run
    /// (three system calls: worth it for a long run such as a recurrence or a batch, not for
    /// one layer).
    ///
    /// Not Dispatch's pool: a member spinning at a barrier must not wait for a pool thread that
    /// other work holds, and a pool thread may wake on the caller's core or not at all (measured:
    /// runs at one-core speed one time in three, and a two-thread FMA peak that read as one
    /// core's). Not fresh threads either: a new thread starts on its creator's core.
    public func runTeam(_ team: Int, pinCaller: Bool = true, _ member: (Int) -> Void) -> Bool {
        if team <= 1 { if team == 1 { member(0) }; return true }
        let pool = TeamPool.shared
        guard pool.inUse.try() else { return false }
        defer { pool.inUse.unlock() }
        withoutActuallyEscaping(member) { member in
            let helpers = pool.helpers(team - 1)
            // Helper i stays on CPU i + 1 of the allowed set.
            let restore = pinCaller ? pool.pinCaller() : {}
            defer { restore() }
            for (i, helper) in helpers.enumerated() { helper.run { member(i + 1) } }
            member(0)
            for helper in helpers { helper.waitUntilFinished() }
        }
        return true
    }
}

/// The parked helper threads of `runTeam` (created on first use, kept for the process).
// @unchecked: `parked` is touched only by the thread holding `inUse`.
final class TeamPool: @unchecked Sendable {
    static let shared = TeamPool()
    /// Held by the team that uses the helpers.
    let inUse = NSLock()
    private var parked: [Helper] = []

    /// A thread that takes one job at a time. Hand-over is through an atomic state: the helper
    /// spins on it for a while before sleeping on a semaphore (a layer of a batch-1 model lasts
    /// tens of microseconds, about what a wake-up costs), and the caller spins, yielding the
    /// core now and then, until the helper is done (the caller has nothing else to run then).
    // @unchecked: `job` is written by the caller before the atomic `state` hands it over and
    // cleared by the helper before it hands back (release / acquire order).
    final class Helper: @unchecked Sendable {
        private enum State { static let idle = 0, posted = 1, done = 2 }
        private let state = Atomic<Int>(State.idle)
        /// Set while the helper sleeps (or is about to) on `wake`.
        private let sleeping = Atomic<Bool>(false)
        private let wake = DispatchSemaphore(value: 0)
        private var job: (() -> Void)?
        /// Spins before sleeping: about 50 µs of checks.
        private static let spins = 20_000

        init(cpu: Int?) {
            let thread = Thread { [unowned self] in
                if let cpu { pin(toCPU: cpu) }
                while true {
                    self.waitForJob()
                    do {
                        let work = self.job!
                        self.job = nil
                        work()
                    }
                    // The job is released before the caller hears of it (it borrows the
                    // caller's closures).
                    self.state.store(State.done, ordering: .releasing)
                }
            }
            thread.name = "quarry-team"
            thread.start()
        }

        private func waitForJob() {
            while true {
                for _ in 0..<Self.spins where state.load(ordering: .acquiring) == State.posted { return }
                // Announce the sleep, then look once more: a job posted in between is seen here
                // or its poster sees `sleeping` and signals (both orders are sequentially
                // consistent). A signal that finds the helper awake leaves a count that only
                // costs one extra pass of this loop.
                sleeping.store(true, ordering: .sequentiallyConsistent)
                if state.load(ordering: .sequentiallyConsistent) == State.posted {
                    sleeping.store(false, ordering: .relaxed)
                    return
                }
                wake.wait()
                sleeping.store(false, ordering: .relaxed)
            }
        }

        func run(_ work: @escaping () -> Void) {
            job = work
            state.store(State.posted, ordering: .sequentiallyConsistent)
            if sleeping.load(ordering: .sequentiallyConsistent) { wake.signal() }
        }

        func waitUntilFinished() {
            var spins = 0
            while state.load(ordering: .acquiring) != State.done {
                spins += 1
                if spins >= 4_000 { sched_yield(); spins = 0 }
            }
            state.store(State.idle, ordering: .relaxed)
        }
    }

    /// `n` helpers; call with `inUse` held.
    func helpers(_ n: Int) -> [Helper] {
        while parked.count < n { parked.append(Helper(cpu: cpus.isEmpty ? nil : cpus[(parked.count + 1) % cpus.count])) }
        return Array(parked.prefix(n))
    }

    /// The CPUs the process may run on, from its affinity mask at first use.
    let cpus: [Int] = threadCPUs()

    /// Holds the calling thread on the first allowed CPU; returns what puts its mask back.
    func pinCaller() -> () -> Void {
        guard cpus.count > 1 else { return {} }
        let old = threadCPUs()
        guard !old.isEmpty else { return {} }
        pin(toCPU: cpus[0])
        return { _ = old.map { Int32($0) }.withUnsafeBufferPointer { quarry_set_thread_cpus($0.baseAddress, Int32($0.count)) } }
    }
}

/// The CPUs the calling thread may run on (empty if unknown).
private func threadCPUs() -> [Int] {
    var buffer = [Int32](repeating: 0, count: 1024)
    let n = buffer.withUnsafeMutableBufferPointer { quarry_thread_cpus($0.baseAddress, Int32($0.count)) }
    return n > 0 ? buffer.prefix(Int(n)).map(Int.init) : []
}

/// Restricts the calling thread to one CPU (best effort: a failure leaves it where it was).
private func pin(toCPU cpu: Int) {
    var c = Int32(cpu)
    _ = quarry_set_thread_cpus(&c, 1)
}

/// Runs `member(0..<count)` on Dispatch's pool and returns when all are done. The members write
/// disjoint parts of buffers they are handed as pointers; nothing outlives the call, so the
/// closure is handed over unchecked.
@inline(__always)
func concurrentlyOnDispatch(_ count: Int, _ member: (Int) -> Void) {
    withoutActuallyEscaping(member) { member in
        let box = UncheckedMember(member)
        DispatchQueue.concurrentPerform(iterations: count) { box.run($0) }
    }
}

private struct UncheckedMember: @unchecked Sendable {
    let run: (Int) -> Void
    init(_ run: @escaping (Int) -> Void) { self.run = run }
}
