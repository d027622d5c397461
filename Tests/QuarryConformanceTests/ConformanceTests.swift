// Every conformance case on the CPU device and on the first OpenCL device (PoCL here; skipped when
// there is none) against the float64 reference: every op, every operand form it accepts, so that
// a backend that drops an operand fails. The seed is fresh each run and printed; QUARRY_TEST_SEED
// replays it (and `quarry test-ops --seed S --ops KEY` runs the same cases).

import Foundation
import Quarry
import QuarryConformance
import QuarryCPU
import QuarryOpenCL
import XCTest

final class ConformanceTests: XCTestCase {
    /// Sixteen cases of an op cover all of its operand forms and fused activations (forms follow
    /// the case number). The CPU runs all sixteen of every op.
    static let casesPerOp = 16
    /// On PoCL every new shape builds new kernel specialisations (about 0.2 s each on this
    /// machine), so the OpenCL run takes four cases of each op, numbered from a start drawn from
    /// the seed (all forms are covered across runs), and all sixteen of the ops with fused
    /// epilogues (conv2d, dense, add). `quarry test-ops` on PoCL in CI runs sixteen of every op.
    static let openCLCasesPerOp = 4
    static let fusedKeys = ["conv2d", "dense", "add"]

    func seed(file: StaticString = #filePath, line: UInt = #line) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["QUARRY_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64(Date().timeIntervalSince1970 * 1e6)
        print("test seed \(seed) (\(file):\(line))")
        return seed
    }

    func openCLDevice() throws -> OpenCLDevice {
        let spec = ProcessInfo.processInfo.environment["QUARRY_TEST_OPENCL_DEVICE"] ?? "opencl:0"
        guard !OpenCLRuntime.devices().isEmpty else {
            throw XCTSkip("no OpenCL device: \(OpenCLRuntime.discoveryError ?? "none found")")
        }
        return try OpenCLRuntime.device(spec: spec)
    }

    /// Runs the cases on `device` and fails once per failing case, naming it.
    func checkAll(_ cases: [ConformanceCase], on device: Device, file: StaticString = #filePath, line: UInt = #line) {
        var passed = 0, fellBack = 0
        for c in cases {
            let r = checkCase(c, on: device, against: .float64)
            switch r.status {
            case .passed: passed += 1
            case .fallback:
                fellBack += 1
                // The device declined the node; the case list knows every form README lists.
                if c.knownFallback == nil {
                    XCTFail("\(device.info.spec): \(c.name) (seed \(c.seed)) ran on the CPU, a form README does not list: \(r.fallbackReason ?? "")",
                            file: file, line: line)
                }
            case .failed:
                XCTFail("\(device.info.spec): \(c.name) (seed \(c.seed)) \(c.shapes) [\(c.form.rawValue)] \(c.summary): \(r.message ?? "")",
                        file: file, line: line)
            }
        }
        print("\(device.info.spec): \(passed) of \(cases.count) cases passed, \(fellBack) ran on the CPU as documented")
    }

    func testEveryOpOnTheCPU() throws {
        checkAll(CaseList.cases(seed: seed(), perOp: Self.casesPerOp), on: CPUDevice(threads: 2))
    }

    func testEveryOpOnOpenCL() throws {
        let device = try openCLDevice()
        let s = seed()
        let others = CaseList.keys.filter { !Self.fusedKeys.contains($0) }
        let start = Int(s % UInt64(Self.casesPerOp))
        print("cases \(start)..<\(start + Self.openCLCasesPerOp) of each op, every case of \(Self.fusedKeys)")
        checkAll(CaseList.cases(seed: s, perOp: Self.openCLCasesPerOp, keys: others, firstIndex: start)
                 + CaseList.cases(seed: s, perOp: Self.casesPerOp, keys: Self.fusedKeys), on: device)
    }

    func testCaseListCoversEveryOpAndEveryOperandForm() throws {
        let cases = CaseList.cases(seed: seed(), perOp: Self.casesPerOp)
        // Every computing case of Op (the switch fails to compile when a case is added).
        func family(_ op: Op) -> String? {
            switch op {
            case .input, .constant, .expandDepthwiseProject: return nil
            case .conv2d: return "conv2d"
            case .convTranspose2d: return "conv_transpose2d"
            case .dense: return "dense"
            case .matmul: return "matmul"
            case .maxPool2d: return "max_pool2d"
            case .avgPool2d: return "avg_pool2d"
            case .globalAvgPool: return "global_avg_pool"
            case .globalMaxPool: return "global_max_pool"
            case .batchNorm: return "batch_norm"
            case .layerNorm: return "layer_norm"
            case .instanceNorm: return "instance_norm"
            case .softmax: return "softmax"
            case .logSoftmax: return "log_softmax"
            case .attention: return "attention"
            case .lstm: return "lstm"
            case .gru: return "gru"
            case .embedding: return "embedding"
            case .activation: return "activation"
            case .binary: return "binary"
            case .select: return "select"
            case .reduce: return "reduce"
            case .concat: return "concat"
            case .split: return "split"
            case .slice: return "slice"
            case .pad: return "pad"
            case .upsample: return "upsample"
            case .reshape: return "reshape"
            case .transpose: return "transpose"
            case .flatten: return "flatten"
            case .identity: return "identity"
            case .argExtreme(let largest, _, _, _): return largest ? "argmax" : "argmin"
            case .topK: return "topk"
            case .cumSum: return "cumsum"
            case .gather: return "gather"
            case .gatherElements: return "gather_elements"
            case .gatherND: return "gather_nd"
            case .scatterND: return "scatter_nd"
            }
        }
        let families = Set(cases.compactMap { family($0.op) })
        XCTAssertEqual(families.count, 38, "op families with cases: \(families.sorted())")
        XCTAssertEqual(Set(cases.map(\.key)), Set(CaseList.keys))
        func has(_ key: String, _ test: (ConformanceCase) -> Bool) -> Bool { cases.contains { $0.key == key && test($0) } }
        func operand(_ c: ConformanceCase, _ i: Int) -> Bool { i < c.operands.count && c.operands[i] != nil }
        // Optional operands both present and absent; both operand forms.
        for (key, optional) in [("conv2d", [2, 3]), ("conv_transpose2d", [2]), ("dense", [2]), ("attention", [3]),
                                ("lstm", [3, 4, 5]), ("gru", [3, 4]), ("layer_norm", [1, 2]), ("instance_norm", [1, 2])] {
            for i in optional {
                XCTAssertTrue(has(key) { operand($0, i) }, "\(key) operand \(i) present")
                XCTAssertTrue(has(key) { !operand($0, i) }, "\(key) operand \(i) absent")
            }
            XCTAssertTrue(has(key) { $0.form == .parameters } && has(key) { $0.form == .inputs }, "\(key) both forms")
        }
        XCTAssertTrue(has("conv2d") { if case .conv2d(let a) = $0.op { return a.groups > 1 && a.groups == $0.operands[0]!.shape[1] }; return false }, "depthwise")
        XCTAssertTrue(has("attention") { if case .attention(_, true) = $0.op { return true }; return false }, "causal")
        XCTAssertTrue(has("max_pool2d") { if case .maxPool2d(let a) = $0.op { return a.ceilMode }; return false }, "ceil mode")
        XCTAssertTrue(has("avg_pool2d") { if case .avgPool2d(let a) = $0.op { return !a.countIncludePad }; return false }, "count_include_pad off")
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            XCTAssertTrue(has("matmul") { if case .matmul(ta, tb) = $0.op { return true }; return false }, "matmul \(ta) \(tb)")
        }
        XCTAssertTrue(cases.contains { $0.operands[0]!.shape.first == 1 } && cases.contains { ($0.operands[0]!.shape.first ?? 0) >= 8 }, "batch 1 and large")
        // Every fused activation (and none) in the conv, dense and binary epilogues.
        func fusedActivation(_ op: Op) -> Activation?? {
            switch op {
            case .conv2d(let a): return .some(a.activation)
            case .convTranspose2d(let a): return .some(a.activation)
            case .dense(let a), .binary(_, let a): return .some(a)
            default: return nil
            }
        }
        for key in ["conv2d", "conv_transpose2d", "dense", "add", "mul"] {
            let seen = cases.filter { $0.key == key }.compactMap { fusedActivation($0.op) }
            for act in CaseList.fusedActivations { XCTAssertTrue(seen.contains(act), "\(key) with \(act.map(activationKey) ?? "no activation")") }
        }
        // Inputs are never all zeros.
        for c in cases { for t in c.operands.compactMap({ $0 }) where t.count > 0 { XCTAssertFalse(t.scalars.allSatisfy { $0 == 0 }, c.name) } }
        // A case is the same from the same seed whatever else is selected.
        let again = CaseList.makeCase(key: "conv2d", index: 5, seed: cases[0].seed)
        let first = cases.first { $0.name == "conv2d#5" }!
        XCTAssertEqual(again.operands.map { $0?.scalars }, first.operands.map { $0?.scalars })
    }

    /// The suite catches a backend that drops an operand: a device that compiles every conv2d
    /// without its residual (as the OpenCL lowering once did) fails the residual cases, and a
    /// device that drops biases fails the bias cases.
    func testSuiteFailsABackendThatDropsAnOperand() throws {
        let s = seed()
        for (dropped, what) in [(3, "residual"), (2, "bias")] {
            let device = DroppingDevice(dropping: dropped)
            let cases = CaseList.cases(seed: s, perOp: 6, keys: ["conv2d"])
            var failedWith = 0, failedWithout = 0, with = 0
            for c in cases {
                let present = c.operands[dropped] != nil
                if present { with += 1 }
                let r = checkCase(c, on: device, against: .float64)
                if r.status == .failed { if present { failedWith += 1 } else { failedWithout += 1 } }
            }
            XCTAssertGreaterThan(with, 0)
            XCTAssertEqual(failedWith, with, "every conv2d case with a \(what) fails when it is dropped")
            XCTAssertEqual(failedWithout, 0, "cases without a \(what) pass")
        }
    }
}

/// A CPU device that removes one operand of every conv2d node before compiling.
final class DroppingDevice: Device {
    let cpu = CPUDevice(threads: 1)
    let dropping: Int
    init(dropping: Int) { self.dropping = dropping }
    var info: DeviceInfo { cpu.info }
    func supports(_ op: Op) -> Bool { cpu.supports(op) }
    func allocate(byteCount: Int) throws -> DeviceBuffer { try cpu.allocate(byteCount: byteCount) }
    func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent { try cpu.upload(tensor, to: buffer) }
    func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent { try cpu.download(buffer, into: tensor) }
    func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph {
        var g = graph
        for i in g.nodes.indices {
            if case .conv2d = g.nodes[i].op, dropping < g.nodes[i].inputs.count {
                let name = g.nodes[i].inputs[dropping]
                g.nodes[i].inputs[dropping] = ""
                g.inputs.removeAll { $0.name == name }
                g.parameters[name] = nil
            }
        }
        return try DroppingCompiled(cpu.compile(g, outputs: outputs), dropped: Set(graph.inputs.map(\.name)).subtracting(g.inputs.map(\.name)))
    }
}

/// Forwards to the CPU's compiled graph, leaving out the inputs the device dropped.
final class DroppingCompiled: CompiledGraph {
    let inner: CompiledGraph
    let dropped: Set<String>
    init(_ inner: CompiledGraph, dropped: Set<String>) { self.inner = inner; self.dropped = dropped }
    var device: Device { inner.device }
    var graph: Graph { inner.graph }
    var outputs: [String] { inner.outputs }
    func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try inner.run(inputs.filter { !dropped.contains($0.key) }, profiler: profiler)
    }
    func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        try inner.peakActivationBytes(inputShapes: inputShapes.filter { !dropped.contains($0.key) })
    }
}
