// A graph compiled for one OpenCL device. Parameters are uploaded once at compile time and stay
// on the device. For each set of input shapes a plan is made once: the memory plan places every
// intermediate in one arena buffer, each node is lowered to launches whose arguments are set
// there and then, and a run only uploads the inputs, enqueues, and downloads the outputs (copies
// are asynchronous, ordered by the device's in-order queue and waited on by events).
// Plans come from the one plan builder (Quarry/PlanBuilder.swift). Before lowering, each node is
// put to the device's `supports`; those it does not run go to the CPU backend, with the reason in
// `fallbacks` and in the log (once a node). Consecutive CPU nodes form one host segment: its
// operands are read from the device once and the values it makes stay on the host until its end.

import COpenCL
import Foundation
import Quarry
import QuarryCPU

public final class OpenCLCompiledGraph: AsynchronousCompiledGraph, @unchecked Sendable {
    // @unchecked: `plans` and `fallbacks` change only under `lock`; a plan's buffers belong to the
    // in-order queue, which orders every run's use of them.
    public var device: Device { clDevice }
    public let clDevice: OpenCLDevice
    public let builder: PlanBuilder
    public var graph: Graph { builder.graph }
    public var outputs: [String] { builder.outputs }
    /// The arithmetic this graph runs in.
    public let precision: Precision = .fp32
    /// Node name → why it runs on the CPU instead.
    public var fallbacks: [String: String] { lock.lock(); defer { lock.unlock() }; return fallbackReasons }
    private var fallbackReasons: [String: String] = [:]
    /// Nodes named on the command line of `forceCPU` (tests of the fallback path).
    private let forceCPU: Set<String>
    let weights: WeightStore
    let cpuThreads = CPUThreads()
    let packCache = PackCache()
    private var plans: [[Int]: Plan] = [:]
    private let lock = NSLock()

    enum Step {
        case device(Node, [Launch])
        /// Consecutive nodes on the CPU.
        case host([HostNode])
    }

    struct HostNode {
        let node: Node
        let kernel: CPUKernel
        let inputs: [BufferRef?]
        let inputShapes: [[Int]?]
        let outputs: [BufferRef]
        let outputShapes: [[Int]]
    }

    final class Plan {
        let shapes: [String: [Int]]
        let memory: MemoryPlan
        let arena: CLMem
        let scratch: CLMem
        let inputBuffers: [String: CLMem]
        let steps: [Step]
        init(shapes: [String: [Int]], memory: MemoryPlan, arena: CLMem, scratch: CLMem,
             inputBuffers: [String: CLMem], steps: [Step]) {
            self.shapes = shapes; self.memory = memory; self.arena = arena; self.scratch = scratch
            self.inputBuffers = inputBuffers; self.steps = steps
        }
    }

    /// `forceCPU` names nodes to run on the CPU regardless (tests of the fallback path).
    init(device: OpenCLDevice, graph source: Graph, outputs: [String], forceCPU: Set<String> = []) throws {
        clDevice = device
        self.forceCPU = forceCPU
        builder = try PlanBuilder(source, outputs: outputs, evaluate: CPUKernels.evaluate)
        weights = WeightStore(device: device)
        // What falls back whatever the shapes is known (and logged) now; shape limits per plan.
        for node in builder.graph.nodes {
            if let why = forceCPU.contains(node.name) ? "forced onto the CPU" : OpenCLDevice.unsupportedReason(node.op) {
                fallBack(node, why)
            }
        }
        // Weights go to the device now, once; plans for new shapes reuse them.
        for (name, p) in graph.parameters {
            if let v = p.value { _ = try weights.buffer("param:" + name) { v } }
        }
    }

    /// Bytes of device memory the weights (and packed copies of them) take.
    public var weightBytes: Int { weights.totalBytes }

    public func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        lock.lock(); defer { lock.unlock() }
        return try plan(for: inputShapes).memory.peakBytes
    }

    /// Records that `node` runs on the CPU, logging it the first time.
    private func fallBack(_ node: Node, _ why: String) {
        if fallbackReasons[node.name] == nil {
            OpenCLLog.log("node '\(node.name)' (\(node.op.name)) runs on the CPU: \(why)")
        }
        fallbackReasons[node.name] = why
    }

    private func plan(for inputShapes: [String: [Int]]) throws -> Plan {
        let key = builder.shapeKey(inputShapes)
        if let p = plans[key] { return p }
        let planned = try builder.plan(inputShapes)
        let graph = planned.graph, shapes = planned.shapes, memory = planned.memory
        var inputBuffers: [String: CLMem] = [:]
        for gi in graph.inputs {
            inputBuffers[gi.name] = try CLMem(device: clDevice, floats: shapes[gi.name]?.reduce(1, *) ?? 1)
        }
        func ref(_ value: String) throws -> BufferRef {
            guard let loc = memory.locations[value] else { throw QuarryError.unknownValue(value) }
            switch loc {
            case .arena(let off): return BufferRef(base: .arena, offset: off)
            case .external(let name):
                if let b = inputBuffers[name] { return BufferRef(base: .fixed(b), offset: 0) }
                return BufferRef(base: .fixed(try weights.buffer("param:" + name) {
                    guard let v = graph.parameters[name]?.value else { throw QuarryError.unknownValue(name) }
                    return v
                }), offset: 0)
            }
        }
        var steps: [Step] = []
        var scratchFloats = 0
        for planned in planned.nodes {
            let node = planned.node, inShapes = planned.inputShapes, outShapes = planned.outputShapes
            let inRefs = try node.inputs.map { $0.isEmpty ? nil : try ref($0) }
            let outRefs = try node.outputs.map(ref)
            var reason = forceCPU.contains(node.name) ? "forced onto the CPU"
                : clDevice.supports(node, inputShapes: inShapes, precision: precision).reason
            if reason == nil {
                let lowering = Lowering(
                    device: clDevice, node: node, inputShapes: inShapes, outputShapes: outShapes,
                    inputs: inRefs, outputs: outRefs, constants: planned.constants, weights: weights)
                do {
                    try lowering.lower()
                    steps.append(.device(node, lowering.launches))
                    scratchFloats = max(scratchFloats, lowering.scratchFloats)
                    continue
                } catch QuarryError.unsupported(let why) {
                    // A limit `supports` does not know yet: still a fallback, not a failure.
                    reason = why
                }
            }
            fallBack(node, reason ?? "")
            let ctx = KernelContext(
                node: node, inputShapes: inShapes, outputShapes: outShapes, constants: planned.constants,
                threads: cpuThreads, packCache: packCache)
            let kernel: CPUKernel
            do {
                kernel = try CPUKernels.make(ctx)
            } catch {
                throw QuarryError.unsupported("node '\(node.name)' (\(node.op.name)) runs neither on \(clDevice.info.spec) (\(reason ?? "")) nor on the CPU (\(error))")
            }
            let hostNode = HostNode(node: node, kernel: kernel, inputs: inRefs, inputShapes: inShapes, outputs: outRefs, outputShapes: outShapes)
            if case .host(let segment)? = steps.last {
                steps[steps.count - 1] = .host(segment + [hostNode])
            } else {
                steps.append(.host([hostNode]))
            }
        }
        let arena = try CLMem(device: clDevice, floats: memory.arenaCount)
        let scratch = try CLMem(device: clDevice, floats: scratchFloats)
        for case .device(_, let launches) in steps {
            for l in launches { try l.bind(arena: arena.mem, scratch: scratch.mem) }
        }
        let p = Plan(shapes: shapes, memory: memory, arena: arena, scratch: scratch, inputBuffers: inputBuffers, steps: steps)
        plans[key] = p
        return p
    }

    /// The launches a plan makes for these input shapes (kernel names, in order), for tests and
    /// profiles.
    public func kernelNames(inputShapes: [String: [Int]]) throws -> [String: [String]] {
        lock.lock(); defer { lock.unlock() }
        var out: [String: [String]] = [:]
        for step in try plan(for: inputShapes).steps {
            switch step {
            case .device(let node, let launches): out[node.name] = launches.map(\.kernel.name)
            case .host(let segment): for h in segment { out[h.node.name] = ["cpu"] }
            }
        }
        return out
    }

    /// Fills the intermediates and scratch of the plan for these shapes with NaN, so that a test
    /// sees any element a kernel forgets to write.
    public func poisonArena(inputShapes: [String: [Int]]) throws {
        lock.lock(); defer { lock.unlock() }
        let plan = try plan(for: inputShapes)
        var nan = Float.nan
        for m in [plan.arena, plan.scratch] {
            try clCheck(clEnqueueFillBuffer(clDevice.queue, m.mem, &nan, 4, 0, max(m.floats, 1) * 4, 0, nil, nil), "poisoning a plan's buffers")
        }
        try clDevice.finish()
    }

    public func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try enqueue(inputs, profiler: profiler).wait()
    }

    /// Enqueues the upload, the kernels and the download of one run and returns without waiting,
    /// so that a scheduler can hand this device its next micro-batch while this one computes. The
    /// queue is in order, so the next run's upload into the same buffers starts only after this
    /// run's kernels and download are done.
    public func submit(_ inputs: [String: Tensor]) throws -> PendingRun {
        try enqueue(inputs, profiler: nil)
    }

    private func enqueue(_ inputs: [String: Tensor], profiler: Profiler?) throws -> OpenCLPendingRun {
        try builder.checkInputs(inputs)
        lock.lock()
        defer { lock.unlock() }
        let plan = try self.plan(for: inputs.mapValues(\.shape))
        let queue = clDevice.queue
        var pending: [OpenCLEvent] = []
        for gi in graph.inputs {
            guard let t = inputs[gi.name], let buf = plan.inputBuffers[gi.name] else { continue }
            var e: cl_event?
            try clCheck(clEnqueueWriteBuffer(queue, buf.mem, cl_bool(CL_FALSE), 0, t.count * 4, t.pointer, 0, nil, &e),
                        "upload of input '\(gi.name)'")
            pending.append(OpenCLEvent(e, keeping: t.storage))
        }
        func mem(_ r: BufferRef) -> cl_mem {
            switch r.base {
            case .arena: return plan.arena.mem
            case .scratch: return plan.scratch.mem
            case .fixed(let m): return m.mem
            }
        }
        for step in plan.steps {
            switch step {
            case .device(let node, let launches):
                let t0 = profiler == nil ? 0 : DispatchTime.now().uptimeNanoseconds
                for l in launches { try l.enqueue(on: queue) }
                if let profiler {
                    try clDevice.finish()
                    profiler.record(node: node.name, op: node.op.name, seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
            case .host(let segment):
                // Values made inside the segment stay here; the rest are read from the device
                // once (blocking reads: the in-order queue finishes earlier work first).
                var onHost: [String: Tensor] = [:]
                for h in segment {
                    let t0 = profiler == nil ? 0 : DispatchTime.now().uptimeNanoseconds
                    var hostIn: [Tensor?] = []
                    for (name, (r, s)) in zip(h.node.inputs, zip(h.inputs, h.inputShapes)) {
                        guard let r, let s else { hostIn.append(nil); continue }
                        if let t = onHost[name] { hostIn.append(t); continue }
                        let t = Tensor(uninitializedShape: s)
                        try clCheck(clEnqueueReadBuffer(queue, mem(r), cl_bool(CL_TRUE), r.offset * 4, t.count * 4, t.pointer, 0, nil, nil),
                                    "download of an input of CPU node '\(h.node.name)'")
                        onHost[name] = t
                        hostIn.append(t)
                    }
                    let hostOut = h.outputShapes.map { Tensor(uninitializedShape: $0) }
                    h.kernel(hostIn.map { $0.map { UnsafePointer($0.pointer) } }, hostOut.map(\.pointer))
                    for (name, t) in zip(h.node.outputs, hostOut) { onHost[name] = t }
                    if let profiler {
                        profiler.record(node: h.node.name, op: h.node.op.name, seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                    }
                }
                // Every value the segment made goes to its place on the device (later steps and
                // outputs read it there).
                for h in segment {
                    for (name, r) in zip(h.node.outputs, h.outputs) {
                        guard let t = onHost[name], t.count > 0 else { continue }
                        try clCheck(clEnqueueWriteBuffer(queue, mem(r), cl_bool(CL_TRUE), r.offset * 4, t.count * 4, t.pointer, 0, nil, nil),
                                    "upload of an output of CPU node '\(h.node.name)'")
                    }
                }
            }
        }
        var result: [String: Tensor] = [:]
        for name in outputs {
            guard let shape = plan.shapes[name], let loc = plan.memory.locations[name] else { throw QuarryError.unknownValue(name) }
            let t = Tensor(uninitializedShape: shape)
            let r: BufferRef
            switch loc {
            case .arena(let off): r = BufferRef(base: .arena, offset: off)
            case .external(let ext):
                if let b = plan.inputBuffers[ext] { r = BufferRef(base: .fixed(b), offset: 0) }
                else {
                    r = BufferRef(base: .fixed(try weights.buffer("param:" + ext) {
                        guard let v = graph.parameters[ext]?.value else { throw QuarryError.unknownValue(ext) }
                        return v
                    }), offset: 0)
                }
            }
            var e: cl_event?
            if t.count > 0 {
                try clCheck(clEnqueueReadBuffer(queue, mem(r), cl_bool(CL_FALSE), r.offset * 4, t.count * 4, t.pointer, 0, nil, &e),
                            "download of output '\(name)'")
                pending.append(OpenCLEvent(e, keeping: t.storage))
            }
            result[name] = t
        }
        return OpenCLPendingRun(events: pending, result: result)
    }
}

/// A run whose downloads may still be in flight.
final class OpenCLPendingRun: PendingRun {
    private let events: [OpenCLEvent]
    private let result: [String: Tensor]
    init(events: [OpenCLEvent], result: [String: Tensor]) { self.events = events; self.result = result }
    func wait() throws -> [String: Tensor] {
        for e in events { try e.wait() }
        return result
    }
}
