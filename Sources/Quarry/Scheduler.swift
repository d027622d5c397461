// The multi-device scheduler. Each device holds its own compiled copy of the graph (its own
// weights) and a thread that pulls the next micro-batch from a shared queue when it is free, so a
// faster device simply takes more of the work. Each device's micro-batch grows or shrinks so that
// one pull takes about `targetSeconds` (its measured speed), capped by its memory; a micro-batch
// that fails is put back for another device and the failing device is set aside. Outputs come back
// in input order, batch by batch; the devices move on to the next batch while one is being
// finished (a micro-batch may span the two), and only a bounded window of batches is held, so
// data sets larger than memory stream through.

import Foundation

/// A run that has been handed to a device and may still be computing (OpenCL enqueues uploads and
/// kernels on an in-order queue and returns at once; the CPU computes before returning).
public protocol PendingRun {
    func wait() throws -> [String: Tensor]
}

struct FinishedRun: PendingRun {
    let result: Result<[String: Tensor], Error>
    func wait() throws -> [String: Tensor] { try result.get() }
}

/// Graphs that can start a run without waiting for it; the scheduler submits the next micro-batch
/// before waiting for the current one, so uploads overlap compute.
public protocol AsynchronousCompiledGraph: CompiledGraph {
    func submit(_ inputs: [String: Tensor]) throws -> PendingRun
}

extension CompiledGraph {
    func start(_ inputs: [String: Tensor]) -> PendingRun {
        if let a = self as? AsynchronousCompiledGraph {
            do { return try a.submit(inputs) } catch { return FinishedRun(result: .failure(error)) }
        }
        return FinishedRun(result: Result { try run(inputs) })
    }
}

public struct SchedulerOptions: Sendable {
    /// Fixed micro-batch size for every device (overrides the adaptive choice).
    public var microBatch: Int?
    /// An adaptive micro-batch takes at most about this much compute. Within a batch the speed
    /// share of the rows left decides first; this bound keeps very large batches flowing in
    /// pieces (progress, memory, a failure costs little).
    public var targetSeconds: Double = 2
    /// Largest adaptive micro-batch.
    public var maxMicroBatch: Int = 64
    /// Fraction of a device's memory its activations may take.
    public var memoryFraction: Double = 0.5
    public init(microBatch: Int? = nil) { self.microBatch = microBatch }
}

/// What one device did in a run.
public struct DeviceShare: Sendable, Codable {
    public var device: String
    public var items: Int
    public var microBatches: Int
    public var busySeconds: Double
    /// Set when the device was set aside after a failure.
    public var failure: String?
}

public enum SchedulerError: Error, CustomStringConvertible {
    case allDevicesFailed([String])
    case cancelled
    case badInput(String)
    public var description: String {
        switch self {
        case .allDevicesFailed(let reasons): return "every device failed: " + reasons.joined(separator: "; ")
        case .cancelled: return "cancelled"
        case .badInput(let m): return m
        }
    }
}

// @unchecked: `speed` and `alive` change only in `run`, which works on copies under the
// stream's lock and writes them back after its workers have stopped; `log` is set before use;
// the cancel flag is thread-safe.
public final class Scheduler: @unchecked Sendable {
    public let workers: [CompiledGraph]
    public let options: SchedulerOptions
    /// Called with a line to log (device set aside, retries).
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(("quarry: " + $0 + "\n").utf8)) }
    private let cancelFlag = ManagedAtomicFlag()
    /// Measured items per second of each device (smoothed), kept across runs so that micro-batch
    /// sizes stay tuned from one batch to the next.
    private var speed: [Double]
    /// Devices not set aside after a failure.
    private var alive: [Bool]
    private var capCache: [String: [Int]] = [:]

    /// Compiles `graph` for `outputs` on every device. A device that cannot compile it is skipped
    /// with a logged reason; none compiling is an error.
    public convenience init(graph: Graph, outputs: [String], devices: [Device], options: SchedulerOptions = .init()) throws {
        var compiled: [CompiledGraph] = []
        var reasons: [String] = []
        for d in devices {
            do { compiled.append(try d.compile(graph, outputs: outputs)) } catch {
                reasons.append("\(d.info.spec): \(error)")
            }
        }
        guard !compiled.isEmpty else { throw SchedulerError.allDevicesFailed(reasons) }
        self.init(workers: compiled, options: options)
        for r in reasons { log("device set aside at compile time: \(r)") }
    }

    public init(workers: [CompiledGraph], options: SchedulerOptions = .init()) {
        self.workers = workers
        self.options = options
        speed = Array(repeating: 0, count: workers.count)
        alive = Array(repeating: true, count: workers.count)
    }

    /// Asks a running `run` to stop after the micro-batches in flight; it then throws `.cancelled`.
    public func cancel() { cancelFlag.set() }

    /// How many batches with rows not yet handed to a device are held. Devices pull rows from
    /// the oldest such batch, so a device that would idle at the end of one batch starts on the
    /// next. Memory holds these, plus the batches whose last micro-batches are still computing
    /// (at most two per device), plus finished batches not yet consumed: see `batchesHeld`.
    public static let batchesInFlight = 2

    /// The most batches held at once, read ahead or finished and waiting for `consume`: without
    /// this bound a device faster than the reader (a model tapped at its input, a small model on
    /// a GPU) took every batch's rows as soon as it was read, no batch ever had rows pending, and
    /// the reader read the whole input before the first batch was consumed (1,200 images tapped
    /// at ResNet-50's input held 1.5 GB, growing with the input).
    static func batchesHeld(devices: Int) -> Int { batchesInFlight + 2 * devices }

    /// Runs every batch from `batches` (each a dictionary of inputs sharing a leading batch
    /// dimension) across the devices, and hands `consume` each batch's outputs, in input order.
    /// Batches stream: while one is being finished (and consumed, on the calling thread) the
    /// devices already work on the next, and a micro-batch may span a batch boundary.
    /// `batches` is read on the calling thread only. Returns what each device did.
    @discardableResult
    public func run(
        batches: AnyIterator<[String: Tensor]>,
        consume: (_ index: Int, _ outputs: [String: Tensor]) throws -> Void
    ) throws -> [DeviceShare] {
        let stream = BatchStream()
        var shares = workers.map { DeviceShare(device: $0.device.info.spec, items: 0, microBatches: 0, busySeconds: 0, failure: nil) }
        // Workers update these copies under the stream's lock; they are written back at the end.
        var sharesLocal = shares, aliveLocal = alive, speedLocal = speed
        var failures: [String] = []
        let lock = stream.lock

        /// The oldest batch with rows to hand out and how many rows device `w` wants now (0:
        /// none for now), or nil when no batch has rows; lock held.
        func wanted(_ w: Int) -> (first: Int, rows: Int)? {
            guard let first = stream.window.firstIndex(where: { $0.hasPending }) else { return nil }
            let living = speedLocal.indices.filter { aliveLocal[$0] }.map { speedLocal[$0] }
            let remaining = stream.window.reduce(0) { $0 + $1.remainingRows }
            return (first, microBatch(speed: speedLocal[w], allSpeeds: living, remaining: remaining,
                                      cap: stream.window[first].caps[w]))
        }

        /// The rows device `w` should take now, oldest first (nil: none for now); lock held. A
        /// micro-batch may span consecutive batches of the same row shape, so a device keeps its
        /// size at a batch boundary instead of taking the remainder alone.
        func nextWork(_ w: Int) -> [Piece]? {
            guard !stream.stopped, aliveLocal[w], !cancelFlag.isSet, let (first, rows) = wanted(w) else { return nil }
            var need = rows
            var pieces: [Piece] = []
            for batch in stream.window[first...] where batch.hasPending {
                if let last = pieces.last, !batch.sameRowShape(as: last.batch) { break }
                while need > 0, let r = batch.take(max: need) {
                    pieces.append(Piece(batch: batch, range: r))
                    need -= r.count
                }
                if need == 0 { break }
            }
            if pieces.isEmpty { return nil }
            stream.lock.broadcast()  // the reader may now read ahead
            return pieces
        }

        func worker(_ w: Int) {
            let graph = workers[w]
            var inFlight: (pieces: [Piece], pending: PendingRun, start: Double)? = nil
            while true {
                lock.lock()
                let next = nextWork(w)
                lock.unlock()
                var started: (pieces: [Piece], pending: PendingRun, start: Double)? = nil
                if let pieces = next {
                    // The clock starts before `start`: a synchronous device computes inside it.
                    let t0 = now()
                    let pending: PendingRun
                    switch Piece.inputs(of: pieces) {
                    case .success(let inputs): pending = graph.start(inputs)
                    case .failure(let error): pending = FinishedRun(result: .failure(error))
                    }
                    started = (pieces, pending, t0)
                }
                if let f = inFlight {
                    let result = Result { try f.pending.wait() }
                    let elapsed = now() - f.start
                    let rows = f.pieces.reduce(0) { $0 + $1.range.count }
                    lock.lock()
                    switch result {
                    case .success(let out):
                        var offset = 0
                        for p in f.pieces {
                            p.batch.complete(p.range, f.pieces.count == 1 ? out
                                             : out.mapValues { $0.rows(offset..<offset + p.range.count) })
                            offset += p.range.count
                        }
                        sharesLocal[w].items += rows
                        sharesLocal[w].microBatches += 1
                        sharesLocal[w].busySeconds += elapsed
                        let s = Double(rows) / max(elapsed, 1e-6)
                        speedLocal[w] = speedLocal[w] == 0 ? s : 0.7 * speedLocal[w] + 0.3 * s
                    case .failure(let error):
                        let reason = "\(graph.device.info.spec): \(error)"
                        for p in f.pieces { p.batch.giveBack(p.range) }
                        aliveLocal[w] = false
                        sharesLocal[w].failure = "\(error)"
                        failures.append(reason)
                        log("micro-batch of \(rows) rows failed on \(reason); device set aside, rows retried elsewhere")
                    }
                    lock.broadcast()
                    lock.unlock()
                }
                if let s = started {
                    inFlight = s
                    // A device that failed gives back what it had started too.
                    lock.lock()
                    let stillAlive = aliveLocal[w]
                    lock.unlock()
                    if !stillAlive {
                        _ = try? s.pending.wait()
                        lock.lock(); for p in s.pieces { p.batch.giveBack(p.range) }; lock.broadcast(); lock.unlock()
                        inFlight = nil
                    }
                    continue
                }
                inFlight = nil
                // Nothing to take: wait for the next batch or for given-back rows.
                lock.lock()
                defer { lock.unlock() }
                while true {
                    if stream.stopped || !aliveLocal[w] || cancelFlag.isSet || !aliveLocal.contains(true) { return }
                    if let (_, rows) = wanted(w), rows > 0 { break }
                    lock.wait()
                }
            }
        }

        /// Reads and checks the next batch (calling thread, lock not held); nil at the end.
        func read() throws -> BatchState? {
            guard let batch = batches.next() else { return nil }
            return BatchState(rows: try checkedRows(batch), inputs: batch, caps: memoryCaps(for: batch))
        }

        // The first batch is read before any worker starts (its memory caps plan every device).
        guard let first = try read() else { return shares }
        stream.window.append(first)

        let group = DispatchGroup()
        // The workers share this call's local state (the stream, shares, speeds), every access
        // under `lock`; the box says so to the compiler, which cannot see a lock's discipline.
        let work = UncheckedSendable(worker)
        for w in workers.indices where alive[w] {
            group.enter()
            Thread.detachNewThread {
                work.value(w)
                lock.lock(); lock.broadcast(); lock.unlock()
                group.leave()
            }
        }
        /// Stops the workers and waits for them; the shared state is then this thread's again.
        func finish() {
            lock.lock(); stream.stopped = true; lock.broadcast(); lock.unlock()
            group.wait()
            shares = sharesLocal; alive = aliveLocal; speed = speedLocal
        }

        var index = 0
        var exhausted = false
        do {
            lock.lock()
            while true {
                if cancelFlag.isSet { lock.unlock(); throw SchedulerError.cancelled }
                // Read ahead while fewer than `batchesInFlight` batches have rows to hand out, so
                // a device finishing one batch finds rows of the next. Reading comes before
                // consuming: the devices should not wait while the caller writes a batch.
                if !exhausted && stream.window.filter({ $0.hasPending }).count < Scheduler.batchesInFlight
                    && stream.window.count < Scheduler.batchesHeld(devices: workers.count) {
                    lock.unlock()
                    let b = try read()
                    lock.lock()
                    if let b { stream.window.append(b); lock.broadcast() } else { exhausted = true }
                    continue
                }
                if let oldest = stream.window.first, oldest.isDone {
                    stream.window.removeFirst()
                    lock.unlock()
                    try consume(index, try oldest.assemble(outputs: workers[0].outputs))
                    index += 1
                    lock.lock()
                    continue
                }
                guard aliveLocal.contains(true) else {
                    let reasons = failures
                    lock.unlock()
                    throw SchedulerError.allDevicesFailed(reasons)
                }
                if exhausted && stream.window.isEmpty { lock.unlock(); break }
                lock.wait()
            }
        } catch {
            finish()
            throw error
        }
        finish()
        if cancelFlag.isSet { throw SchedulerError.cancelled }
        return shares
    }

    /// Runs one batch across the devices and returns its outputs in row order.
    public func runBatch(_ batch: [String: Tensor]) throws -> [String: Tensor] {
        try run(batch: batch).outputs
    }

    /// Runs one batch across the devices: its outputs in row order and what each device did.
    /// When one device is left and takes the batch in one micro-batch, the batch runs on the
    /// calling thread: there is no next batch to overlap with it, and a worker thread per call
    /// cost a thread start and two wake-ups (0.2 ms, 2.5% of the LSTM's batch of 8).
    public func run(batch: [String: Tensor]) throws -> (outputs: [String: Tensor], shares: [DeviceShare]) {
        let living = alive.indices.filter { alive[$0] }
        if living.count == 1, let w = living.first {
            let rows = try checkedRows(batch)
            let whole = options.microBatch.map { $0 >= rows } ?? (rows <= options.maxMicroBatch)
            if whole && memoryCaps(for: batch)[w] >= rows {
                if cancelFlag.isSet { throw SchedulerError.cancelled }
                var shares = workers.map { DeviceShare(device: $0.device.info.spec, items: 0, microBatches: 0, busySeconds: 0, failure: nil) }
                let t0 = now()
                do {
                    let out = try workers[w].start(batch).wait()
                    let elapsed = now() - t0
                    shares[w].items = rows; shares[w].microBatches = 1; shares[w].busySeconds = elapsed
                    let s = Double(rows) / max(elapsed, 1e-6)
                    speed[w] = speed[w] == 0 ? s : 0.7 * speed[w] + 0.3 * s
                    var outputs: [String: Tensor] = [:]
                    for name in workers[0].outputs {
                        guard let t = out[name] else { throw QuarryError.device("output '\(name)' was not computed") }
                        outputs[name] = t
                    }
                    return (outputs, shares)
                } catch {
                    let reason = "\(workers[w].device.info.spec): \(error)"
                    alive[w] = false
                    log("micro-batch of \(rows) rows failed on \(reason); device set aside, rows retried elsewhere")
                    throw SchedulerError.allDevicesFailed([reason])
                }
            }
        }
        var result: [String: Tensor] = [:]
        let shares = try run(batches: AnyIterator([batch].makeIterator())) { _, out in result = out }
        return (result, shares)
    }

    /// The batch's rows (its inputs' shared leading dimension), or an error naming the input that differs.
    private func checkedRows(_ batch: [String: Tensor]) throws -> Int {
        guard let rows = batch.values.first?.shape.first else { throw SchedulerError.badInput("empty input batch") }
        for (name, t) in batch where t.shape.first != rows {
            throw SchedulerError.badInput("input '\(name)' has \(t.shape.first ?? 0) rows, others have \(rows)")
        }
        return rows
    }

    /// How many rows a device takes next (0: none for now). A first pull takes one row, to
    /// measure the device; after that at most about `targetSeconds` of work at its measured
    /// speed and at most its speed share of the rows left (guided self-scheduling), so that the
    /// pieces shrink near the end of a batch. A device that would finish even one row after the
    /// others finish everything left takes nothing and waits (the others may fail and give rows
    /// back); the fastest device always takes at least one. Sizes come from `ladder`.
    private func microBatch(speed: Double, allSpeeds: [Double], remaining: Int, cap: Int) -> Int {
        if let fixed = options.microBatch { return max(1, fixed) }
        if speed == 0 { return 1 }
        let wanted = Int(speed * options.targetSeconds)
        // Devices not yet measured count as this one's speed.
        let total = allSpeeds.reduce(0) { $0 + ($1 == 0 ? speed : $1) }
        let share = Int((Double(remaining) * speed / max(total, 1e-9)).rounded(.down))
        let fastest = allSpeeds.allSatisfy { $0 <= speed }
        let n = min(wanted, share, options.maxMicroBatch, cap)
        if n < 1 { return fastest ? 1 : 0 }
        // Sizes from a short ladder (steps of about 1.5x): every new micro-batch shape costs a
        // device a plan (and an OpenCL device kernel builds), so a dozen sizes that recur beat
        // sizes tuned to the row, while a pull loses at most a quarter of what it could take.
        return Scheduler.ladder.last { $0 <= n } ?? 1
    }

    static let ladder: [Int] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]

    /// Each device's memory cap for items shaped like `batch`'s rows, measured once per row shape.
    /// A fixed micro-batch needs none (and measuring would plan every device for batch 1).
    private func memoryCaps(for batch: [String: Tensor]) -> [Int] {
        if options.microBatch != nil { return workers.map { _ in Int.max } }
        let key = batch.keys.sorted().map { "\($0)\(batch[$0]!.shape.dropFirst())" }.joined(separator: ";")
        if let caps = capCache[key] { return caps }
        let caps = workers.map { memoryCap($0, batch: batch) }
        capCache[key] = caps
        return caps
    }

    /// The largest micro-batch whose activations fit in the device's memory budget.
    private func memoryCap(_ graph: CompiledGraph, batch: [String: Tensor]) -> Int {
        let budget = Double(graph.device.info.globalMemoryBytes) * options.memoryFraction
        guard budget > 0, let one = try? graph.peakActivationBytes(inputShapes: batch.mapValues { var s = $0.shape; s[0] = 1; return s }),
              one > 0 else { return options.maxMicroBatch }
        return max(1, Int(budget / Double(one)))
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// The batches being worked on, oldest first, and the lock that guards them and the workers'
/// shared counters.
final class BatchStream {
    let lock = NSCondition()
    var window: [BatchState] = []
    /// Set when the run ends (finished, failed or cancelled): workers return.
    var stopped = false
}

/// Rows of one batch that are part of a micro-batch.
struct Piece {
    let batch: BatchState
    let range: Range<Int>

    /// The micro-batch's inputs: one piece's rows, or the pieces' rows stacked in order.
    static func inputs(of pieces: [Piece]) -> Result<[String: Tensor], Error> {
        if pieces.count == 1 {
            let p = pieces[0]
            // A whole batch (one device, or a micro-batch as large as the batch) is run as given.
            if p.range == 0..<p.batch.rows { return .success(p.batch.inputs) }
            return .success(p.batch.inputs.mapValues { $0.rows(p.range) })
        }
        return Result {
            var out: [String: Tensor] = [:]
            for name in pieces[0].batch.inputs.keys {
                out[name] = try Tensor.stacking(rowsOf: pieces.map { $0.batch.inputs[name]!.rows($0.range) })
            }
            return out
        }
    }
}

/// Rows of one batch: which are waiting, which were given back, and the finished pieces.
final class BatchState {
    let rows: Int
    let inputs: [String: Tensor]
    /// Each device's largest micro-batch for rows of this shape (its memory budget).
    let caps: [Int]
    private var nextRow = 0
    private var returned: [Range<Int>] = []
    private var done: [(Range<Int>, [String: Tensor])] = []
    private var doneRows = 0

    init(rows: Int, inputs: [String: Tensor], caps: [Int]) {
        self.rows = rows; self.inputs = inputs; self.caps = caps
    }

    /// Whether rows of `other` can join rows of this batch in one micro-batch.
    func sameRowShape(as other: BatchState) -> Bool {
        other === self || (inputs.count == other.inputs.count && inputs.allSatisfy { name, t in
            other.inputs[name].map { Array($0.shape.dropFirst()) == Array(t.shape.dropFirst()) } ?? false
        })
    }

    var isDone: Bool { doneRows == rows }
    var hasPending: Bool { !returned.isEmpty || nextRow < rows }
    /// Rows not yet handed to a device (given-back rows included).
    var remainingRows: Int { rows - nextRow + returned.reduce(0) { $0 + $1.count } }

    func take(max n: Int) -> Range<Int>? {
        if let r = returned.popLast() {
            if r.count <= n { return r }
            returned.append(r.lowerBound + n..<r.upperBound)
            return r.lowerBound..<r.lowerBound + n
        }
        guard nextRow < rows else { return nil }
        let r = nextRow..<min(rows, nextRow + n)
        nextRow = r.upperBound
        return r
    }

    func giveBack(_ r: Range<Int>) { returned.append(r) }

    func complete(_ r: Range<Int>, _ out: [String: Tensor]) {
        done.append((r, out))
        doneRows += r.count
    }

    /// The outputs of every row, in row order; each row exactly once (checked).
    func assemble(outputs: [String]) throws -> [String: Tensor] {
        let pieces = done.sorted { $0.0.lowerBound < $1.0.lowerBound }
        var expected = 0
        for (r, _) in pieces {
            guard r.lowerBound == expected else {
                throw SchedulerError.badInput("internal: rows \(expected)..<\(r.lowerBound) missing or repeated")
            }
            expected = r.upperBound
        }
        var result: [String: Tensor] = [:]
        for name in outputs {
            // One piece is the whole batch: its outputs are the batch's, with no copy.
            result[name] = pieces.count == 1 ? pieces[0].1[name]! : try Tensor.stacking(rowsOf: pieces.map { $0.1[name]! })
        }
        return result
    }
}

/// A flag set from any thread (a signal handler's task, another worker) and read without a lock.
// @unchecked: `value` is read and written under `lock`.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// A value handed to another thread whose accesses are synchronised by other means (a lock the
/// value's users hold); say which where it is made.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
