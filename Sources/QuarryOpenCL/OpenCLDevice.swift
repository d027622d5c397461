// One OpenCL device as a Quarry Device: its own context and one in-order queue. Every compiled
// graph of the device enqueues on that queue (OpenCL queues are thread-safe for enqueueing; each
// compiled graph owns its kernel objects, whose arguments are not).

import COpenCL
import Foundation
import Quarry

// @unchecked: immutable after init but for the queue (OpenCL command queues are thread-safe
// from OpenCL 1.1) and the program cache (locked).
public final class OpenCLDevice: Device, @unchecked Sendable {
    public let info: DeviceInfo
    public let platform: OpenCLPlatformInfo
    /// "GPU", "CPU", "ACCELERATOR".
    public let typeName: String
    /// OpenCL C version the device compiles ("OpenCL C 1.2 pocl").
    public let openCLCVersion: String
    /// Whether the device has dedicated local memory (GPUs); on CPU devices local memory is plain
    /// memory and tiling through it only adds copies and barriers, so kernels take other paths.
    public let hasDedicatedLocalMemory: Bool
    public let maxWorkGroupSize: Int

    let platformID: cl_platform_id?
    let deviceID: cl_device_id?
    let context: cl_context
    let queue: cl_command_queue
    /// Built programs of this device (memory and disk cache).
    public private(set) var programs: ProgramCache!
    /// The GEMM schedule every GEMM of this device uses: the tuner's winner for this device,
    /// driver and gemm.cl where one is stored or shipped, else the kernel choice's default.
    private(set) var gemmSchedule: GEMMSchedule
    /// Where `gemmSchedule` came from, for `quarry devices` and the tuner's advice.
    public private(set) var gemmScheduleSource = "default"

    init(platform p: cl_platform_id?, device d: cl_device_id?, platformInfo: OpenCLPlatformInfo, spec: String) throws {
        platformID = p; deviceID = d; platform = platformInfo
        let exts = deviceString(d, CL_DEVICE_EXTENSIONS)
        let type = deviceValue(d, CL_DEVICE_TYPE, as: cl_device_type.self)
        typeName = type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 ? "GPU"
            : type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 ? "CPU" : "ACCELERATOR"
        openCLCVersion = deviceString(d, CL_DEVICE_OPENCL_C_VERSION)
        hasDedicatedLocalMemory = deviceValue(d, CL_DEVICE_LOCAL_MEM_TYPE, as: cl_uint.self) == cl_uint(CL_LOCAL)
        maxWorkGroupSize = Int(deviceValue(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, as: Int.self))
        gemmSchedule = GEMMSchedule(KernelChoice.openCLGEMM(device: DeviceCapabilities(
            kind: .opencl, threads: 1, dedicatedLocalMemory: hasDedicatedLocalMemory, maxWorkGroupSize: maxWorkGroupSize)))
        info = DeviceInfo(
            spec: spec, kind: .opencl, name: deviceString(d, CL_DEVICE_NAME),
            vendor: deviceString(d, CL_DEVICE_VENDOR), driverVersion: deviceString(d, CL_DRIVER_VERSION),
            computeUnits: Int(deviceValue(d, CL_DEVICE_MAX_COMPUTE_UNITS, as: cl_uint.self)),
            globalMemoryBytes: Int(deviceValue(d, CL_DEVICE_GLOBAL_MEM_SIZE, as: cl_ulong.self)),
            localMemoryBytes: Int(deviceValue(d, CL_DEVICE_LOCAL_MEM_SIZE, as: cl_ulong.self)),
            maxAllocationBytes: Int(deviceValue(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, as: cl_ulong.self)),
            supportsFP16: exts.contains("cl_khr_fp16"),
            supportsFP64: exts.contains("cl_khr_fp64") || deviceValue(d, CL_DEVICE_DOUBLE_FP_CONFIG, as: cl_ulong.self) != 0)

        var status: cl_int = 0
        var dev = d
        var props: [cl_context_properties] = [cl_context_properties(CL_CONTEXT_PLATFORM), cl_context_properties(Int(bitPattern: p)), 0]
        guard let ctx = clCreateContext(&props, 1, &dev, nil, nil, &status), status == CL_SUCCESS else {
            throw QuarryError.device("clCreateContext for '\(info.name)' failed: \(clStatusName(status))")
        }
        context = ctx
        guard let q = clCreateCommandQueue(ctx, d, 0, &status), status == CL_SUCCESS else {
            clReleaseContext(ctx)
            throw QuarryError.device("clCreateCommandQueue for '\(info.name)' failed: \(clStatusName(status))")
        }
        queue = q
        programs = ProgramCache(device: self)
        if Switches.current.openCLGEMM != nil {
            gemmScheduleSource = "QUARRY_GEMM"
        } else if let tuned = GEMMTuner.tuned(for: self) {
            gemmSchedule = GEMMSchedule(tuned.variant)
            gemmScheduleSource = "tuned: " + tuned.source
        } else {
            gemmScheduleSource = "default (untuned: `quarry tune --device \(spec)` measures this device's best)"
        }
    }

    /// Runs `body` with another GEMM schedule (and so another convolution variant) in force: the
    /// tests check every schedule on whatever device they have, the tiled one included, which
    /// only GPUs would get by default. Not thread-safe: for tests, which run one at a time.
    func withGEMMSchedule<T>(_ schedule: GEMMSchedule, _ body: () throws -> T) rethrows -> T {
        let saved = gemmSchedule
        gemmSchedule = schedule
        defer { gemmSchedule = saved }
        return try body()
    }

    /// The GEMM schedule as a kernel variant (name and parameters).
    public var gemmVariant: KernelVariant { gemmSchedule.variant }

    deinit {
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    /// Ops this backend runs as kernels. The others compile too: their nodes run on the CPU
    /// backend, and `unsupportedReason` says why.
    public func supports(_ op: Op) -> Bool { OpenCLDevice.unsupportedReason(op) == nil }

    /// The op-level reasons, then the limits of the kernels at these shapes (ranks, head widths,
    /// broadcasts), so that a plan learns before lowering which nodes fall back.
    public func supports(_ node: Node, inputShapes: [[Int]?], precision: Precision) -> Support {
        guard precision == .fp32 else { return .no("\(precision.rawValue) is not available on OpenCL (fp32 only)") }
        if let why = OpenCLDevice.unsupportedReason(node.op) ?? OpenCLDevice.shapeLimit(node.op, inputShapes) { return .no(why) }
        return .yes
    }

    /// Why the kernels cannot take `op` at these operand shapes, or nil.
    static func shapeLimit(_ op: Op, _ shapes: [[Int]?]) -> String? {
        let ranks = shapes.compactMap { $0?.count }
        switch op {
        case .attention(let heads, _):
            guard shapes.count >= 3, let q = shapes[0], let v = shapes[2], q.count == 3, v.count == 3, heads > 0 else { return nil }
            let widest = max(q[2] / heads, v[2] / heads)
            // The per-query rows live in private memory and the key/value block in local memory.
            return widest > 256 ? "head width \(widest) exceeds 256" : nil
        case .binary, .select, .reduce, .slice, .pad, .transpose, .gatherElements:
            let rank = ranks.max() ?? 0
            return rank > 6 ? "rank \(rank) exceeds the kernels' 6" : nil
        case .matmul:
            guard shapes.count >= 2, let a = shapes[0], let b = shapes[1], a.count >= 2, b.count >= 2 else { return nil }
            // Each operand's batch either matches the output's or is one matrix (stride 0).
            let ba = Array(a.dropLast(2)), bb = Array(b.dropLast(2))
            let rank = max(ba.count, bb.count)
            let pa = Array(repeating: 1, count: rank - ba.count) + ba, pb = Array(repeating: 1, count: rank - bb.count) + bb
            let out = zip(pa, pb).map { max($0, $1) }
            for (operand, padded) in [(ba, pa), (bb, pb)] where operand.reduce(1, *) != 1 && padded != out {
                return "batch dimensions \(operand) broadcast per dimension against \(out)"
            }
            return nil
        default:
            return nil
        }
    }

    /// Why `op` does not run on OpenCL, or nil when it does.
    public static func unsupportedReason(_ op: Op) -> String? {
        switch op {
        case .input, .constant:
            return "\(op.name) is not a computing node"
        case .expandDepthwiseProject:
            return "a block fused by the CPU plan (its three convolutions run on OpenCL as they are)"
        case .gru(let a) where !a.linearBeforeReset:
            return "GRU with the reset gate applied before the recurrent matmul (ONNX linear_before_reset = 0) needs a second launch per step; only PyTorch's form is a kernel"
        default:
            return nil
        }
    }

    public func allocate(byteCount: Int) throws -> DeviceBuffer {
        try OpenCLBuffer(device: self, byteCount: byteCount)
    }

    public func upload(_ tensor: Tensor, to buffer: DeviceBuffer) throws -> DeviceEvent {
        guard let b = buffer as? OpenCLBuffer, b.byteCount >= tensor.count * 4 else {
            throw QuarryError.device("\(info.spec): upload of \(tensor.count) floats into a buffer of \(buffer.byteCount) bytes")
        }
        var event: cl_event?
        try clCheck(
            clEnqueueWriteBuffer(queue, b.mem, cl_bool(CL_FALSE), 0, tensor.count * 4, tensor.pointer, 0, nil, &event),
            "clEnqueueWriteBuffer of \(tensor.count * 4) bytes")
        // The host memory must outlive the copy: the event keeps the tensor's storage.
        return OpenCLEvent(event, keeping: tensor.storage)
    }

    public func download(_ buffer: DeviceBuffer, into tensor: Tensor) throws -> DeviceEvent {
        guard let b = buffer as? OpenCLBuffer, b.byteCount >= tensor.count * 4 else {
            throw QuarryError.device("\(info.spec): download of \(tensor.count) floats from a buffer of \(buffer.byteCount) bytes")
        }
        var event: cl_event?
        try clCheck(
            clEnqueueReadBuffer(queue, b.mem, cl_bool(CL_FALSE), 0, tensor.count * 4, tensor.pointer, 0, nil, &event),
            "clEnqueueReadBuffer of \(tensor.count * 4) bytes")
        return OpenCLEvent(event, keeping: tensor.storage)
    }

    public func compile(_ graph: Graph, outputs: [String]) throws -> CompiledGraph {
        try OpenCLCompiledGraph(device: self, graph: graph, outputs: outputs.isEmpty ? graph.outputs : outputs)
    }

    /// Waits for everything enqueued on the device's queue.
    public func finish() throws {
        try clCheck(clFinish(queue), "clFinish on \(info.spec)")
    }

    /// A raw buffer for kernels (no Tensor attached).
    func makeBuffer(floats: Int) throws -> cl_mem {
        var status: cl_int = 0
        let bytes = max(floats, 1) * 4
        guard let m = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &status), status == CL_SUCCESS else {
            throw QuarryError.device("\(info.spec): clCreateBuffer of \(bytes) bytes failed: \(clStatusName(status))")
        }
        return m
    }
}

/// Device memory. Released when the last reference goes.
// @unchecked: immutable; OpenCL memory objects are thread-safe handles.
public final class OpenCLBuffer: DeviceBuffer, @unchecked Sendable {
    public let byteCount: Int
    let mem: cl_mem
    init(device: OpenCLDevice, byteCount: Int) throws {
        self.byteCount = byteCount
        mem = try device.makeBuffer(floats: (byteCount + 3) / 4)
    }
    deinit { clReleaseMemObject(mem) }
}

/// An enqueued copy or launch; holds host memory the copy reads or writes until it completes.
// @unchecked: `event` and `kept` change only under `lock`.
public final class OpenCLEvent: DeviceEvent, @unchecked Sendable {
    private var event: cl_event?
    private var kept: AnyObject?
    private let lock = NSLock()
    init(_ event: cl_event?, keeping: AnyObject?) { self.event = event; kept = keeping }

    public func wait() throws {
        lock.lock(); defer { lock.unlock() }
        guard let e = event else { return }
        var list: [cl_event?] = [e]
        let status = clWaitForEvents(1, &list)
        clReleaseEvent(e)
        event = nil; kept = nil
        try clCheck(status, "waiting for an OpenCL copy")
    }

    deinit {
        if let e = event {
            var list: [cl_event?] = [e]
            clWaitForEvents(1, &list)
            clReleaseEvent(e)
        }
    }
}

/// Host memory the device can copy from by DMA: buffers made with CL_MEM_ALLOC_HOST_PTR (pinned,
/// page-locked memory on GPU drivers) and kept mapped, handed out as tensors so that a decode
/// pipeline writes its batches straight into them; `clEnqueueWriteBuffer` from such a pointer is
/// then a DMA rather than a copy through a staging buffer. Pinning is slow, so a buffer goes back
/// to the pool when its tensor (and any pending copy from it) is gone, for the next batch of the
/// same size; the pool unmaps and releases them when it goes.
// @unchecked: `free` and `all` change only under `lock`; the device is Sendable.
public final class HostMappedPool: @unchecked Sendable {
    private let device: OpenCLDevice
    private let lock = NSLock()
    // @unchecked: immutable handles; the memory is written by one tensor's owner at a time (a
    // buffer is handed out again only after its tensor is gone).
    private struct Mapped: @unchecked Sendable { let mem: cl_mem; let pointer: UnsafeMutableRawPointer; let bytes: Int }
    private var free: [Mapped] = []
    private var all: [Mapped] = []
    /// Buffers made so far (a test checks that they are reused).
    public var buffersMade: Int { lock.lock(); defer { lock.unlock() }; return all.count }

    public init(device: OpenCLDevice) { self.device = device }

    /// An uninitialised tensor in a mapped buffer of this pool.
    public func tensor(shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        let bytes = max(count, 1) * 4
        lock.lock()
        var mapped: Mapped? = nil
        if let i = free.firstIndex(where: { $0.bytes == bytes }) { mapped = free.remove(at: i) }
        lock.unlock()
        if mapped == nil { mapped = try map(bytes: bytes) }
        let m = mapped!
        let storage = TensorStorage(
            external: m.pointer.bindMemory(to: Float.self, capacity: max(count, 1)), count: max(count, 1)
        ) { [self] in
            lock.lock()
            free.append(m)
            lock.unlock()
        }
        return try Tensor(shape: shape, sharing: storage)
    }

    private func map(bytes: Int) throws -> Mapped {
        var status: cl_int = 0
        guard let mem = clCreateBuffer(device.context, cl_mem_flags(CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_WRITE), bytes, nil, &status),
            status == CL_SUCCESS
        else {
            throw QuarryError.device("\(device.info.spec): clCreateBuffer(CL_MEM_ALLOC_HOST_PTR) of \(bytes) bytes failed: \(clStatusName(status))")
        }
        guard let p = clEnqueueMapBuffer(device.queue, mem, cl_bool(CL_TRUE), cl_map_flags(CL_MAP_READ | CL_MAP_WRITE), 0, bytes, 0, nil, nil, &status),
            status == CL_SUCCESS
        else {
            clReleaseMemObject(mem)
            throw QuarryError.device("\(device.info.spec): clEnqueueMapBuffer of \(bytes) bytes failed: \(clStatusName(status))")
        }
        let m = Mapped(mem: mem, pointer: p, bytes: bytes)
        lock.lock()
        all.append(m)
        lock.unlock()
        return m
    }

    deinit {
        // Tensors hold the pool through their release closures, so every buffer is free by now.
        for m in all {
            clEnqueueUnmapMemObject(device.queue, m.mem, m.pointer, 0, nil, nil)
        }
        clFinish(device.queue)
        for m in all { clReleaseMemObject(m.mem) }
    }
}
