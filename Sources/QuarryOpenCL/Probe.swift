// Peak arithmetic and memory bandwidth of a device (Kernels/probe.cl), for `quarry devices
// --probe`. Each figure is the best of several timed launches after a warm-up.

import COpenCL
import Foundation
import Quarry

extension OpenCLDevice {
    private func bestTime(_ repeats: Int, _ body: () throws -> Void) throws -> Double {
        try body()
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return best
    }

    private func run(_ kernel: CLKernel, global: Int) throws {
        var g = global
        try clCheck(clEnqueueNDRangeKernel(queue, kernel.kernel, 1, nil, &g, nil, 0, nil, nil), "enqueue \(kernel.name)")
        try finish()
    }

    /// Single-precision GFLOP/s of independent multiply-adds (2 flops each): the best over vector
    /// widths 4, 8 and 16 (see probe.cl), the same work at each width.
    public func measurePeakGFLOPS(repeats: Int = 3) throws -> Double {
        let iterations = 512
        let lanes = max(info.computeUnits, 1) * 4096 * 4
        let out = try CLMem(device: self, floats: lanes / 4)
        var best = 0.0
        for width in [4, 8, 16] {
            let items = lanes / width
            let kernel = CLKernel(try programs.kernel("probe", "peak_mad", options: ["-DITER=\(iterations)", "-DVW=\(width)"]),
                                  name: "probe.cl:peak_mad")
            var mem: cl_mem? = out.mem
            var a: cl_float = 0.999
            try clCheck(clSetKernelArg(kernel.kernel, 0, MemoryLayout<cl_mem>.size, &mem), "clSetKernelArg")
            try clCheck(clSetKernelArg(kernel.kernel, 1, 4, &a), "clSetKernelArg")
            let t = try bestTime(repeats) { try run(kernel, global: items) }
            best = max(best, Double(lanes) * Double(iterations) * 8 * 2 / t / 1e9)
        }
        return best
    }

    /// GB/s of a streaming copy (bytes read plus bytes written) over 64 MiB buffers, or less
    /// where the device's maximum allocation is smaller.
    public func measureBandwidthGBps(repeats: Int = 3) throws -> Double {
        let bytes = min(64 << 20, info.maxAllocationBytes / 2) / 16 * 16
        let src = try CLMem(device: self, floats: bytes / 4), dst = try CLMem(device: self, floats: bytes / 4)
        var zero: Float = 1
        try clCheck(clEnqueueFillBuffer(queue, src.mem, &zero, 4, 0, bytes, 0, nil, nil), "fill")
        let kernel = CLKernel(try programs.kernel("probe", "stream_copy"), name: "probe.cl:stream_copy")
        var s: cl_mem? = src.mem, d: cl_mem? = dst.mem
        try clCheck(clSetKernelArg(kernel.kernel, 0, MemoryLayout<cl_mem>.size, &s), "clSetKernelArg")
        try clCheck(clSetKernelArg(kernel.kernel, 1, MemoryLayout<cl_mem>.size, &d), "clSetKernelArg")
        let t = try bestTime(repeats) { try run(kernel, global: bytes / 16) }
        return 2 * Double(bytes) / t / 1e9
    }
}
