// Lowering one node to kernel launches for concrete shapes. Each op family has its own file
// (GEMM.swift, Conv2D.swift, …, mirroring QuarryCPU and Kernels/); this file holds what they
// share: operand shapes and buffers, scratch space, kernel objects and packed weights.

import COpenCL
import Foundation
import Quarry

/// Device copies of parameters and of weights packed for a kernel, made once per compiled graph
/// and shared by every plan (weights are uploaded once and stay on the device).
// @unchecked: `buffers` changes only under `lock`.
final class WeightStore: @unchecked Sendable {
    let device: OpenCLDevice
    private var buffers: [String: CLMem] = [:]
    private let lock = NSLock()
    init(device: OpenCLDevice) { self.device = device }

    /// The buffer stored under `key`, uploading `make()`'s values the first time.
    func buffer(_ key: String, _ make: () throws -> Tensor) throws -> CLMem {
        lock.lock(); defer { lock.unlock() }
        if let b = buffers[key] { return b }
        let t = try make()
        let mem = try CLMem(device: device, floats: t.count)
        if t.count > 0 {
            try clCheck(clEnqueueWriteBuffer(device.queue, mem.mem, cl_bool(CL_TRUE), 0, t.count * 4, t.pointer, 0, nil, nil),
                        "upload of weight '\(key)' (\(t.count) floats)")
        }
        buffers[key] = mem
        return mem
    }

    var totalBytes: Int {
        lock.lock(); defer { lock.unlock() }
        return buffers.values.reduce(0) { $0 + $1.floats * 4 }
    }
}

final class Lowering {
    let device: OpenCLDevice
    let node: Node
    let inputShapes: [[Int]?]
    let outputShapes: [[Int]]
    let inputs: [BufferRef?]
    let outputs: [BufferRef]
    /// Values of operands that are parameters, by operand index (for packing weights once).
    let constants: [Int: Tensor]
    let weights: WeightStore
    private(set) var scratchFloats = 0
    private(set) var launches: [Launch] = []
    /// A GEMM schedule other than the device's (the tuner's candidates).
    var scheduleOverride: GEMMSchedule?

    init(device: OpenCLDevice, node: Node, inputShapes: [[Int]?], outputShapes: [[Int]],
         inputs: [BufferRef?], outputs: [BufferRef], constants: [Int: Tensor], weights: WeightStore) {
        self.device = device; self.node = node; self.inputShapes = inputShapes
        self.outputShapes = outputShapes; self.inputs = inputs; self.outputs = outputs
        self.constants = constants; self.weights = weights
    }

    var name: String { node.name }
    func shape(_ i: Int) -> [Int] { inputShapes[i] ?? [] }
    func has(_ i: Int) -> Bool { i < inputShapes.count && inputShapes[i] != nil }
    func input(_ i: Int) throws -> BufferRef {
        guard i < inputs.count, let r = inputs[i] else {
            throw QuarryError.shapeMismatch(node: name, message: "\(node.op.name) needs operand \(i)")
        }
        return r
    }
    var output: BufferRef { outputs[0] }
    var outputShape: [Int] { outputShapes[0] }
    var outputCount: Int { outputShapes[0].reduce(1, *) }

    /// Scratch space for this node only (the plan's scratch is reused by the next node).
    func scratch(_ floats: Int) -> BufferRef {
        let r = BufferRef(base: .scratch, offset: scratchFloats)
        scratchFloats += (max(floats, 1) + 15) / 16 * 16
        return r
    }

    func kernel(_ family: String, _ kernelName: String, options: [String] = []) throws -> CLKernel {
        CLKernel(try device.programs.kernel(family, kernelName, options: options), name: "\(family).cl:\(kernelName)")
    }

    func launch(_ family: String, _ kernelName: String, options: [String] = [], args: [KernelArg],
                global: [Int], local: [Int]? = nil) throws {
        let k = try kernel(family, kernelName, options: options)
        launches.append(Launch(kernel: k, args: args, global: global, local: local))
    }

    /// A fixed buffer holding `make()` (packed weights), made once per compiled graph.
    func packed(_ purpose: String, _ make: () throws -> Tensor) throws -> BufferRef {
        BufferRef(base: .fixed(try weights.buffer("\(name)#\(purpose)", make)), offset: 0)
    }

    /// A one-float buffer of zeros for absent optional operands (kernels still need a pointer).
    func dummy() throws -> BufferRef {
        BufferRef(base: .fixed(try weights.buffer("#zero") { Tensor(shape: [16], repeating: 0) }), offset: 0)
    }

    func unsupported(_ why: String) -> QuarryError {
        .unsupported("node '\(name)' (\(node.op.name)) on OpenCL: \(why)")
    }

    /// Appends the launches for the node.
    func lower() throws {
        switch node.op {
        case .input, .constant: throw unsupported("not a computing node")
        case .conv2d(let a): try lowerConv2D(a)
        case .convTranspose2d(let a): try lowerConvTranspose2D(a)
        case .dense(let act): try lowerDense(act)
        case .matmul(let ta, let tb): try lowerMatMul(transposeA: ta, transposeB: tb)
        case .maxPool2d(let a): try lowerPool(a, isMax: true)
        case .avgPool2d(let a): try lowerPool(a, isMax: false)
        case .globalAvgPool: try lowerGlobalPool(isMax: false)
        case .globalMaxPool: try lowerGlobalPool(isMax: true)
        case .batchNorm(let eps): try lowerBatchNorm(eps)
        case .layerNorm(let eps, let dims): try lowerLayerNorm(eps, dims: dims)
        case .instanceNorm(let eps): try lowerInstanceNorm(eps)
        case .softmax(let axis): try lowerSoftmax(axis: axis, log: false)
        case .logSoftmax(let axis): try lowerSoftmax(axis: axis, log: true)
        case .attention(let heads, let causal): try lowerAttention(heads: heads, causal: causal)
        case .lstm(let a): try lowerLSTM(a)
        case .gru(let a): try lowerGRU(a)
        case .embedding: try lowerEmbedding()
        case .activation(let act): try lowerActivation(act)
        case .binary(let op, let act): try lowerBinary(op, act)
        case .select: try lowerSelect()
        case .reduce(let op, let axes, _): try lowerReduce(op, axes: axes)
        case .argExtreme(let largest, let axis, _, let selectLast): try lowerArgExtreme(largest: largest, axis: axis, selectLast: selectLast)
        case .topK(let k, let axis, let largest): try lowerTopK(k: k, axis: axis, largest: largest)
        case .cumSum(let axis, let exclusive, let reverse): try lowerCumSum(axis: axis, exclusive: exclusive, reverse: reverse)
        case .gather(let axis): try lowerGather(axis: axis)
        case .gatherElements(let axis): try lowerGatherElements(axis: axis)
        case .gatherND(let b): try lowerGatherND(batchDims: b)
        case .scatterND(let r): try lowerScatterND(r)
        case .concat(let axis): try lowerConcat(axis: axis)
        case .split(let axis, _): try lowerSplit(axis: axis)
        case .slice(let starts, let ends, let axes, let steps): try lowerSlice(starts: starts, ends: ends, axes: axes, steps: steps)
        case .pad(let pads, let mode, let value): try lowerPad(pads: pads, mode: mode, value: value)
        case .upsample(let mode, let scaleH, let scaleW, let size): try lowerUpsample(mode, scaleH: scaleH, scaleW: scaleW, size: size)
        case .transpose(let perm): try lowerTranspose(perm)
        case .reshape, .flatten, .identity: try lowerCopy()
        // Made only by the CPU plan's fusion pass, never in a graph a device compiles.
        case .expandDepthwiseProject: throw unsupported("a CPU plan's fused block")
        }
    }

    /// A plain copy of operand 0 into the output (layout-only ops the memory plan did not alias).
    func lowerCopy() throws {
        try launch("layout", "copy", args: [.buffer(try input(0)), .buffer(output), .long(outputCount)], global: [outputCount])
    }
}

func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }
func ceilDiv(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m }
