import Foundation
import Quarry
@testable import QuarryCPU
import XCTest

/// The fused inverted-residual block (1x1 expansion, depthwise 3x3, 1x1 projection on row bands)
/// against the three convolutions computed in float64, and the plan pass that makes it.
final class ExpandDepthwiseProjectTests: XCTestCase {
    struct Block {
        var x: Tensor
        /// Nil: no expansion (the depthwise filter reads x).
        var we, be: Tensor?
        var wd, bd, wp, bp: Tensor
        var residual: Tensor?
        var attrs: ExpandDepthwiseProjectAttributes
        var operands: [Tensor?] { [x, we, be, wd, bd, wp, bp] + (residual.map { [$0] } ?? []) }
        var wide: Int { we?.shape[0] ?? x.shape[1] }
    }

    func randomBlock(n: Int, c: Int, e: Int, o: Int, h: Int, w: Int, stride: Int, pad: Padding2D, residual: Bool,
                     expands: Bool = true, _ rng: inout SeededGenerator) throws -> Block {
        let e = expands ? e : c
        let clamps: [Activation?] = [nil, .relu, .relu6]
        let dw = Conv2DAttributes(kernel: (3, 3), stride: (stride, stride), padding: pad, groups: e,
                                  activation: clamps.randomElement(using: &rng)!)
        let attrs = ExpandDepthwiseProjectAttributes(expandActivation: clamps.randomElement(using: &rng)!, depthwise: dw,
                                                     projectActivation: [nil, .relu].randomElement(using: &rng)!)
        let x = randomTensor([n, c, h, w], &rng)
        let outShape = try inferOutputShapes(.expandDepthwiseProject(attrs),
                                             [[n, c, h, w], expands ? [e, c, 1, 1] : nil, expands ? [e] : nil, [e, 1, 3, 3], [e],
                                              [o, e, 1, 1], [o]])[0]
        return Block(x: x, we: expands ? randomTensor([e, c, 1, 1], &rng) : nil, be: expands ? randomTensor([e], &rng) : nil,
                     wd: randomTensor([e, 1, 3, 3], &rng), bd: randomTensor([e], &rng),
                     wp: randomTensor([o, e, 1, 1], &rng), bp: randomTensor([o], &rng),
                     residual: residual ? randomTensor(outShape, &rng) : nil, attrs: attrs)
    }

    /// The three convolutions in float64, from their definitions.
    func reference(_ b: Block) -> [Double] {
        let (n, c, h, w) = (b.x.shape[0], b.x.shape[1], b.x.shape[2], b.x.shape[3])
        let e = b.wide, o = b.wp.shape[0], d = b.attrs.depthwise
        let oh = (h + d.padding.top + d.padding.bottom - 3) / d.strideH + 1
        let ow = (w + d.padding.left + d.padding.right - 3) / d.strideW + 1
        func act(_ a: Activation?, _ v: Double) -> Double { a.map { referenceActivation($0, v) } ?? v }
        var out = [Double](repeating: 0, count: n * o * oh * ow)
        for img in 0..<n {
            var expanded = [Double](repeating: 0, count: e * h * w)
            for ch in 0..<e {
                for p in 0..<(h * w) {
                    guard let we = b.we, let be = b.be else {
                        expanded[ch * h * w + p] = Double(b.x[flat: (img * c + ch) * h * w + p])
                        continue
                    }
                    var s = Double(be[flat: ch])
                    for k in 0..<c { s += Double(we[flat: ch * c + k]) * Double(b.x[flat: (img * c + k) * h * w + p]) }
                    expanded[ch * h * w + p] = act(b.attrs.expandActivation, s)
                }
            }
            var filtered = [Double](repeating: 0, count: e * oh * ow)
            for ch in 0..<e {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var s = Double(b.bd[flat: ch])
                        for ky in 0..<3 {
                            for kx in 0..<3 {
                                let iy = oy * d.strideH - d.padding.top + ky, ix = ox * d.strideW - d.padding.left + kx
                                if iy < 0 || iy >= h || ix < 0 || ix >= w { continue }
                                s += Double(b.wd[flat: ch * 9 + ky * 3 + kx]) * expanded[(ch * h + iy) * w + ix]
                            }
                        }
                        filtered[(ch * oh + oy) * ow + ox] = act(d.activation, s)
                    }
                }
            }
            for oc in 0..<o {
                for p in 0..<(oh * ow) {
                    let index = (img * o + oc) * oh * ow + p
                    var s = Double(b.bp[flat: oc])
                    for ch in 0..<e { s += Double(b.wp[flat: oc * e + ch]) * filtered[ch * oh * ow + p] }
                    if let r = b.residual { s += Double(r[flat: index]) }
                    out[index] = act(b.attrs.projectActivation, s)
                }
            }
        }
        return out
    }

    func tolerance(_ b: Block) -> Double {
        let c = Double(b.x.shape[1]), e = Double(b.wide)
        return 2e-5 * (c.squareRoot() * 3 * e.squareRoot())
    }

    /// The kernel through the factory (outputs poisoned first): random shapes (channel counts
    /// not multiples of 16, widths with a partial last vector, planes from 3x3), stride 1 and 2,
    /// every padding the depthwise kernel takes, with and without a residual, batches of one to
    /// three on one or two threads (whole images per thread, or an image's rows split), constant
    /// and run-time weights; then MobileNetV2's 56x56 shapes, which take several bands.
    func testKernelMatchesTheThreeConvolutions() throws {
        var rng = makeTestRNG()
        var shapes: [(n: Int, c: Int, e: Int, o: Int, h: Int, w: Int, stride: Int, pad: Padding2D)] = []
        for _ in 0..<10 {
            shapes.append((Int.random(in: 1...3, using: &rng), Int.random(in: 1...20, using: &rng), Int.random(in: 1...40, using: &rng),
                           Int.random(in: 1...24, using: &rng), Int.random(in: 3...30, using: &rng), Int.random(in: 3...50, using: &rng),
                           Int.random(in: 1...2, using: &rng),
                           Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...2, using: &rng),
                                     bottom: Int.random(in: 0...2, using: &rng), right: Int.random(in: 0...2, using: &rng))))
        }
        shapes.append((2, 24, 144, 24, 56, 56, 1, Padding2D(1)))
        shapes.append((1, 24, 144, 32, 56, 56, 2, Padding2D(1)))
        // Under every instruction-set level the host has (the GEMMs and the depthwise rows run in
        // CQuarryKernels' variant of the level in force).
        try CPUInstructionSet.forEachAvailable { level in
        for s in shapes {
            let block = try randomBlock(n: s.n, c: s.c, e: s.e, o: s.o, h: s.h, w: s.w, stride: s.stride, pad: s.pad,
                                        residual: Bool.random(using: &rng), expands: Int.random(in: 0..<4, using: &rng) > 0, &rng)
            let constants: Set<Int> = Bool.random(using: &rng) ? [1, 2, 3, 4, 5, 6] : []
            let out = try runCPUNode(.expandDepthwiseProject(block.attrs), block.operands, constantIndices: constants,
                                     threads: Int.random(in: 1...2, using: &rng))[0]
            assertClose(out, reference(block), rtol: 1e-4, atol: tolerance(block), "\(level) block \(s) \(block.attrs)")
        }
        }
    }

    /// Bands of one to a few rows (a tiny budget): the rows two bands' windows share are moved
    /// to the buffer's top and not recomputed, at every stride and padding, over a part of the
    /// image's rows as a thread takes them.
    func testSmallBandsAndRowRanges() throws {
        var rng = makeTestRNG()
        for _ in 0..<8 {
            let stride = Int.random(in: 1...2, using: &rng)
            let pad = Padding2D(top: Int.random(in: 0...2, using: &rng), left: Int.random(in: 0...2, using: &rng),
                                bottom: Int.random(in: 0...2, using: &rng), right: Int.random(in: 0...2, using: &rng))
            let (c, e, o) = (Int.random(in: 1...8, using: &rng), Int.random(in: 1...20, using: &rng), Int.random(in: 1...12, using: &rng))
            let (h, w) = (Int.random(in: 6...24, using: &rng), Int.random(in: 3...40, using: &rng))
            let b = try randomBlock(n: 1, c: c, e: e, o: o, h: h, w: w, stride: stride, pad: pad,
                                    residual: Bool.random(using: &rng), expands: Bool.random(using: &rng), &rng)
            let expected = reference(b)
            let oh = (h + pad.top + pad.bottom - 3) / stride + 1, ow = (w + pad.left + pad.right - 3) / stride + 1
            let g = ConvGeometry(channels: 1, height: h, width: w, outHeight: oh, outWidth: ow, kernelH: 3, kernelW: 3,
                                 strideH: stride, strideW: stride, dilationH: 1, dilationW: 1, padTop: pad.top, padLeft: pad.left)
            let budget = b.wide * (Int.random(in: 1...3, using: &rng) * stride + 3) * w
            let block = ExpandDepthwiseProject(inChannels: c, wide: b.wide, outChannels: o, depthwise: g, budget: budget)
            XCTAssertLessThan(block.bandRows, 4)
            let out = Tensor(shape: [1, o, oh, ow], repeating: .nan)
            let split = Int.random(in: 0...oh, using: &rng)
            let scratch = TensorStorage(count: block.scratchCount)
            let clamp = FusedClamp(b.attrs.depthwise.activation)
            let clip = Clip(lo: V16(repeating: clamp?.lo ?? -.infinity), hi: V16(repeating: clamp?.hi ?? .infinity))
            for rows in [0..<split, split..<oh] where !rows.isEmpty {
                let expand = b.we.map { we in (a: PackedMatrix?.none, w: UnsafePointer(we.pointer), bias: UnsafePointer(b.be!.pointer)) }
                block.run(rows: rows, x: b.x.pointer, expand: expand,
                          filter: (UnsafePointer(b.wd.pointer), UnsafePointer(b.bd.pointer)),
                          project: (nil, UnsafePointer(b.wp.pointer), UnsafePointer(b.bp.pointer)), expandActivation: b.attrs.expandActivation,
                          filterClip: clip, projectActivation: b.attrs.projectActivation,
                          residual: b.residual.map { UnsafePointer($0.pointer) }, out: out.pointer, scratch: scratch.pointer)
            }
            assertClose(out, expected, rtol: 1e-4, atol: tolerance(b), "bands of \(block.bandRows) rows, split at \(split)")
        }
    }

    /// The plan fuses a chain whose wide tensors are large enough and read only along the chain,
    /// names the node after the three, and leaves the expansion out when the caller asks for its
    /// output; either way the outputs are the three convolutions'.
    func testPlanFusesLargeChainsOnly() throws {
        var rng = makeTestRNG()
        let b = GraphBuilder()
        let x = b.input("x", shape: [.symbol("n"), 8, .symbol("h"), .symbol("w")])
        func conv(_ name: String, _ input: Value, _ o: Int, _ k: Int, stride: Int = 1, groups: Int = 1, act: Activation?) -> Value {
            let c = groups == 1 ? 8 : o
            let w = b.parameter(name + ".weight", shape: [o, groups == 1 ? (name == "project" ? 96 : c) : 1, k, k], initializer: .normal(std: 0.3))
            return b.add(name, .conv2d(Conv2DAttributes(kernel: (k, k), stride: (stride, stride), padding: Padding2D(k / 2),
                                                          groups: groups, activation: act)),
                         input, w, b.parameter(name + ".bias", shape: [o], initializer: .normal(std: 0.3)))
        }
        let e = conv("expand", x, 96, 1, act: .relu6)
        let d = conv("depthwise", e, 96, 3, stride: 2, groups: 96, act: .relu6)
        let p = conv("project", d, 16, 1, act: nil)
        var graph = b.build(outputs: [p])
        graph.materializeParameters(seed: 5)

        let input = randomTensor([2, 8, 56, 56], &rng)
        let block = Block(x: input, we: graph.parameters["expand.weight"]!.value, be: graph.parameters["expand.bias"]!.value,
                          wd: graph.parameters["depthwise.weight"]!.value!, bd: graph.parameters["depthwise.bias"]!.value!,
                          wp: graph.parameters["project.weight"]!.value!, bp: graph.parameters["project.bias"]!.value!,
                          residual: nil, attrs: ExpandDepthwiseProjectAttributes(
                            expandActivation: .relu6,
                            depthwise: Conv2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1), groups: 96, activation: .relu6),
                            projectActivation: nil))
        let expected = reference(block)
        for (outputs, fused) in [(["project"], true), (["project", "expand"], false)] {
            let compiled = try CPUDevice(threads: 1).compile(graph, outputs: outputs) as! CPUCompiledGraph
            let plan = try compiled.plan(for: ["x": [2, 8, 56, 56]])
            // Asked for, the expansion stays, and the depthwise and projection fuse without it.
            XCTAssertEqual(plan.graph.nodes.map(\.name), fused ? ["expand+depthwise+project"] : ["expand", "depthwise+project"])
            assertClose(try compiled.run(["x": input])["project"]!, expected, rtol: 1e-4, atol: tolerance(block), "outputs \(outputs)")
        }
        // At 28x28 the wide tensor (75 Ki floats) stays unfused.
        let small = try CPUDevice(threads: 1).compile(graph, outputs: ["project"]) as! CPUCompiledGraph
        XCTAssertEqual(try small.plan(for: ["x": [1, 8, 28, 28]]).graph.nodes.count, 3)
    }
}
