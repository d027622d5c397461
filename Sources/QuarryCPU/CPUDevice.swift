// The CPU device: compiles a graph into a list of bound kernels over a planned arena. A plan is
// made per set of input shapes (batch, image size and sequence length may change between runs)
// and cached; packed weights are shared by all plans of a compiled graph.

import Foundation
import Quarry

// @unchecked: immutable after init (CPUThreads is read-only and its team is locked).
public final class CPUDevice: Device, @unchecked Sendable {
    public let threads: CPUThreads
    public let info: DeviceInfo

    /// `threads` bounds how many threads kernels use (default: every core).
    public init(threads: Int? = nil) {
        self.threads = CPUThreads(count: threads)
        info = DeviceInfo(
            spec: "cpu", kind: .cpu, name: CPUDevice.modelName(), vendor: "host",
            driverVersion: "Quarry CPU SIMD", computeUnits: self.threads.count,
            globalMemoryBytes: Int(ProcessInfo.processInfo.physicalMemory), localMemoryBytes: 0,
            maxAllocationBytes: Int(ProcessInfo.processInfo.physicalMemory),
            supportsFP16: false, supportsFP64: true)
    }

    static func modelName() -> String {
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return "CPU"
    }

    public func supports(_ op: Op) -> Bool { CPUKernels.supports(op) }

    /// Every computing node in fp32 (the CPU is the reference backend and every other's fallback),
    /// and in bf16 on hosts with AVX512_BF16 (GEMMs with bf16 operands, the rest in fp32).
    public func supports(_ node: Node, inputShapes: [[Int]?], precision: Precision) -> Support {
        switch precision {
        case .fp32: break
        case .bf16 where CPUGEMMPrecision.bf16Available: break
        case .bf16:
            return .no("bf16 is not available on the CPU: it needs AVX512_BF16 (Intel from Cooper Lake, AMD from Zen 4) and the AVX-512 kernels (host: \(CPUInstructionSet.host), in use: \(CPUInstructionSet.active))")
        default:
            return .no("\(precision.rawValue) is not available on the CPU (fp32, and bf16 on AVX512_BF16 hosts)")
        }
        return CPUKernels.supports(node.op) ? .yes : .no("\(node.op.name) is not a computing node")
    }

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        HostBuffer(count: (byteCount + 3) / 4)
    }

    public func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent {
        guard let b = buffer as? HostBuffer, b.storage.count >= tensor.count else {
            throw QuarryError.device("cpu: upload of \(tensor.count) floats into a buffer of \(buffer.byteCount) bytes")
        }
        b.storage.pointer.update(from: tensor.pointer, count: tensor.count)
        return CompletedEvent()
    }

    public func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent {
        guard let b = buffer as? HostBuffer, b.storage.count >= tensor.count else {
            throw QuarryError.device("cpu: download of \(tensor.count) floats from a buffer of \(buffer.byteCount) bytes")
        }
        tensor.pointer.update(from: b.storage.pointer, count: tensor.count)
        return CompletedEvent()
    }

    public func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph {
        try CPUCompiledGraph(device: self, graph: graph, outputs: outputs.isEmpty ? graph.outputs : outputs)
    }
}

/// Host memory as a device buffer.
public final class HostBuffer: DeviceBuffer {
    public let storage: TensorStorage
    public init(count: Int) { storage = TensorStorage(count: count) }
    public var byteCount: Int { storage.count * 4 }
}

public final class CPUCompiledGraph: CompiledGraph, @unchecked Sendable {
    // @unchecked: the plan caches and `lastRunLanes` are touched only under `lock`; the plans'
    // arenas belong to the run that holds it.
    public let device: Device
    /// The one plan builder (checks, optimisation, plan passes); the CPU adds its fused blocks.
    public let builder: PlanBuilder
    public var graph: Graph { builder.graph }
    public var outputs: [String] { builder.outputs }
    let threads: CPUThreads
    let packCache = PackCache()
    private var plans: [[Int]: Plan] = [:]
    /// Per input-shape key: one plan per lane, or nil where the graph cannot be split by rows.
    private var lanePlans: [[Int]: [Plan]?] = [:]
    private let lock = NSLock()
    /// For a graph imported at fixed shapes (an ONNX import folds the batch size into its
    /// reshapes): makes the graph for other input shapes, so that batch lanes can run slices.
    /// Nil: the graph itself takes any batch size.
    public var graphForShapes: (([String: [Int]]) throws -> Graph)?
    /// How many lanes the latest run used (for tests).
    private(set) var lastRunLanes = 0

    /// One specialisation of the graph to concrete input shapes.
    final class Plan {
        let graph: Graph
        let shapes: [String: [Int]]
        let memory: MemoryPlan
        let steps: [(node: Node, kernel: CPUKernel)]
        /// Made on first run: a plan asked only for its memory needs (or replaced by lanes) holds none.
        private(set) lazy var arena = TensorStorage(count: memory.arenaCount)
        /// The requested outputs.
        let outputs: [String]
        init(graph: Graph, shapes: [String: [Int]], memory: MemoryPlan, steps: [(Node, CPUKernel)], outputs: [String]) {
            self.graph = graph; self.shapes = shapes; self.memory = memory; self.steps = steps; self.outputs = outputs
        }

        /// Values computed straight into a requested output's buffer, with that output's name:
        /// an output that lives in the arena, and every value that shares its bytes through
        /// layout ops (a flatten's input). Copying them out after the run cost a pass over
        /// every output, and for large feature maps more than the layer itself. An output that is a
        /// graph input or a parameter, or that shares its bytes with another output, is copied.
        private(set) lazy var direct: [String: String] = {
            var owners: [String: [String]] = [:]
            for name in Set(outputs) {
                if case .arena = memory.locations[name] { owners[memory.root(of: name), default: []].append(name) }
            }
            var result: [String: String] = [:]
            for (value, location) in memory.locations {
                guard case .arena = location, let o = owners[memory.root(of: value)], o.count == 1 else { continue }
                result[value] = o[0]
            }
            return result
        }()

        /// Each step's operand pointers, resolved once (the arena and the parameters do not move):
        /// per run only operands that are graph inputs are filled in, at the listed positions.
        /// Resolving every name per step per run (dictionary lookups, two arrays) cost about a
        /// microsecond a layer.
        private(set) lazy var bound: [BoundStep] = steps.map { node, kernel in
            var step = BoundStep(kernel: kernel, ins: [], outs: [], inputSlots: [], outputSlots: [])
            for (i, name) in node.inputs.enumerated() {
                if name.isEmpty { step.ins.append(nil); continue }
                if let output = direct[name] { step.ins.append(nil); step.inputSlots.append((i, output, true)); continue }
                switch resolve(name) {
                case .pointer(let p): step.ins.append(UnsafePointer(p))
                case .input(let ext): step.ins.append(nil); step.inputSlots.append((i, ext, false))
                }
            }
            for (i, name) in node.outputs.enumerated() {
                if let output = direct[name] { step.outs.append(arena.pointer); step.outputSlots.append((i, output, true)); continue }
                switch resolve(name) {
                case .pointer(let p): step.outs.append(p)
                case .input(let ext): step.outs.append(arena.pointer); step.outputSlots.append((i, ext, false))
                }
            }
            return step
        }

        struct BoundStep {
            let kernel: CPUKernel
            var ins: [UnsafePointer<Float>?]
            var outs: [UnsafeMutablePointer<Float>]
            /// Operand positions filled per run, with the name of a graph input or (`output`
            /// true) of a requested output, whose buffer the operand is.
            var inputSlots: [(index: Int, name: String, output: Bool)]
            var outputSlots: [(index: Int, name: String, output: Bool)]
        }

        enum Resolved { case pointer(UnsafeMutablePointer<Float>), input(String) }

        /// Where a value lives: the arena, a parameter, or (known per run) a graph input.
        func resolve(_ name: String) -> Resolved {
            switch memory.locations[name]! {
            case .arena(let off): return .pointer(arena.pointer + off)
            case .external(let ext):
                // A graph input wins over a parameter of the same name (an ONNX initializer that
                // is also an input is a default the caller may override).
                if !graph.inputs.contains(where: { $0.name == ext }), let value = graph.parameters[ext]?.value {
                    return .pointer(value.pointer)
                }
                return .input(ext)
            }
        }
    }

    init(device: CPUDevice, graph source: Graph, outputs: [String]) throws {
        self.device = device
        self.threads = device.threads
        builder = try PlanBuilder(source, outputs: outputs, backendPasses: CPUCompiledGraph.planPasses, evaluate: CPUKernels.evaluate)
    }

    /// The CPU's own plan pass, after the common ones. Inverted-residual blocks whose wide tensors
    /// pass 1 MiB an image (MobileNetV2's 112x112 and 56x56 stages) run fused; at 28x28 (600 KB)
    /// and 14x14 the separate layers measured faster (their depthwise kernel takes sixteen
    /// channels at a time). `QUARRY_FUSE_BLOCKS=0` turns it off, to compare.
    static let planPasses = [PlanPass(name: "fusing_expand_depthwise_project") { g, keep, shapes in
        Switches.current.fuseBlocks ? g.fusingExpandDepthwiseProject(keeping: keep, shapes: shapes, minWideFloats: 1 << 18) : g
    }]

    public func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        // Locked: the scheduler asks while another thread may be running this graph.
        lock.lock()
        defer { lock.unlock() }
        return try plan(for: inputShapes).memory.peakBytes
    }

    /// The plan for these input shapes, made on first use. Call with the lock held or before sharing.
    func plan(for inputShapes: [String: [Int]]) throws -> Plan {
        let key = builder.shapeKey(inputShapes)
        if let p = plans[key] { return p }
        let p = try makePlan(graph, inputShapes, threads: threads)
        plans[key] = p
        return p
    }

    private func makePlan(_ graph: Graph, _ inputShapes: [String: [Int]], threads: CPUThreads) throws -> Plan {
        let planned = try builder.plan(inputShapes, graph: graph)
        let steps = try planned.nodes.map { n -> (Node, CPUKernel) in
            let ctx = KernelContext(node: n.node, inputShapes: n.inputShapes, outputShapes: n.outputShapes,
                                    constants: n.constants, threads: threads, packCache: packCache)
            return (n.node, try CPUKernels.make(ctx))
        }
        return Plan(graph: planned.graph, shapes: planned.shapes, memory: planned.memory, steps: steps, outputs: outputs)
    }

    /// How many batch lanes a run of `rows` rows uses: one per thread when every thread gets a
    /// row, else one (the whole batch, each layer split across the threads).
    ///
    /// A lane is a slice of the batch run start to finish on one thread with single-threaded
    /// kernels and an arena of its own. Splitting each layer instead costs a fork and a join per
    /// layer and halves every layer's work. MobileNetV2 batch 8, 2 threads (64 small layers):
    /// one thread 99-122 ms, each layer split 56-70 ms, two lanes of 4 rows 49.5 ms. A lane's
    /// slice also has a smaller working set than the whole batch. `QUARRY_CPU_LANES=0` turns lanes
    /// off (to compare).
    func laneCount(rows: Int) -> Int {
        if !Switches.current.cpuLanes { return 1 }
        return threads.count > 1 && rows >= threads.count ? threads.count : 1
    }

    /// One plan per lane for a batch of these shapes (lane i takes rows `laneRows(i)`), or nil if
    /// the graph does not treat the first dimension of its inputs as independent rows: every
    /// output must keep that dimension, sized by the slice, and the rest of its shape.
    private func lanes(for inputShapes: [String: [Int]], rows: Int, count: Int) throws -> [Plan]? {
        let key = builder.shapeKey(inputShapes)
        if let cached = lanePlans[key] { return cached }
        let full = try graph.inferShapes(inputShapes: inputShapes)
        var made: [Plan]? = []
        for lane in 0..<count {
            let slice = Self.laneRows(lane, of: count, rows: rows).count
            let sliceShapes = inputShapes.mapValues { [slice] + $0.dropFirst() }
            // A graph that cannot take the slice's shapes runs whole.
            let sliceGraph = { [self] in
                try graphForShapes.map { try $0(sliceShapes).optimized(for: outputs, evaluate: CPUKernels.evaluate) } ?? graph
            }
            guard let p = try? makePlan(sliceGraph(), sliceShapes, threads: CPUThreads(count: 1)) else { made = nil; break }
            let split = outputs.allSatisfy { name in
                guard let whole = full[name], let part = p.shapes[name], !whole.isEmpty else { return false }
                return whole[0] == rows && part == [slice] + whole.dropFirst()
            }
            guard split else { made = nil; break }
            made?.append(p)
        }
        lanePlans[key] = .some(made)
        return made
    }

    static func laneRows(_ lane: Int, of count: Int, rows: Int) -> Range<Int> {
        (rows * lane / count)..<(rows * (lane + 1) / count)
    }

    public func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        try builder.checkInputs(inputs)
        lock.lock()
        defer { lock.unlock() }
        let shapes = inputs.mapValues(\.shape)
        let rows = shapes.values.first?.first ?? 0
        let laneCount = laneCount(rows: rows)
        if laneCount > 1, shapes.values.allSatisfy({ $0.first == rows }),
           let lanes = try lanes(for: shapes, rows: rows, count: laneCount) {
            var result: [String: Tensor] = [:]
            for name in outputs {
                let part = lanes[0].shapes[name]!
                result[name] = Tensor(uninitializedShape: [rows] + part.dropFirst())
            }
            // Each lane reads its rows of the inputs in place and writes its rows of the outputs.
            let work = { (lane: Int) in
                let range = Self.laneRows(lane, of: laneCount, rows: rows)
                let ins = inputs.mapValues { $0.pointer + range.lowerBound * ($0.count / rows) }
                let outs = result.mapValues { $0.pointer + range.lowerBound * ($0.count / rows) }
                // Only the first lane is profiled: the lanes run at once, so its layer times are
                // those of the whole batch.
                self.execute(lanes[lane], inputs: ins, outputs: outs, profiler: lane == 0 ? profiler : nil)
            }
            lastRunLanes = laneCount
            // On a team of pinned threads; if another run holds it, the lanes in turn here.
            if !threads.runTeam(laneCount, work) { for lane in 0..<laneCount { work(lane) } }
            return result
        }
        let plan = try self.plan(for: shapes)
        lastRunLanes = 1
        var result: [String: Tensor] = [:]
        for name in outputs { result[name] = Tensor(uninitializedShape: plan.shapes[name]!) }
        threads.withCallerPinned {
            execute(plan, inputs: inputs.mapValues(\.pointer), outputs: result.mapValues(\.pointer), profiler: profiler)
        }
        return result
    }

    /// Runs a plan's steps over its arena, reading the graph inputs from `inputs` and writing the
    /// requested outputs to `outputs` (computed there, or copied there at the end).
    private func execute(_ plan: Plan, inputs: [String: UnsafeMutablePointer<Float>],
                         outputs: [String: UnsafeMutablePointer<Float>], profiler: Profiler?) {
        func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
            switch plan.resolve(name) {
            case .pointer(let p): return p
            case .input(let ext): return inputs[ext]!
            }
        }
        for (index, step) in plan.bound.enumerated() {
            var ins = step.ins, outs = step.outs
            for (i, name, isOutput) in step.inputSlots { ins[i] = UnsafePointer(isOutput ? outputs[name]! : inputs[name]!) }
            for (i, name, isOutput) in step.outputSlots { outs[i] = isOutput ? outputs[name]! : inputs[name]! }
            if let profiler {
                let node = plan.steps[index].node
                let t0 = DispatchTime.now().uptimeNanoseconds
                step.kernel(ins, outs)
                profiler.record(node: node.name, op: node.op.name, seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            } else {
                step.kernel(ins, outs)
            }
        }
        for (name, dst) in outputs where plan.direct[name] == nil {
            dst.update(from: pointer(name), count: plan.shapes[name]!.reduce(1, *))
        }
    }
}

extension CPUKernels {
    /// Runs one node once on the CPU (single-threaded), for constant folding at compile time.
    public static func evaluate(_ node: Node, _ inputs: [Tensor?], _ outputShapes: [[Int]]) throws -> [Tensor] {
        var constants: [Int: Tensor] = [:]
        for (i, t) in inputs.enumerated() { if let t { constants[i] = t } }
        let ctx = KernelContext(node: node, inputShapes: inputs.map { $0?.shape }, outputShapes: outputShapes,
                                constants: constants, threads: CPUThreads(count: 1), packCache: PackCache())
        let kernel = try make(ctx)
        let outputs = outputShapes.map { Tensor(uninitializedShape: $0) }
        kernel(inputs.map { $0.map { UnsafePointer($0.pointer) } }, outputs.map(\.pointer))
        return outputs
    }
}
