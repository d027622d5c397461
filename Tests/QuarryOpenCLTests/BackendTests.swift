import Foundation
import Quarry
import QuarryCPU
@testable import QuarryOpenCL
import XCTest

/// Collects log lines for assertions.
final class LogCollector: @unchecked Sendable {
    private var lines: [String] = []
    private let lock = NSLock()
    func append(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

final class BackendTests: XCTestCase {
    func testDiscovery() throws {
        let devices = OpenCLRuntime.devices()
        if devices.isEmpty {
            XCTAssertNotNil(OpenCLRuntime.discoveryError, "no devices and no reason")
            throw XCTSkip("no OpenCL device: \(OpenCLRuntime.discoveryError ?? "")")
        }
        for (i, d) in devices.enumerated() {
            XCTAssertEqual(d.info.spec, "opencl:\(i)")
            XCTAssertEqual(d.info.kind, .opencl)
            XCTAssertFalse(d.info.name.isEmpty)
            XCTAssertGreaterThan(d.info.computeUnits, 0)
            XCTAssertGreaterThan(d.info.globalMemoryBytes, 0)
            XCTAssertGreaterThan(d.info.maxAllocationBytes, 0)
            XCTAssertFalse(d.platform.version.isEmpty)
        }
        XCTAssertTrue(try OpenCLRuntime.device(spec: "opencl") === devices[0])
        XCTAssertThrowsError(try OpenCLRuntime.device(spec: "opencl:\(devices.count)"))
        XCTAssertThrowsError(try OpenCLRuntime.device(spec: "opencl:x"))
    }

    /// Every op the graph can hold either runs as kernels or has a stated reason to fall back.
    func testEveryOpIsSupportedOrHasAReason() {
        let conv = Conv2DAttributes(kernel: (3, 3))
        let pool = Pool2DAttributes(kernel: (2, 2))
        let rec = RecurrentAttributes(hiddenSize: 4)
        let ops: [Op] = [
            .input, .constant, .conv2d(conv), .convTranspose2d(ConvTranspose2DAttributes(kernel: (2, 2))),
            .dense(activation: nil), .matmul(transposeA: false, transposeB: false), .maxPool2d(pool), .avgPool2d(pool),
            .globalAvgPool, .globalMaxPool, .batchNorm(epsilon: 1e-5), .layerNorm(epsilon: 1e-5, normalizedDims: 1),
            .instanceNorm(epsilon: 1e-5), .softmax(axis: -1), .logSoftmax(axis: -1), .attention(heads: 2, causal: true),
            .lstm(rec), .gru(rec), .gru(RecurrentAttributes(hiddenSize: 4, linearBeforeReset: false)), .embedding,
            .activation(.relu), .binary(.add, activation: nil), .select, .reduce(.mean, axes: [1], keepDims: true),
            .concat(axis: 1), .split(axis: 1, sizes: [1, 1]), .slice(starts: [0], ends: [1], axes: [0], steps: [1]),
            .pad(pads: [0, 0], mode: .constant, value: 0), .upsample(mode: .nearest, scaleH: 2, scaleW: 2, size: nil),
            .reshape(shape: [-1]), .transpose(perm: [1, 0]), .flatten(axis: 1), .identity,
            .argExtreme(largest: true, axis: 0, keepDims: true, selectLast: false), .topK(k: 1, axis: -1, largest: true),
            .cumSum(axis: 0, exclusive: false, reverse: false), .gather(axis: 1), .gatherElements(axis: 0),
            .gatherND(batchDims: 0), .scatterND(.add),
            .expandDepthwiseProject(ExpandDepthwiseProjectAttributes(
                expandActivation: .relu6, depthwise: Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 4),
                projectActivation: nil)),
        ]
        // A new Op case must be listed here: this switch stops compiling until it is.
        for op in ops {
            switch op {
            case .input, .constant, .conv2d, .convTranspose2d, .dense, .matmul, .maxPool2d, .avgPool2d, .globalAvgPool,
                 .globalMaxPool, .batchNorm, .layerNorm, .instanceNorm, .softmax, .logSoftmax, .attention, .lstm, .gru,
                 .embedding, .activation, .binary, .select, .reduce, .concat, .split, .slice, .pad, .upsample, .reshape,
                 .transpose, .flatten, .identity, .expandDepthwiseProject, .argExtreme, .topK, .cumSum, .gather,
                 .gatherElements, .gatherND, .scatterND:
                break
            }
            let reason = OpenCLDevice.unsupportedReason(op)
            if let reason { XCTAssertFalse(reason.isEmpty, "\(op.name)") }
            if let d = OpenCLRuntime.devices().first { XCTAssertEqual(d.supports(op), reason == nil, op.name) }
        }
        var fellBack = ops.filter { OpenCLDevice.unsupportedReason($0) != nil }.map(\.name)
        fellBack.sort()
        XCTAssertEqual(fellBack, ["constant", "expand_depthwise_project", "gru", "input"],
                       "the ops that fall back changed: update the report")
    }

    /// A small network through the compiled graph: conv + batch norm (folded) + relu (fused),
    /// pooling, a residual add, two nodes forced onto the CPU (one host segment, logged once), flatten
    /// (aliased) and dense; two batch sizes (two plans) and runs from several threads at once.
    func testCompiledGraphWithFallbackAndThreads() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let b = GraphBuilderShim()
        let x = randomTensor([2, 3, 9, 8], &rng)
        let w = randomTensor([4, 3, 3, 3], &rng), cb = randomTensor([4], &rng)
        let g = randomTensor([4], &rng), beta = randomTensor([4], &rng), mean = randomTensor([4], &rng)
        let variance = randomTensor([4], &rng, in: 0.5...1.5)
        let dw = randomTensor([5, 4 * 4 * 4], &rng), db = randomTensor([5], &rng)
        let graph = b.graph(params: ["w": w, "cb": cb, "g": g, "beta": beta, "mean": mean, "var": variance, "dw": dw, "db": db], nodes: [
            Node(name: "conv", op: .conv2d(Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))), inputs: ["x", "w", "cb"], outputs: ["conv"]),
            Node(name: "bn", op: .batchNorm(epsilon: 1e-5), inputs: ["conv", "g", "beta", "mean", "var"], outputs: ["bn"]),
            Node(name: "relu", op: .activation(.relu), inputs: ["bn"], outputs: ["relu"]),
            Node(name: "sig", op: .activation(.sigmoid), inputs: ["relu"], outputs: ["sig"]),
            Node(name: "res", op: .binary(.add, activation: nil), inputs: ["relu", "sig"], outputs: ["res"]),
            Node(name: "pool", op: .maxPool2d(Pool2DAttributes(kernel: (2, 2))), inputs: ["res"], outputs: ["pool"]),
            Node(name: "flat", op: .flatten(axis: 1), inputs: ["pool"], outputs: ["flat"]),
            Node(name: "fc", op: .dense(activation: nil), inputs: ["flat", "dw", "db"], outputs: ["fc"]),
        ], output: "fc")
        let log = LogCollector()
        OpenCLLog.setHandler { log.append($0) }
        defer { OpenCLLog.setHandler { FileHandle.standardError.write(Data("quarry opencl: \($0)\n".utf8)) } }
        let compiled = try OpenCLCompiledGraph(device: device, graph: graph, outputs: ["fc", "relu"], forceCPU: ["sig", "res"])
        XCTAssertEqual(compiled.fallbacks["sig"], "forced onto the CPU")
        XCTAssertEqual(compiled.fallbacks["res"], "forced onto the CPU")
        XCTAssertTrue(log.all.contains { $0.contains("'sig'") && $0.contains("CPU") }, "fallback not logged: \(log.all)")
        XCTAssertFalse(compiled.graph.nodes.contains { $0.name == "bn" }, "batch norm was not folded")

        func reference(_ x: Tensor) -> ([Double], [Double]) {
            let n = x.shape[0]
            var conv = referenceConv2D(x, w, cb, Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1)), outShape: [n, 4, 9, 8])
            for i in conv.indices {
                let c = (i / 72) % 4
                conv[i] = max((conv[i] - Double(mean[flat: c])) / (Double(variance[flat: c]) + 1e-5).squareRoot() * Double(g[flat: c]) + Double(beta[flat: c]), 0)
            }
            let res = conv.map { $0 + 1 / (1 + exp(-$0)) }
            var pooled: [Double] = []
            for nc in 0..<(n * 4) { for oy in 0..<4 { for ox in 0..<4 {
                var m = -Double.infinity
                for ky in 0..<2 { for kx in 0..<2 { m = max(m, res[nc * 72 + (oy * 2 + ky) * 8 + ox * 2 + kx]) } }
                pooled.append(m)
            } } }
            var fc: [Double] = []
            for r in 0..<n { for j in 0..<5 {
                var s = Double(db[flat: j])
                for k in 0..<64 { s += pooled[r * 64 + k] * Double(dw[flat: j * 64 + k]) }
                fc.append(s)
            } }
            return (fc, conv)
        }
        let one = randomTensor([1, 3, 9, 8], &rng)
        for input in [x, one, x] {
            let out = try compiled.run(["x": input])
            let (fc, relu) = reference(input)
            assertClose(out["fc"]!, fc, rtol: 1e-3, atol: 1e-4, "fc, batch \(input.shape[0])")
            assertClose(out["relu"]!, relu, rtol: 1e-3, atol: 1e-4, "relu tap, batch \(input.shape[0])")
        }
        XCTAssertGreaterThan(try compiled.peakActivationBytes(inputShapes: ["x": x.shape]), 0)
        XCTAssertEqual(log.all.filter { $0.contains("'sig'") }.count, 1, "a fallback is logged once, whatever the plans: \(log.all)")
        XCTAssertEqual(try compiled.kernelNames(inputShapes: ["x": x.shape])["res"], ["cpu"])
        // Several threads share the compiled graph (as a scheduler's workers would).
        let (fc, _) = reference(x)
        let failures = LogCollector()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do {
                let out = try compiled.run(["x": x])
                for (i, e) in fc.enumerated() where abs(Double(out["fc"]![flat: i]) - e) > 1e-3 * (1 + abs(e)) {
                    failures.append("element \(i)"); break
                }
            } catch { failures.append("\(error)") }
        }
        XCTAssertEqual(failures.all, [])
    }
}

final class PlanBuilderBackendTests: XCTestCase {
    /// Both backends plan through one builder: the common passes run on OpenCL too, so a residual
    /// add moves into the convolution's epilogue there as on the CPU, and the sum is right.
    func testResidualAddFusesOnOpenCLAndMatchesTheReference() throws {
        let device = try testDevice()
        var rng = makeTestRNG()
        let x = randomTensor([2, 3, 9, 8], &rng)
        let w = randomTensor([3, 3, 3, 3], &rng), cb = randomTensor([3], &rng)
        let attributes = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))
        let graph = GraphBuilderShim().graph(params: ["w": w, "cb": cb], nodes: [
            Node(name: "conv", op: .conv2d(attributes), inputs: ["x", "w", "cb"], outputs: ["conv"]),
            Node(name: "add", op: .binary(.add, activation: .relu), inputs: ["conv", "x"], outputs: ["add"]),
        ], output: "add")
        let compiled = try OpenCLCompiledGraph(device: device, graph: graph, outputs: ["add"])
        XCTAssertEqual(compiled.builder.passNames, ["folding_transposes", "fusing_residual_adds"])
        let kernels = try compiled.kernelNames(inputShapes: ["x": x.shape])
        XCTAssertEqual(kernels.count, 1, "the add runs in the convolution's epilogue: \(kernels)")
        try compiled.poisonArena(inputShapes: ["x": x.shape])
        let out = try compiled.run(["x": x])["add"]!
        var ref = referenceConv2D(x, w, cb, attributes, outShape: [2, 3, 9, 8])
        for i in ref.indices { ref[i] = max(ref[i] + Double(x[flat: i]), 0) }
        assertClose(out, ref, rtol: 1e-4, atol: 1e-5, "fused residual on OpenCL")
        let cpu = try CPUDevice(threads: 1).compile(graph, outputs: ["add"]) as! CPUCompiledGraph
        XCTAssertEqual(cpu.builder.passNames, ["folding_transposes", "fusing_residual_adds", "fusing_expand_depthwise_project"])
    }

    /// `supports` is asked before lowering, with the shapes: attention whose heads are wider than
    /// the kernel's 256 falls back (logged once over two plans) and still gives the right answer.
    func testShapeLimitsAreAskedBeforeLowering() throws {
        let device = try testDevice()
        let node = Node(name: "att", op: .attention(heads: 1, causal: false), inputs: ["q", "k", "v"], outputs: ["o"])
        XCTAssertEqual(device.supports(node, inputShapes: [[1, 4, 300], [1, 4, 300], [1, 4, 300]], precision: .fp32),
                       .no("head width 300 exceeds 256"))
        XCTAssertEqual(device.supports(node, inputShapes: [[1, 4, 64], [1, 4, 64], [1, 4, 64]], precision: .fp32), .yes)
        XCTAssertNotNil(device.supports(node, inputShapes: [[1, 4, 64], [1, 4, 64], [1, 4, 64]], precision: .bf16).reason)
        let mm = Node(name: "mm", op: .matmul(transposeA: false, transposeB: false), inputs: ["a", "b"], outputs: ["c"])
        XCTAssertNotNil(device.supports(mm, inputShapes: [[2, 1, 3, 4], [1, 3, 4, 5]], precision: .fp32).reason)
        XCTAssertEqual(device.supports(mm, inputShapes: [[2, 3, 3, 4], [4, 5]], precision: .fp32), .yes)

        var rng = makeTestRNG()
        let graph = Graph(inputs: [GraphInput(name: "q", shape: [.symbol("B"), 3, 260])],
                          nodes: [Node(name: "att", op: .attention(heads: 1, causal: true), inputs: ["q", "q", "q"], outputs: ["o"])],
                          parameters: [:], outputs: ["o"])
        let log = LogCollector()
        OpenCLLog.setHandler { log.append($0) }
        defer { OpenCLLog.setHandler { FileHandle.standardError.write(Data("quarry opencl: \($0)\n".utf8)) } }
        let compiled = try OpenCLCompiledGraph(device: device, graph: graph, outputs: ["o"])
        let cpu = try CPUDevice(threads: 1).compile(graph, outputs: ["o"])
        for batch in [1, 2, 1] {
            let q = randomTensor([batch, 3, 260], &rng)
            let got = try compiled.run(["q": q])["o"]!, expected = try cpu.run(["q": q])["o"]!
            assertClose(got, doubles(expected), rtol: 1e-5, atol: 1e-6, "attention fallback, batch \(batch)")
        }
        XCTAssertEqual(compiled.fallbacks["att"], "head width 260 exceeds 256")
        XCTAssertEqual(log.all.filter { $0.contains("'att'") }.count, 1, "\(log.all)")
    }
}

/// Builds a graph from nodes, with "x" as the input and the given parameters.
struct GraphBuilderShim {
    func graph(params: [String: Tensor], nodes: [Node], output: String) -> Graph {
        Graph(inputs: [GraphInput(name: "x", shape: [.symbol("N"), 3, 9, 8])], nodes: nodes,
              parameters: params.mapValues { Parameter(shape: $0.shape, initializer: .constant(0), value: $0) },
              outputs: [output])
    }
}

final class ProbeTests: XCTestCase {
    func testProbeGivesPositiveFigures() throws {
        let device = try testDevice()
        let gflops = try device.measurePeakGFLOPS(repeats: 1)
        let gbps = try device.measureBandwidthGBps(repeats: 1)
        print("probe \(device.info.name): \(gflops) GFLOP/s, \(gbps) GB/s")
        XCTAssertGreaterThan(gflops, 0.1)
        XCTAssertGreaterThan(gbps, 0.1)
        XCTAssertTrue(gflops.isFinite && gbps.isFinite)
    }
}
