// Kernel launches as data. A lowering turns a node into launches whose arguments name buffers
// symbolically (the plan's arena, its scratch, or a fixed buffer such as a weight); once a plan
// knows its sizes, every argument is set once and a run only enqueues.

import COpenCL
import Foundation
import Quarry

/// A cl_kernel owned by one launch (kernel arguments are per object, so objects are not shared).
// @unchecked: immutable; a kernel object's arguments are set by the one launch that owns it.
final class CLKernel: @unchecked Sendable {
    let kernel: cl_kernel
    let name: String
    init(_ kernel: cl_kernel, name: String) { self.kernel = kernel; self.name = name }
    deinit { clReleaseKernel(kernel) }
}

/// A device buffer held by a plan or a compiled graph.
// @unchecked: immutable; OpenCL memory objects are thread-safe handles.
final class CLMem: @unchecked Sendable {
    let mem: cl_mem
    let floats: Int
    init(device: OpenCLDevice, floats: Int) throws {
        mem = try device.makeBuffer(floats: floats)
        self.floats = floats
    }
    deinit { clReleaseMemObject(mem) }
}

/// Where a kernel operand lives, in floats from the start of its buffer.
struct BufferRef {
    enum Base {
        /// The plan's arena of intermediates.
        case arena
        /// The plan's scratch (packed operands, im2col, recurrent states), reused by every node.
        case scratch
        /// A buffer that outlives the plan's binding: weights, graph inputs.
        case fixed(CLMem)
    }
    var base: Base
    var offset: Int
    func advanced(by n: Int) -> BufferRef { BufferRef(base: base, offset: offset + n) }
}

enum KernelArg {
    /// Passed as two arguments: the buffer and a `long` offset in floats.
    case buffer(BufferRef)
    case int(Int)
    case long(Int)
    case float(Float)
}

struct Launch {
    var kernel: CLKernel
    var args: [KernelArg]
    var global: [Int]
    /// nil lets the driver choose.
    var local: [Int]? = nil

    /// Sets every argument, resolving the arena and scratch to the plan's buffers.
    func bind(arena: cl_mem, scratch: cl_mem) throws {
        var index: cl_uint = 0
        func set<T>(_ value: T) throws {
            var v = value
            try clCheck(clSetKernelArg(kernel.kernel, index, MemoryLayout<T>.size, &v),
                        "clSetKernelArg(\(index)) of kernel '\(kernel.name)'")
            index += 1
        }
        for arg in args {
            switch arg {
            case .buffer(let ref):
                let mem: cl_mem?
                switch ref.base {
                case .arena: mem = arena
                case .scratch: mem = scratch
                case .fixed(let m): mem = m.mem
                }
                try set(mem)
                try set(cl_long(ref.offset))
            case .int(let v):
                guard let i = Int32(exactly: v) else {
                    throw QuarryError.device("kernel '\(kernel.name)': argument \(v) does not fit a 32-bit int")
                }
                try set(cl_int(i))
            case .long(let v): try set(cl_long(v))
            case .float(let v): try set(cl_float(v))
            }
        }
    }

    func enqueue(on queue: cl_command_queue) throws {
        let dims = global.count
        // Global sizes are rounded up to the local size; kernels guard their ranges.
        var g = global.map { max($0, 1) }
        if let local {
            for i in 0..<dims { g[i] = (g[i] + local[i] - 1) / local[i] * local[i] }
        }
        let status: cl_int
        if var l = local {
            status = clEnqueueNDRangeKernel(queue, kernel.kernel, cl_uint(dims), nil, &g, &l, 0, nil, nil)
        } else {
            status = clEnqueueNDRangeKernel(queue, kernel.kernel, cl_uint(dims), nil, &g, nil, 0, nil, nil)
        }
        try clCheck(status, "enqueue of kernel '\(kernel.name)' over \(g)")
    }
}

/// A C float literal for a -D option (hex keeps every bit; infinities spelled out).
func clFloatLiteral(_ x: Float) -> String {
    if x == .infinity { return "INFINITY" }
    if x == -.infinity { return "(-INFINITY)" }
    if x.isNaN { return "NAN" }
    return "(" + String(format: "%a", Double(x)) + "f)"
}

/// -D options selecting an activation in common.cl.
func activationOptions(_ act: Activation?) -> [String] {
    guard let act else { return ["-DACT=0"] }
    let (c, a, b) = activationCode(act)
    return ["-DACT=\(c)", "-DACT_A=\(clFloatLiteral(a))", "-DACT_B=\(clFloatLiteral(b))"]
}

/// common.cl's code for an activation and its two parameters.
func activationCode(_ act: Activation) -> (Int, Float, Float) {
    func code(_ c: Int, _ a: Float = 0, _ b: Float = 0) -> (Int, Float, Float) { (c, a, b) }
    switch act {
    case .relu: return code(1)
    case .clip(let lo, let hi): return code(2, lo, hi)
    case .leakyRelu(let a): return code(3, a)
    case .sigmoid: return code(4)
    case .hardSigmoid(let a, let b): return code(5, a, b)
    case .tanh: return code(6)
    case .silu: return code(7)
    case .mish: return code(8)
    case .gelu(let approximate): return code(approximate ? 10 : 9)
    case .hardSwish: return code(11)
    case .sqrt: return code(12)
    case .exp: return code(13)
    case .log: return code(14)
    case .neg: return code(15)
    case .abs: return code(16)
    case .erf: return code(17)
    case .reciprocal: return code(18)
    case .sin: return code(19)
    case .cos: return code(20)
    case .floor: return code(21)
    case .ceil: return code(22)
    case .round: return code(23)
    case .trunc: return code(24)
    case .softplus: return code(25)
    case .elu(let alpha): return code(26, alpha)
    case .selu(let alpha, let gamma): return code(27, alpha, gamma)
    case .not: return code(28)
    case .sign: return code(29)
    }
}
