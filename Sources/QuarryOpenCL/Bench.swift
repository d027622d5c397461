// Benchmark entry points for `quarry bench` (GEMM, convolution) and the device probe for
// `quarry devices --probe`. Timings cover device work only: operands are uploaded first, then
// the launches are enqueued `repeats` times, each repetition timed to clFinish; the best and the
// median are reported.

import COpenCL
import Foundation
import Quarry

public struct OpenCLBenchmark: Sendable, Codable {
    /// Best wall time of one repetition, seconds.
    public var seconds: Double
    public var medianSeconds: Double
    /// Floating-point work of one repetition (2·M·N·K for a GEMM).
    public var flops: Double
    public var repeats: Int
    public var gflops: Double { flops / seconds / 1e9 }
    public var medianGFLOPS: Double { flops / medianSeconds / 1e9 }
}

private func timeRepeats(_ repeats: Int, flops: Double, _ body: () throws -> Void) throws -> OpenCLBenchmark {
    try body()  // warm-up: program builds, first-touch of buffers
    var times: [Double] = []
    for _ in 0..<max(repeats, 1) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    times.sort()
    return OpenCLBenchmark(seconds: times[0], medianSeconds: times[times.count / 2], flops: flops, repeats: times.count)
}

extension OpenCLDevice {
    /// C[M, N] = A[M, K] · B[K, N] with random operands, the kernel the backend uses for dense
    /// layers (B padded on the host as weights are).
    public func benchmarkGEMM(m: Int, n: Int, k: Int, repeats: Int = 5) throws -> OpenCLBenchmark {
        try benchmarkGEMM(m: m, n: n, k: k, repeats: repeats, schedule: nil, checkSamples: 0).benchmark
    }

    /// The same with another GEMM schedule (nil: the device's), and the result checked on
    /// `checkSamples` random elements against a float64 dot product: the largest
    /// |got - expected| / (1 + |expected|) (0 when none are checked).
    func benchmarkGEMM(m: Int, n: Int, k: Int, repeats: Int, schedule: GEMMSchedule?, checkSamples: Int)
        throws -> (benchmark: OpenCLBenchmark, error: Double)
    {
        var rng = SeededGenerator(seed: 1)
        let a = Tensor.random(shape: [m, k], using: &rng)
        let b = Tensor.random(shape: [k, n], using: &rng)
        let aMem = try CLMem(device: self, floats: m * k)
        let cMem = try CLMem(device: self, floats: m * n)
        try clCheck(clEnqueueWriteBuffer(queue, aMem.mem, cl_bool(CL_TRUE), 0, m * k * 4, a.pointer, 0, nil, nil), "upload A")
        var nan = Float.nan
        try clCheck(clEnqueueFillBuffer(queue, cMem.mem, &nan, 4, 0, m * n * 4, 0, nil, nil), "poisoning C")
        let weights = WeightStore(device: self)
        let node = Node(name: "gemm", op: .matmul(transposeA: false, transposeB: false), inputs: ["a", "b"], outputs: ["c"])
        let l = Lowering(
            device: self, node: node, inputShapes: [[m, k], [k, n]], outputShapes: [[m, n]],
            inputs: [BufferRef(base: .fixed(aMem), offset: 0), nil], outputs: [BufferRef(base: .fixed(cMem), offset: 0)],
            constants: [1: b], weights: weights)
        l.scheduleOverride = schedule
        try l.lowerMatMul(transposeA: false, transposeB: false)
        let scratch = try CLMem(device: self, floats: l.scratchFloats)
        for launch in l.launches { try launch.bind(arena: scratch.mem, scratch: scratch.mem) }
        let bench = try timeRepeats(repeats, flops: 2 * Double(m) * Double(n) * Double(k)) {
            for launch in l.launches { try launch.enqueue(on: queue) }
            try finish()
        }
        var worst = 0.0
        if checkSamples > 0 {
            let c = Tensor(uninitializedShape: [m, n])
            try clCheck(clEnqueueReadBuffer(queue, cMem.mem, cl_bool(CL_TRUE), 0, m * n * 4, c.pointer, 0, nil, nil), "download C")
            // The corners (edge tiles) and random elements.
            var picks = [(0, 0), (m - 1, n - 1), (m - 1, 0), (0, n - 1)]
            for _ in 0..<checkSamples { picks.append((Int.random(in: 0..<m, using: &rng), Int.random(in: 0..<n, using: &rng))) }
            for (i, j) in picks {
                var e = 0.0
                for kk in 0..<k { e += Double(a[flat: i * k + kk]) * Double(b[flat: kk * n + j]) }
                let got = Double(c[flat: i * n + j])
                let d = abs(got - e) / (1 + abs(e))
                worst = max(worst, d.isNaN ? .infinity : d)
            }
        }
        return (bench, worst)
    }

    /// One convolution layer (bias and relu fused) over a random input: device time of its
    /// launches (the implicit GEMM, or im2col or the 1x1 path, then the GEMM).
    public func benchmarkConv2D(
        batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
        kernel: Int, stride: Int = 1, padding: Int = 0, groups: Int = 1, repeats: Int = 5
    ) throws -> OpenCLBenchmark {
        try benchmarkConv2D(batch: batch, inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                            kernel: kernel, stride: stride, padding: padding, groups: groups, repeats: repeats,
                            schedule: nil, checkSamples: 0).benchmark
    }

    /// The same with another GEMM schedule (nil: the device's), and the output checked on
    /// `checkSamples` random elements against a float64 convolution: the largest
    /// |got - expected| / (1 + |expected|) (0 when none are checked).
    func benchmarkConv2D(
        batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
        kernel: Int, stride: Int, padding: Int, groups: Int, repeats: Int, schedule: GEMMSchedule?, checkSamples: Int
    ) throws -> (benchmark: OpenCLBenchmark, error: Double) {
        var rng = SeededGenerator(seed: 2)
        let attrs = Conv2DAttributes(kernel: (kernel, kernel), stride: (stride, stride), padding: Padding2D(padding),
                                     groups: groups, activation: .relu)
        let w = Tensor.random(shape: [outChannels, inChannels / groups, kernel, kernel], using: &rng)
        let bias = Tensor.random(shape: [outChannels], using: &rng)
        let x = Tensor.random(shape: [batch, inChannels, height, width], using: &rng)
        let node = Node(name: "conv", op: .conv2d(attrs), inputs: ["x", "w", "b"], outputs: ["y"])
        let g = Graph(inputs: [GraphInput(name: "x", shape: x.shape.map { .fixed($0) })], nodes: [node],
                      parameters: ["w": Parameter(shape: w.shape, initializer: .constant(0), value: w),
                                   "b": Parameter(shape: [outChannels], initializer: .constant(0), value: bias)],
                      outputs: ["y"])
        let shapes = try g.inferShapes(inputShapes: ["x": x.shape])
        guard let out = shapes["y"] else { throw QuarryError.unknownValue("y") }
        let weights = WeightStore(device: self)
        let xMem = try CLMem(device: self, floats: x.count)
        let yMem = try CLMem(device: self, floats: out.reduce(1, *))
        try clCheck(clEnqueueWriteBuffer(queue, xMem.mem, cl_bool(CL_TRUE), 0, x.count * 4, x.pointer, 0, nil, nil), "upload x")
        var nan = Float.nan
        try clCheck(clEnqueueFillBuffer(queue, yMem.mem, &nan, 4, 0, out.reduce(1, *) * 4, 0, nil, nil), "poisoning y")
        let l = Lowering(
            device: self, node: node, inputShapes: [x.shape, w.shape, [outChannels]], outputShapes: [out],
            inputs: [BufferRef(base: .fixed(xMem), offset: 0),
                     BufferRef(base: .fixed(try weights.buffer("w") { w }), offset: 0),
                     BufferRef(base: .fixed(try weights.buffer("b") { bias }), offset: 0)],
            outputs: [BufferRef(base: .fixed(yMem), offset: 0)], constants: [1: w, 2: bias], weights: weights)
        l.scheduleOverride = schedule
        try l.lower()
        let scratch = try CLMem(device: self, floats: l.scratchFloats)
        for launch in l.launches { try launch.bind(arena: scratch.mem, scratch: scratch.mem) }
        let flops = 2 * Double(out.reduce(1, *)) * Double(inChannels / groups * kernel * kernel)
        let bench = try timeRepeats(repeats, flops: flops) {
            for launch in l.launches { try launch.enqueue(on: queue) }
            try finish()
        }
        var worst = 0.0
        if checkSamples > 0 {
            let y = Tensor(uninitializedShape: out)
            try clCheck(clEnqueueReadBuffer(queue, yMem.mem, cl_bool(CL_TRUE), 0, y.count * 4, y.pointer, 0, nil, nil), "download y")
            let (o, oh, ow) = (out[1], out[2], out[3])
            let cg = inChannels / groups, og = outChannels / groups
            // The first and last outputs (edge tiles) and random ones.
            var picks = [0, y.count - 1]
            for _ in 0..<checkSamples { picks.append(Int.random(in: 0..<y.count, using: &rng)) }
            for i in picks {
                let ox = i % ow, oy = i / ow % oh, oc = i / (ow * oh) % o, img = i / (ow * oh * o)
                let grp = oc / og
                var e = Double(bias[flat: oc])
                for ci in 0..<cg { for ky in 0..<kernel { for kx in 0..<kernel {
                    let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                    guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                    e += Double(x[flat: ((img * inChannels + grp * cg + ci) * height + iy) * width + ix])
                        * Double(w[flat: ((oc * cg + ci) * kernel + ky) * kernel + kx])
                } } }
                e = max(e, 0)
                let d = abs(Double(y[flat: i]) - e) / (1 + abs(e))
                worst = max(worst, d.isNaN ? .infinity : d)
            }
        }
        return (bench, worst)
    }
}
