import Foundation
import Quarry
import QuarryCPU
import XCTest

/// Devices the scheduler tests make up: host memory, every op, only `compile` their own.
protocol FakeDevice: Device {}

extension FakeDevice {
    func supports(_ op: Op) -> Bool { true }
    func allocate(byteCount: Int) throws -> DeviceBuffer { HostBuffer(count: byteCount / 4) }
    func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent { CompletedEvent() }
    func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent { CompletedEvent() }
}

func fakeDeviceInfo(_ spec: String, kind: DeviceKind) -> DeviceInfo {
    DeviceInfo(spec: spec, kind: kind, name: spec, vendor: "test", driverVersion: "0",
               computeUnits: 1, globalMemoryBytes: 1 << 30, localMemoryBytes: 0,
               maxAllocationBytes: 1 << 30, supportsFP16: false, supportsFP64: false)
}

/// A device whose compiled graph doubles its input row by row, and fails on chosen runs, so the
/// scheduler's retries can be checked without real hardware.
final class FaultyDevice: FakeDevice, @unchecked Sendable {
    let info: DeviceInfo
    let failOnRuns: Set<Int>
    let delay: Double
    var runs = 0
    /// When each run started and the first value of its input (the tests encode the batch in it).
    var started: [(time: Double, first: Float)] = []
    /// The thread of each run.
    var threads: [Thread] = []
    let lock = NSLock()

    init(_ spec: String, failOnRuns: Set<Int> = [], delay: Double = 0) {
        info = fakeDeviceInfo(spec, kind: .cpu)
        self.failOnRuns = failOnRuns
        self.delay = delay
    }
    func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph { Doubler(device: self, graph: graph) }

    final class Doubler: CompiledGraph {
        let device: Device
        let graph: Graph
        var outputs: [String] { ["y"] }
        init(device: FaultyDevice, graph: Graph) { self.device = device; self.graph = graph }
        func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int { 4 }
        func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
            let d = device as! FaultyDevice
            d.lock.lock(); let n = d.runs; d.runs += 1
            d.started.append((Double(DispatchTime.now().uptimeNanoseconds) / 1e9, inputs["x"]![flat: 0]))
            d.threads.append(Thread.current); d.lock.unlock()
            if d.delay > 0 { Thread.sleep(forTimeInterval: d.delay) }
            if d.failOnRuns.contains(n) { throw QuarryError.device("\(d.info.spec): injected fault on run \(n)") }
            let x = inputs["x"]!
            let y = Tensor(uninitializedShape: x.shape)
            for i in 0..<x.count { y[flat: i] = 2 * x[flat: i] }
            return ["y": y]
        }
    }
}


/// A device that computes in the background: `submit` returns at once, so the scheduler should
/// hand it the next micro-batch before it waits for the current one.
final class AsyncDevice: FakeDevice, @unchecked Sendable {
    let info = fakeDeviceInfo("async", kind: .opencl)
    let lock = NSLock()
    var outstanding = 0, mostOutstanding = 0
    func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph { Graph_(device: self, graph: graph) }

    // @unchecked: `y` is written before `done` is signalled and read after it is waited on.
    final class Pending: PendingRun, @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var y: Tensor?
        func wait() throws -> [String: Tensor] { done.wait(); done.signal(); return ["y": y!] }
    }

    final class Graph_: AsynchronousCompiledGraph {
        let device: Device
        let graph: Graph
        var outputs: [String] { ["y"] }
        init(device: AsyncDevice, graph: Graph) { self.device = device; self.graph = graph }
        func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int { 4 }
        func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] { try submit(inputs).wait() }
        func submit(_ inputs: [String: Tensor]) throws -> PendingRun {
            let d = device as! AsyncDevice
            d.lock.lock(); d.outstanding += 1; d.mostOutstanding = max(d.mostOutstanding, d.outstanding); d.lock.unlock()
            let p = Pending()
            let x = inputs["x"]!
            DispatchQueue.global().async {
                Thread.sleep(forTimeInterval: 0.002)
                let y = Tensor(uninitializedShape: x.shape)
                for i in 0..<x.count { y[flat: i] = 2 * x[flat: i] }
                p.y = y
                d.lock.lock(); d.outstanding -= 1; d.lock.unlock()
                p.done.signal()
            }
            return p
        }
    }
}

final class SchedulerTests: XCTestCase {
    let graph = Graph(inputs: [GraphInput(name: "x", shape: [.symbol("n"), 3])], nodes: [], parameters: [:], outputs: ["y"])

    func batches(_ count: Int, rows: Int) -> [[String: Tensor]] {
        (0..<count).map { b in
            let t = Tensor(uninitializedShape: [rows, 3])
            for i in 0..<t.count { t[flat: i] = Float(b * 10_000 + i) }
            return ["x": t]
        }
    }

    func check(_ scheduler: Scheduler, batches input: [[String: Tensor]], file: StaticString = #filePath, line: UInt = #line) throws -> [DeviceShare] {
        var seen: [Int] = []
        let shares = try scheduler.run(batches: AnyIterator(input.makeIterator())) { index, out in
            seen.append(index)
            let x = input[index]["x"]!, y = out["y"]!
            XCTAssertEqual(y.shape, x.shape, file: file, line: line)
            for i in 0..<x.count where y[flat: i] != 2 * x[flat: i] {
                XCTFail("batch \(index) element \(i): \(y[flat: i]) != \(2 * x[flat: i])", file: file, line: line)
                break
            }
        }
        XCTAssertEqual(seen, Array(input.indices), "batches out of order or repeated", file: file, line: line)
        XCTAssertEqual(shares.reduce(0) { $0 + $1.items }, input.reduce(0) { $0 + $1["x"]!.shape[0] }, file: file, line: line)
        return shares
    }

    func testOutputsInOrderAcrossDevices() throws {
        // Every device is slow enough per micro-batch that all three threads are running before
        // the queue drains, even on a loaded machine.
        let devices = [FaultyDevice("a", delay: 0.004), FaultyDevice("b", delay: 0.008), FaultyDevice("c", delay: 0.004)]
        var options = SchedulerOptions()
        options.targetSeconds = 0.01
        options.maxMicroBatch = 4
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: devices, options: options)
        let shares = try check(s, batches: batches(6, rows: 37))
        XCTAssertTrue(shares.allSatisfy { $0.items > 0 }, "every device should take work: \(shares)")
    }

    func testDevicesStartTheNextBatchWhileOneIsConsumed() throws {
        // While the caller consumes batch i (slowly), the devices should already be computing
        // batch i + 1: there is no barrier between batches.
        let devices = [FaultyDevice("a", delay: 0.002), FaultyDevice("b", delay: 0.003)]
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: devices, options: SchedulerOptions(microBatch: 2))
        let input = batches(5, rows: 8)
        var consumed: [Double] = []
        try s.run(batches: AnyIterator(input.makeIterator())) { index, out in
            XCTAssertEqual(out["y"]![flat: 0], 2 * input[index]["x"]![flat: 0])
            Thread.sleep(forTimeInterval: 0.05)
            consumed.append(Double(DispatchTime.now().uptimeNanoseconds) / 1e9)
        }
        XCTAssertEqual(consumed.count, 5)
        let starts = devices.flatMap(\.started)
        for i in 0..<4 {
            // Batch b's values start at b * 10_000.
            let nextBatch = starts.filter { Int($0.first) / 10_000 == i + 1 }
            XCTAssertTrue(nextBatch.contains { $0.time < consumed[i] },
                          "no row of batch \(i + 1) started before batch \(i) was consumed")
        }
    }

    func testBatchesHeldAreBoundedWhenTheDevicesOutrunTheReader() throws {
        // An instant device takes every batch's rows as soon as they are read, so no batch ever
        // has rows pending; the reader must still stop at the bound instead of reading the whole
        // input before the first batch is consumed. The consumer is slow, the reader fast.
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [FaultyDevice("a")], options: SchedulerOptions())
        let input = batches(40, rows: 4)
        var read = 0, consumed = 0, mostAhead = 0
        let feed = AnyIterator<[String: Tensor]> {
            guard read < input.count else { return nil }
            read += 1
            mostAhead = max(mostAhead, read - consumed)
            return input[read - 1]
        }
        try s.run(batches: feed) { index, out in
            XCTAssertEqual(out["y"]![flat: 0], 2 * input[index]["x"]![flat: 0])
            Thread.sleep(forTimeInterval: 0.002)
            consumed += 1
        }
        XCTAssertEqual(consumed, input.count)
        XCTAssertLessThanOrEqual(mostAhead, Scheduler.batchesInFlight + 2,
                                 "the reader ran \(mostAhead) batches ahead of the consumer")
    }

    func testMicroBatchesSpanBatchBoundaries() throws {
        // Batches of 3 rows, micro-batches of 5: a micro-batch takes the end of one batch and the
        // start of the next, so there are fewer runs than batches, and every row comes back once.
        let device = FaultyDevice("a", delay: 0.005)
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [device], options: SchedulerOptions(microBatch: 5))
        _ = try check(s, batches: batches(7, rows: 3))
        XCTAssertLessThan(device.runs, 7, "micro-batches should span batches")
        XCTAssertTrue(device.started.contains { $0.first.truncatingRemainder(dividingBy: 10_000) != 0 },
                      "some micro-batch should start inside a batch")
    }

    func testFailedMicroBatchesAreRetriedElsewhereExactlyOnce() throws {
        var options = SchedulerOptions(microBatch: 4)
        options.targetSeconds = 0.01
        let devices = [FaultyDevice("good", delay: 0.002), FaultyDevice("flaky", failOnRuns: [2]), FaultyDevice("dead", failOnRuns: [0])]
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: devices, options: options)
        var logged: [String] = []
        let logLock = NSLock()
        s.log = { line in logLock.lock(); logged.append(line); logLock.unlock() }
        let shares = try check(s, batches: batches(4, rows: 50))
        XCTAssertNotNil(shares[1].failure)
        XCTAssertNotNil(shares[2].failure)
        XCTAssertNil(shares[0].failure)
        XCTAssertTrue(logged.contains { $0.contains("injected fault") && $0.contains("set aside") }, "\(logged)")
    }

    func testEveryDeviceFailingIsAnError() throws {
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [FaultyDevice("x", failOnRuns: Set(0..<100))])
        s.log = { _ in }
        XCTAssertThrowsError(try s.runBatch(batches(1, rows: 5)[0])) { error in
            XCTAssertTrue("\(error)".contains("injected fault"), "\(error)")
        }
    }

    func testOneDeviceRunsOneBatchOnTheCallingThread() throws {
        let device = FaultyDevice("one")
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [device])
        let input = batches(1, rows: 7)[0]
        let (out, shares) = try s.run(batch: input)
        XCTAssertEqual(out["y"]!.scalars, input["x"]!.scalars.map { 2 * $0 })
        XCTAssertEqual(device.threads.count, 1, "one micro-batch: the whole batch")
        XCTAssertTrue(device.threads.first === Thread.current)
        XCTAssertEqual(shares[0].items, 7)
        XCTAssertEqual(shares[0].microBatches, 1)
        // A fixed micro-batch smaller than the batch goes through the workers, in pieces.
        let split = try Scheduler(graph: graph, outputs: ["y"], devices: [FaultyDevice("two")], options: SchedulerOptions(microBatch: 3))
        let (out2, shares2) = try split.run(batch: input)
        XCTAssertEqual(out2["y"]!.scalars, input["x"]!.scalars.map { 2 * $0 })
        XCTAssertEqual(shares2[0].microBatches, 3)
    }

    func testCancellationStopsTheRun() throws {
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [FaultyDevice("a", delay: 0.001)], options: SchedulerOptions(microBatch: 1))
        var count = 0
        XCTAssertThrowsError(try s.run(batches: AnyIterator(batches(50, rows: 2).makeIterator())) { _, _ in
            count += 1
            if count == 3 { s.cancel() }
        }) { error in
            guard case SchedulerError.cancelled = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(count, 3)
    }

    func testTwoCPUDevicesMatchOne() throws {
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("n"), 5])
        let y = b.add("y", .activation(.tanh), x)
        let g = b.build(outputs: [y])
        var rng = SeededGenerator(seed: 3)
        let input = Tensor.random(shape: [23, 5], using: &rng)
        let one = try CPUDevice(threads: 1).compile(g, outputs: ["y"]).run(["x": input])["y"]!
        let s = try Scheduler(graph: g, outputs: ["y"], devices: [CPUDevice(threads: 1), CPUDevice(threads: 1)], options: SchedulerOptions(microBatch: 3))
        let two = try s.runBatch(["x": input])["y"]!
        XCTAssertEqual(one.scalars, two.scalars)
    }

    func testAsynchronousDeviceGetsItsNextMicroBatchBeforeTheCurrentEnds() throws {
        let device = AsyncDevice()
        let s = try Scheduler(graph: graph, outputs: ["y"], devices: [device], options: SchedulerOptions(microBatch: 2))
        _ = try check(s, batches: batches(3, rows: 20))
        XCTAssertEqual(device.mostOutstanding, 2, "the scheduler should keep one micro-batch queued behind the running one")
    }
}
