// Runs conformance cases: each case's op as a one-node graph compiled on a device (operands graph
// inputs or parameters, as the case says), with what can be poisoned filled with NaN first, then
// compared with the float64 reference or with the CPU device's output under the op's bound. An
// OpenCL node that runs on the CPU instead is reported as a fallback, never as the device passing.

import Foundation
import Quarry
import QuarryCPU
import QuarryOpenCL

/// What one case gave on one device.
public struct CaseResult: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        /// Within the bound, run by the device itself.
        case passed
        /// Outside the bound, a wrong shape, a non-finite element, or an error.
        case failed
        /// The node ran on the CPU for a reason README documents; neither passed nor failed.
        case fallback
    }
    public var op: String
    public var name: String
    public var seed: UInt64
    public var shapes: String
    public var form: String
    public var attributes: String
    public var status: Status
    /// The worst element's |actual - expected| and the bound there (atol + rtol * its scale).
    public var maxError: Double
    public var bound: Double
    /// The node ran on the CPU (OpenCL), and why.
    public var fellBack: Bool
    public var fallbackReason: String?
    public var message: String?
    /// --perf: median seconds of one run, and GFLOP/s where the op counts multiply-adds.
    public var seconds: Double?
    public var gflops: Double?
}

/// What a device's results are compared with.
public enum Baseline: Sendable {
    /// The float64 reference.
    case float64
    /// The CPU device's output for the same case (the bound widened twice: both are float32).
    case cpu(CPUDevice)
}

/// A one-node graph of `c`: operands named "operand0"…, outputs "output0"…
public func caseGraph(_ c: ConformanceCase) -> (graph: Graph, feeds: [String: Tensor], outputs: [String]) {
    var inputs: [GraphInput] = []
    var params: [String: Parameter] = [:]
    var feeds: [String: Tensor] = [:]
    var names: [String] = []
    for (i, t) in c.operands.enumerated() {
        guard let t else { names.append(""); continue }
        let name = "operand\(i)"
        names.append(name)
        if c.form == .parameters && i > 0 {
            params[name] = Parameter(shape: t.shape, initializer: .constant(0), value: t)
        } else {
            inputs.append(GraphInput(name: name, shape: t.shape.map { .fixed($0) }))
            feeds[name] = t
        }
    }
    let outputs = (0..<c.outputCount).map { "output\($0)" }
    let node = Node(name: c.name, op: c.op, inputs: names, outputs: outputs)
    return (Graph(inputs: inputs, nodes: [node], parameters: params, outputs: outputs), feeds, outputs)
}

/// Compiles and runs `c` on `device` once, poisoning first: the OpenCL plan's arena and scratch
/// with NaN; on the CPU, where outputs are fresh allocations, the same-sized blocks are filled with
/// NaN and freed just before, so that the allocator most likely hands them back (a best effort).
/// Returns the outputs and, on OpenCL, the nodes that ran on the CPU.
public func runCase(_ c: ConformanceCase, on device: Device) throws -> (outputs: [Tensor], fallbacks: [String: String]) {
    let (g, feeds, outputs) = caseGraph(c)
    let compiled = try device.compile(g, outputs: outputs)
    let shapes = feeds.mapValues(\.shape)
    if let cl = compiled as? OpenCLCompiledGraph {
        try cl.poisonArena(inputShapes: shapes)
    } else {
        let outShapes = try compiled.graph.inferShapes(inputShapes: shapes)
        var decoys: [Tensor] = []
        for name in outputs { if let s = outShapes[name] { decoys.append(Tensor(shape: s, repeating: .nan)) } }
        decoys.removeAll()
    }
    let result = try compiled.run(feeds)
    let fallbacks = (compiled as? OpenCLCompiledGraph)?.fallbacks ?? [:]
    return (try outputs.map { name in
        guard let t = result[name] else { throw QuarryError.unknownValue("\(c.name): the device returned no '\(name)'") }
        return t
    }, fallbacks)
}

/// The worst element of `actual` against `expected` values with error scales `scale`.
public struct Comparison: Sendable {
    public var passed: Bool
    public var maxError: Double
    public var bound: Double
    public var message: String?
}

public func compare(_ actual: Tensor, expected: [Double], scale: [Double], expectedShape: [Int], bound: ErrorBound, what: String) -> Comparison {
    guard actual.shape == expectedShape else {
        return Comparison(passed: false, maxError: .infinity, bound: 0, message: "\(what): shape \(actual.shape), expected \(expectedShape)")
    }
    var worstRatio = -1.0, worstError = 0.0, worstBound = 0.0, worstIndex = 0
    let p = actual.pointer
    for i in 0..<expected.count {
        let a = Double(p[i]), e = expected[i]
        let allowed = bound.atol + bound.rtol * scale[i]
        if !a.isFinite || !e.isFinite {
            // Both infinite of one sign (a max over an all-padded window cannot occur: windows
            // always hold an input element) is a match; anything else non-finite is a failure.
            if a == e { continue }
            return Comparison(passed: false, maxError: .infinity, bound: allowed,
                              message: "\(what): element \(i) \(multiIndex(i, expectedShape)) is \(p[i]) (unwritten, or overflowed), expected \(e)")
        }
        let err = Swift.abs(a - e)
        let ratio = allowed > 0 ? err / allowed : (err > 0 ? .infinity : 0)
        if ratio > worstRatio { worstRatio = ratio; worstError = err; worstBound = allowed; worstIndex = i }
    }
    let passed = worstRatio <= 1
    return Comparison(
        passed: passed, maxError: worstError, bound: worstBound,
        message: passed ? nil : "\(what): element \(worstIndex) \(multiIndex(worstIndex, expectedShape)) is \(p[worstIndex]), expected \(expected[worstIndex]) (error \(worstError), bound \(worstBound))")
}

/// Runs `c` on `device` and checks it against `baseline`, under the op's bound at `precision`.
public func checkCase(_ c: ConformanceCase, on device: Device, against baseline: Baseline, precision: Precision = .fp32) -> CaseResult {
    var result = CaseResult(
        op: c.key, name: c.name, seed: c.seed, shapes: c.shapes, form: c.form.rawValue, attributes: c.summary,
        status: .failed, maxError: 0, bound: 0, fellBack: false)
    do {
        let reference = try referenceOutputs(c.op, c.operands)
        var expected = reference.map(\.values)
        var bound = ErrorBound.forOp(c.op, precision: precision)
        if case .cpu(let cpu) = baseline {
            expected = try runCase(c, on: cpu).outputs.map { $0.scalars.map(Double.init) }
            bound = bound.widened(2)
        }
        let (outputs, fallbacks) = try runCase(c, on: device)
        if let why = fallbacks.values.first {
            result.fellBack = true
            result.fallbackReason = why
        }
        guard outputs.count == reference.count else {
            result.message = "\(outputs.count) outputs, expected \(reference.count)"
            return result
        }
        var worst = Comparison(passed: true, maxError: 0, bound: 0, message: nil)
        var worstRatio = -1.0
        for (i, out) in outputs.enumerated() {
            let cmp = compare(out, expected: expected[i], scale: reference[i].scale, expectedShape: reference[i].shape,
                              bound: bound, what: "output \(i)")
            let ratio = cmp.passed ? (cmp.bound > 0 ? cmp.maxError / cmp.bound : 0) : .infinity
            if !cmp.passed && worst.passed || ratio > worstRatio { worst = cmp; worstRatio = ratio }
            if !cmp.passed { break }
        }
        result.maxError = worst.maxError
        result.bound = worst.bound
        result.message = worst.message
        if !worst.passed {
            result.status = .failed
        } else if result.fellBack {
            // Right, but not the device's own work. Forms the device declines (its `supports`
            // answer for the node at these shapes, the limits README lists) are reported as
            // fallbacks; any other node it gave to the CPU fails, since it claimed the node.
            let node = Node(name: c.name, op: c.op, inputs: [], outputs: [])
            let declined = device.supports(node, inputShapes: c.operands.map { $0?.shape }, precision: .fp32) != .yes
            result.status = declined ? .fallback : .failed
            if result.status == .failed {
                result.message = "ran on the CPU, which README does not document for this form: \(result.fallbackReason ?? "")"
            }
        } else {
            result.status = .passed
        }
    } catch {
        result.status = .failed
        result.maxError = .infinity
        result.message = "\(error)"
    }
    return result
}

/// Times `c` on `device`: one run to warm up, then runs until `budget` seconds have passed (at
/// least 3, at most 200); the median.
public func timeCase(_ c: ConformanceCase, on device: Device, budget: Double = 0.2) -> CaseResult {
    var result = CaseResult(
        op: c.key, name: c.name, seed: c.seed, shapes: c.shapes, form: c.form.rawValue, attributes: c.summary,
        status: .passed, maxError: 0, bound: 0, fellBack: false)
    do {
        let (g, feeds, outputs) = caseGraph(c)
        let compiled = try device.compile(g, outputs: outputs)
        _ = try compiled.run(feeds)
        if let cl = compiled as? OpenCLCompiledGraph, let why = cl.fallbacks.values.first {
            result.fellBack = true
            result.fallbackReason = why
            result.status = .fallback
        }
        var times: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        while times.count < 3 || (times.count < 200 && Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < budget) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try compiled.run(feeds)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.sort()
        let median = times[times.count / 2]
        result.seconds = median
        let shapes = try compiled.graph.inferShapes(inputShapes: feeds.mapValues(\.shape))
        let work = compiled.graph.nodes.reduce(0) { $0 + macs(of: $1, shapes: shapes) }
        if work > 0 { result.gflops = 2 * Double(work) / median / 1e9 }
    } catch {
        result.status = .failed
        result.message = "\(error)"
    }
    return result
}
