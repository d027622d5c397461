// The runtime module as a library caller uses it: an engine on a zoo model and on an ONNX file
// (checked against onnxruntime's outputs kept with the fixture), its errors, shape-specialised
// ONNX graphs (one compile per shape, submitted asynchronously on OpenCL), and an extraction
// whose rows equal the engine's direct run.

import Foundation
import Quarry
import QuarryCPU
import QuarryFormats
import QuarryModels
import QuarryOpenCL
@testable import QuarryRuntime
import XCTest

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

private func onnxFixture(_ name: String) -> (model: String, inputs: [String: Tensor], outputs: [String: Tensor]) {
    let dir = fixtures.appendingPathComponent("onnx").appendingPathComponent(name)
    let inputs = (try? NumPy.readArchive(path: dir.appendingPathComponent("inputs.npz").path)) ?? [:]
    let outputs = (try? NumPy.readArchive(path: dir.appendingPathComponent("outputs.npz").path)) ?? [:]
    return (dir.appendingPathComponent("model.onnx").path, inputs.mapValues { $0.tensor() }, outputs.mapValues { $0.tensor() })
}

private func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.shape == b.shape else { return .infinity }
    var worst: Float = 0
    for i in 0..<a.count {
        let d = abs(a[flat: i] - b[flat: i])
        if d.isNaN { return .infinity }
        worst = max(worst, d)
    }
    return worst
}

private func temporaryFolder() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-runtime-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.path
}

final class EngineTests: XCTestCase {
    /// A Reshape target and Upsample scales fed as inputs: the engine reads their values, makes a
    /// graph per set of values, and matches onnxruntime; batched extraction refuses the model by name.
    func testONNXValueInputsRunThroughTheEngine() throws {
        let f = onnxFixture("reshape_shape_input")
        let engine = try Engine(model: f.model, device: "cpu", cpuThreads: 1)
        XCTAssertEqual(engine.inputs.map(\.name).sorted(), ["s", "sc", "x", "x4"])
        let out = try engine.run(f.inputs, outputs: ["y", "u"])
        for name in ["y", "u"] { XCTAssertLessThan(maxDifference(out[name]!, f.outputs[name]!), 1e-6, name) }
        // Other values, other graph: the same elements as [2, 12, 1].
        var other = f.inputs
        other["s"] = try Tensor(shape: [3], scalars: [2, 12, 1])
        let y = try XCTUnwrap(engine.run(other, outputs: ["y"])["y"])
        XCTAssertEqual(y.shape, [2, 12, 1])
        XCTAssertEqual(y.scalars, f.inputs["x"]!.scalars)
        XCTAssertThrowsError(try engine.model.compile(on: CPUDevice(threads: 1), outputs: ["y"])) {
            XCTAssertTrue("\($0)".contains("reads the values of input(s) s, sc"), "\($0)")
        }
    }

    func testONNXEngineMatchesOnnxruntimeAtSeveralBatchSizes() throws {
        let f = onnxFixture("shape_subgraph")
        XCTAssertFalse(f.inputs.isEmpty)
        let engine = try Engine(model: f.model, device: "cpu", cpuThreads: 2)
        XCTAssertEqual(engine.inputs.map(\.name), ["x"])
        XCTAssertEqual(engine.inputs[0].shape.first, .symbol("batch"))
        XCTAssertTrue(engine.taps.contains("y"))
        let x = f.inputs["x"]!
        // The whole batch, then its first rows alone: the reshape targets fold per batch size.
        for rows in [x.shape[0], 1, 2] {
            let out = try engine.run(["x": x.rows(0..<rows)], outputs: ["y", "z", "w"])
            for name in ["y", "z", "w"] {
                let expected = f.outputs[name]!.rows(0..<rows)
                XCTAssertLessThan(maxDifference(out[name]!, expected), 1e-5, "\(name) at batch \(rows)")
            }
        }
    }

    func testZooEngineIsDeterministicAndTapsIntermediateLayers() throws {
        let engine = try Engine(model: "plain_cnn", device: "cpu", cpuThreads: 1)
        XCTAssertTrue(engine.untrained)
        var rng = SeededGenerator(seed: 7)
        let x = Tensor.random(shape: [3, 3, 32, 32], using: &rng)
        let a = try engine.run(["input": x], outputs: ["features.0", "flatten"])
        let b = try Engine(model: "plain_cnn", device: "cpu", cpuThreads: 2).run(["input": x], outputs: ["flatten"])
        XCTAssertEqual(a["flatten"]!.shape.first, 3)
        XCTAssertEqual(maxDifference(a["flatten"]!, b["flatten"]!), 0, "two engines on the same seeded weights")
        XCTAssertEqual(a["features.0"]!.shape.first, 3)
    }

    func testEngineErrorsNameWhatIsWrong() throws {
        XCTAssertThrowsError(try Engine(model: "no_such_model")) { XCTAssertTrue("\($0)".contains("no_such_model")) }
        XCTAssertThrowsError(try Engine(model: "plain_cnn", device: "tpu:3")) { XCTAssertTrue("\($0)".contains("tpu:3")) }
        let engine = try Engine(model: "plain_cnn")
        let x = Tensor(shape: [1, 3, 32, 32], repeating: 0.5)
        XCTAssertThrowsError(try engine.run(["image": x])) { XCTAssertTrue("\($0)".contains("'image'")) }
        XCTAssertThrowsError(try engine.run([:])) { XCTAssertTrue("\($0)".contains("input")) }
        XCTAssertThrowsError(try engine.run(["input": Tensor(shape: [1, 3, 31, 32], repeating: 0.5)])) {
            XCTAssertTrue("\($0)".contains("dimension 2 must be 32"), "\($0)")
        }
        XCTAssertThrowsError(try engine.run(["input": x], outputs: ["features.99"])) { XCTAssertTrue("\($0)".contains("features.99")) }
    }

    func testEngineRunsFromSeveralThreads() throws {
        let engine = try Engine(model: "plain_cnn", device: "cpu", cpuThreads: 1)
        var rng = SeededGenerator(seed: 3)
        let inputs = (0..<4).map { _ in Tensor.random(shape: [2, 3, 32, 32], using: &rng) }
        let expected = try inputs.map { try engine.run(["input": $0], outputs: ["flatten"])["flatten"]! }
        let got = Results()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            got.set(i, try? engine.run(["input": inputs[i % 4]], outputs: ["flatten"])["flatten"])
        }
        for i in 0..<8 { XCTAssertEqual(got.get(i).map { maxDifference($0, expected[i % 4]) }, 0, "call \(i)") }
    }
}

/// Results written from several threads, under a lock.
private final class Results: @unchecked Sendable {
    private var values: [Int: Tensor] = [:]
    private let lock = NSLock()
    func set(_ i: Int, _ t: Tensor?) { lock.lock(); values[i] = t; lock.unlock() }
    func get(_ i: Int) -> Tensor? { lock.lock(); defer { lock.unlock() }; return values[i] }
}

final class ShapeSpecializedGraphTests: XCTestCase {
    func testCompilesOncePerShapeOnTheCPU() throws {
        let f = onnxFixture("shape_subgraph")
        let model = try loadONNX(f.model)
        let device = CPUDevice(threads: 2)
        let compiled = try XCTUnwrap(try model.compile(on: device, outputs: ["y"]) as? ShapeSpecializedGraph)
        let x = f.inputs["x"]!
        for rows in [3, 1, 3, 1, 2] {
            let y = try compiled.run(["x": x.rows(0..<rows)])["y"]!
            XCTAssertLessThan(maxDifference(y, f.outputs["y"]!.rows(0..<rows)), 1e-5)
        }
        XCTAssertEqual(compiled.specialisations, 3)
        XCTAssertEqual(try compiled.graph(for: ["x": [2, 8, 2]]).inputs.first?.name, "x")
    }

    func testSubmitsWithoutWaitingOnOpenCL() throws {
        guard let device = OpenCLRuntime.devices().first else { throw XCTSkip("no OpenCL device") }
        let f = onnxFixture("shape_subgraph")
        let model = try loadONNX(f.model)
        let compiled = try XCTUnwrap(try model.compile(on: device, outputs: ["y", "w"]) as? ShapeSpecializedGraph)
        let x = f.inputs["x"]!
        // Two runs of different shapes in flight at once; each waits for its own outputs.
        let first = try compiled.submit(["x": x.rows(0..<2)])
        let second = try compiled.submit(["x": x])
        XCTAssertFalse(first is CompletedRun, "OpenCL runs are handed back before they finish")
        let a = try first.wait(), b = try second.wait()
        XCTAssertLessThan(maxDifference(a["y"]!, f.outputs["y"]!.rows(0..<2)), 1e-5)
        XCTAssertLessThan(maxDifference(b["w"]!, f.outputs["w"]!), 1e-5)
    }
}

final class ExtractionLibraryTests: XCTestCase {
    func testExtractionRowsEqualTheEngineRun() throws {
        let dir = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SeededGenerator(seed: 11)
        let items = Tensor.random(shape: [5, 3, 32, 32], using: &rng)
        let input = dir + "/items.npy"
        try NumPy.write(items, to: input)
        var job = Extraction(model: "plain_cnn", input: [input], output: dir + "/feats.npy")
        job.batch = 2
        job.quiet = true
        XCTAssertEqual(try job.run(), .success)
        let features = try NumPy.readTensor(path: dir + "/feats.npy")
        let direct = try Engine(model: "plain_cnn").run(["input": items], outputs: ["flatten"])["flatten"]!
        XCTAssertEqual(features.shape, direct.shape)
        XCTAssertLessThan(maxDifference(features, direct), 1e-5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/feats.manifest.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/feats.npy.partial"))
    }

    /// Batches decoded into host-mapped OpenCL buffers give the rows ordinary memory gives.
    func testHostMappedBatchesOnOpenCLGiveTheSameRows() throws {
        guard !OpenCLRuntime.devices().isEmpty else { throw XCTSkip("no OpenCL device") }
        let dir = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../samples/images").standardized.path
        var rows: [Tensor] = []
        for mapped in [true, false] {
            var job = Extraction(model: "plain_cnn", input: [samples], output: dir + "/f\(mapped).npy")
            job.batch = 4
            job.device = "opencl:0"
            job.hostMappedInput = mapped
            job.quiet = true
            XCTAssertEqual(try job.run(), .success)
            rows.append(try NumPy.readTensor(path: dir + "/f\(mapped).npy"))
        }
        XCTAssertEqual(rows[0].shape[0], 6)
        XCTAssertEqual(rows[0].scalars, rows[1].scalars)
    }

    func testBadInputIsAnErrorAndWritesNothing() throws {
        let dir = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var job = Extraction(model: "plain_cnn", input: [dir + "/missing"], output: dir + "/feats.npy")
        job.quiet = true
        XCTAssertThrowsError(try job.run()) { XCTAssertTrue("\($0)".contains("missing"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/feats.npy"))
    }
}

final class BatchAxisTests: XCTestCase {
    /// A sequence-first LSTM ([T, batch, F], as torch.onnx exports nn.LSTM): its batch is found on
    /// dimension 1 of the input (the symbol named "batch") and of both outputs (by importing at two
    /// batch sizes), and the scheduler's micro-batches of 1 and 3 rows, split batch-first and run
    /// in the model's layout, give onnxruntime's outputs.
    func testSequenceFirstLSTMRunsInMicroBatchesAlongItsBatchDimension() throws {
        let f = onnxFixture("lstm_sequence_first")
        let model = try loadONNX(f.model)
        let axes = try batchAxes(of: model, explicit: nil)
        XCTAssertEqual(axes, ["x": 1])
        XCTAssertEqual(try batchAxes(of: model, explicit: -3), ["x": 0])
        XCTAssertThrowsError(try batchAxes(of: model, explicit: 3)) { XCTAssertTrue("\($0)".contains("'x' has 3 dimension(s)"), "\($0)") }
        let outputAxes = try outputBatchAxes(of: model, outputs: ["out", "hn"], inputAxes: axes, dims: [:])
        XCTAssertEqual(outputAxes, ["out": 1, "hn": 1])
        // The file fixes T = 6 on dimension 0: naming it the batch at another size is refused.
        XCTAssertThrowsError(try syntheticShapes(for: model, batch: 4, dims: [:], batchAxes: ["x": 0])) {
            XCTAssertTrue("\($0)".contains("fixes its batch dimension 0 at 6"), "\($0)")
        }
        XCTAssertEqual(try syntheticShapes(for: model, batch: 7, dims: [:], batchAxes: axes)["x"], [6, 7, 3])

        let compiled = try model.compile(on: CPUDevice(threads: 1), outputs: ["out", "hn"])
        let leading = BatchLeadingGraph(compiled, inputAxes: axes, outputAxes: outputAxes)
        let input = try XCTUnwrap(f.inputs["x"])
        XCTAssertEqual(input.shape, [6, 4, 3])
        for microBatch in [1, 3] {
            let scheduler = Scheduler(workers: [leading], options: SchedulerOptions(microBatch: microBatch))
            let (out, shares) = try scheduler.run(batch: leading.leadingInputs(["x": input]))
            XCTAssertEqual(shares.first?.microBatches, microBatch == 1 ? 4 : 2)
            for name in ["out", "hn"] {
                let expected = try XCTUnwrap(f.outputs[name])
                let got = try XCTUnwrap(out[name]).movingFrontAxis(to: 1)
                XCTAssertLessThan(maxDifference(got, expected), 1e-5, "\(name), micro-batches of \(microBatch)")
            }
        }
    }
}

final class DeviceLimitsTests: XCTestCase {
    /// A bf16 run reads against the bf16 peak where one was measured (vdpbf16ps), else fp32's.
    func testRunsReadAgainstThePeakOfTheirPrecision() {
        let measured = DeviceLimits(peakGFLOPS: 340, bandwidthGBps: 28, bf16PeakGFLOPS: 170)
        XCTAssertEqual(measured.computePeak(.fp32), 340)
        XCTAssertEqual(measured.computePeak(.bf16), 170)
        XCTAssertEqual(measured.reading(.bf16).peakGFLOPS, 170)
        XCTAssertEqual(measured.reading(.bf16).bandwidthGBps, 28)
        XCTAssertEqual(measured.reading(.fp32).peakGFLOPS, 340)
        XCTAssertEqual(DeviceLimits(peakGFLOPS: 340, bandwidthGBps: 28).computePeak(.bf16), 340)
    }
}
