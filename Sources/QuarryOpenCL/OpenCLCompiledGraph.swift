// A graph compiled for one OpenCL device. Parameters are uploaded once at compile time and stay
// on the device. For each set of input shapes a plan is made once: the memory plan places every
// intermediate in one arena buffer, each node is lowered to launches whose arguments are set
// there and then, and a run only uploads the inputs, enqueues, and downloads the outputs (copies
// are asynchronous, ordered by the device's in-order queue and waited on by events).
// Nodes the device does not run go to the CPU backend, with the reason in `fallbacks` and the log.

import COpenCL
import Foundation
import Quarry
import QuarryCPU

public final class OpenCLCompiledGraph: AsynchronousCompiledGraph, @unchecked Sendable {
    public var device: Device { clDevice }
    public let clDevice: OpenCLDevice
    public let graph: Graph
    public let outputs: [String]
    /// Node name → why it runs on the CPU instead.
    public private(set) var fallbacks: [String: String] = [:]
    let weights: WeightStore
    let cpuThreads = CPUThreads()
    let packCache = PackCache()
    private var plans: [[Int]: Plan] = [:]
    private let lock = NSLock()

    enum Step {
        case device(Node, [Launch])
        case host(Node, CPUKernel, inputs: [BufferRef?], inputShapes: [[Int]?], outputs: [BufferRef], outputShapes: [[Int]])
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
        self.outputs = outputs
        for (name, p) in source.parameters where p.value == nil {
            throw QuarryError.invalidArgument(
                "parameter '\(name)' has no value: load a checkpoint or call materializeParameters()")
        }
        graph = try source.optimized(for: outputs, evaluate: CPUKernels.evaluate)
        weights = WeightStore(device: device)
        for node in graph.nodes {
            if let why = OpenCLDevice.unsupportedReason(node.op) ?? (forceCPU.contains(node.name) ? "forced onto the CPU" : nil) {
                fallbacks[node.name] = why
                OpenCLLog.log("node '\(node.name)' (\(node.op.name)) runs on the CPU: \(why)")
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

    private func shapeKey(_ inputShapes: [String: [Int]]) -> [Int] {
        graph.inputs.flatMap { (inputShapes[$0.name] ?? []) + [-1] }
    }

    private func plan(for inputShapes: [String: [Int]]) throws -> Plan {
        let key = shapeKey(inputShapes)
        if let p = plans[key] { return p }
        let shapes = try graph.inferShapes(inputShapes: inputShapes)
        let memory = MemoryPlan(graph: graph, shapes: shapes, keep: Set(outputs))
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
        for node in graph.nodes where !memory.aliasedNodes.contains(node.name) {
            var constants: [Int: Tensor] = [:]
            for (i, name) in node.inputs.enumerated() {
                if let v = graph.parameters[name]?.value { constants[i] = v }
            }
            let inShapes = node.inputs.map { $0.isEmpty ? nil : shapes[$0] }
            let outShapes = try node.outputs.map { name -> [Int] in
                guard let s = shapes[name] else { throw QuarryError.unknownValue(name) }
                return s
            }
            let inRefs = try node.inputs.map { $0.isEmpty ? nil : try ref($0) }
            let outRefs = try node.outputs.map(ref)
            var reason = fallbacks[node.name]
            if reason == nil {
                let lowering = Lowering(
                    device: clDevice, node: node, inputShapes: inShapes, outputShapes: outShapes,
                    inputs: inRefs, outputs: outRefs, constants: constants, weights: weights)
                do {
                    try lowering.lower()
                    steps.append(.device(node, lowering.launches))
                    scratchFloats = max(scratchFloats, lowering.scratchFloats)
                    continue
                } catch QuarryError.unsupported(let why) {
                    reason = why
                    fallbacks[node.name] = why
                    OpenCLLog.log("node '\(node.name)' (\(node.op.name)) runs on the CPU: \(why)")
                }
            }
            let ctx = KernelContext(
                node: node, inputShapes: inShapes, outputShapes: outShapes, constants: constants,
                threads: cpuThreads, packCache: packCache)
            let kernel: CPUKernel
            do {
                kernel = try CPUKernels.make(ctx)
            } catch {
                throw QuarryError.unsupported("node '\(node.name)' (\(node.op.name)) runs neither on \(clDevice.info.spec) (\(reason ?? "")) nor on the CPU (\(error))")
            }
            steps.append(.host(node, kernel, inputs: inRefs, inputShapes: inShapes, outputs: outRefs, outputShapes: outShapes))
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
            case .host(let node, _, _, _, _, _): out[node.name] = ["cpu"]
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
        for gi in graph.inputs where inputs[gi.name] == nil {
            throw QuarryError.invalidArgument("missing input '\(gi.name)' (the graph takes \(graph.inputs.map(\.name)))")
        }
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
            let t0 = profiler == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            let node: Node
            switch step {
            case .device(let n, let launches):
                node = n
                for l in launches { try l.enqueue(on: queue) }
                if profiler != nil { try clDevice.finish() }
            case .host(let n, let kernel, let inRefs, let inShapes, let outRefs, let outShapes):
                node = n
                // Blocking copies: the in-order queue finishes earlier work before them.
                var hostIn: [Tensor?] = []
                for (r, s) in zip(inRefs, inShapes) {
                    guard let r, let s else { hostIn.append(nil); continue }
                    let t = Tensor(uninitializedShape: s)
                    try clCheck(clEnqueueReadBuffer(queue, mem(r), cl_bool(CL_TRUE), r.offset * 4, t.count * 4, t.pointer, 0, nil, nil),
                                "download of an input of CPU node '\(n.name)'")
                    hostIn.append(t)
                }
                let hostOut = outShapes.map { Tensor(uninitializedShape: $0) }
                kernel(hostIn.map { $0.map { UnsafePointer($0.pointer) } }, hostOut.map(\.pointer))
                for (r, t) in zip(outRefs, hostOut) {
                    try clCheck(clEnqueueWriteBuffer(queue, mem(r), cl_bool(CL_TRUE), r.offset * 4, t.count * 4, t.pointer, 0, nil, nil),
                                "upload of an output of CPU node '\(n.name)'")
                }
            }
            if let profiler {
                profiler.record(node: node.name, op: node.op.name,
                                seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
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
