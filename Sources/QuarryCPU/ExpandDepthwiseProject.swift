// An inverted-residual block's three convolutions on row bands of each image.
//
// MobileNetV2's blocks expand a narrow tensor six times with a 1x1 convolution, filter it with a
// depthwise 3x3 and project it back with a 1x1. At 112x112 and 56x56 the wide tensor is 4.8 and
// 1.8 MB an image (19 and 7 MB for a lane of four): run layer by layer, the expansion writes it out
// to memory, the depthwise layer reads it back and writes its own, and the projection reads that:
// the depthwise layers ran at the machine's memory bandwidth, far from their arithmetic. Here each
// image goes through all three a band of output rows at a time: the expansion computes the input
// rows the band's windows cover into a buffer of a few hundred KiB, the depthwise filter writes
// the band into a second one, and the projection reads that and writes the output rows. The
// wide tensors never leave L2; only the narrow input and output go to memory. Input rows shared
// by two bands (the window's overlap) are moved to the top of the buffer, not computed again.

import Foundation
import Quarry

extension Graph {
    /// Replaces each 1x1 conv -> depthwise 3x3 conv -> 1x1 conv chain whose wide tensors (the
    /// expansion's and the depthwise's outputs, read only by the next of the three and not asked
    /// for) are at least `minWideFloats` an image, by one `expandDepthwiseProject` node named
    /// "expand+depthwise+project" after the three; a depthwise -> 1x1 chain whose input is not
    /// such an expansion (MobileNetV2's first block) likewise, without the expansion. Every
    /// convolution must have a bias, the first ones a clamp activation or none; the projection keeps
    /// its residual and activation.
    func fusingExpandDepthwiseProject(keeping keep: Set<String>, shapes: [String: [Int]], minWideFloats: Int) -> Graph {
        let consumers = consumerCounts()
        let producer = producerIndices()
        func isPointwise(_ a: Conv2DAttributes) -> Bool {
            a.kernelH == 1 && a.kernelW == 1 && a.strideH == 1 && a.strideW == 1 && a.padding == .zero && a.groups == 1
                && a.dilationH == 1 && a.dilationW == 1
        }
        func soleUse(_ v: String) -> Bool { consumers[v] == 1 && !keep.contains(v) }
        var g = self
        var removed = Set<Int>()
        for (pi, project) in nodes.enumerated() {
            guard case .conv2d(let pa) = project.op, isPointwise(pa), project.inputs.count >= 3, !project.inputs[2].isEmpty,
                  let di = producer[project.inputs[0]], soleUse(project.inputs[0]),
                  case .conv2d(let da) = nodes[di].op, nodes[di].inputs.count == 3, !nodes[di].inputs[2].isEmpty,
                  da.activation == nil || FusedClamp(da.activation) != nil,
                  let wide = shapes[nodes[di].inputs[0]], wide.count == 4, da.groups == wide[1], !removed.contains(di)
            else { continue }
            // The expansion, when the depthwise input is a fusable 1x1 conv's output read by it alone
            // (and that conv is not already the projection of a chain fused before).
            var ei: Int? = nil
            if let i = producer[nodes[di].inputs[0]], soleUse(nodes[di].inputs[0]), !removed.contains(i),
               case .conv2d(let ea) = g.nodes[i].op, isPointwise(ea), nodes[i].inputs.count == 3, !nodes[i].inputs[2].isEmpty,
               ea.activation == nil || FusedClamp(ea.activation) != nil {
                ei = i
            }
            let filtered = shapes[nodes[di].outputs[0]] ?? []
            let depthwise = ConvGeometry(channels: 1, height: wide[2], width: wide[3], outHeight: filtered.count == 4 ? filtered[2] : 0,
                                         outWidth: filtered.count == 4 ? filtered[3] : 0, kernelH: da.kernelH, kernelW: da.kernelW,
                                         strideH: da.strideH, strideW: da.strideW, dilationH: da.dilationH, dilationW: da.dilationW,
                                         padTop: da.padding.top, padLeft: da.padding.left)
            guard Depthwise3x3.supports(depthwise), wide[1] * wide[2] * wide[3] >= minWideFloats else { continue }
            let expand = ei.map { nodes[$0] }, filter = nodes[di]
            var expandActivation: Activation? = nil
            if let expand, case .conv2d(let ea) = expand.op { expandActivation = ea.activation }
            var fused = project
            fused.name = ((expand.map { [$0.name] } ?? []) + [filter.name, project.name]).joined(separator: "+")
            fused.op = .expandDepthwiseProject(ExpandDepthwiseProjectAttributes(
                expandActivation: expandActivation, depthwise: da, projectActivation: pa.activation))
            fused.inputs = (expand.map { [$0.inputs[0], $0.inputs[1], $0.inputs[2]] } ?? [filter.inputs[0], "", ""])
                + [filter.inputs[1], filter.inputs[2], project.inputs[1], project.inputs[2]]
                + (project.inputs.count > 3 ? [project.inputs[3]] : [])
            g.nodes[pi] = fused
            removed.insert(di)
            if let ei { removed.insert(ei) }
        }
        if removed.isEmpty { return self }
        g.nodes = g.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        return g
    }
}

/// The geometry of one `expandDepthwiseProject` node and its bands.
struct ExpandDepthwiseProject {
    let inChannels, wide, outChannels: Int
    /// The depthwise convolution over one wide channel.
    let depthwise: Depthwise3x3
    var g: ConvGeometry { depthwise.g }
    /// Output rows per band, and the input rows a band's windows can cover (the buffer's rows).
    let bandRows, bufferRows: Int
    /// Floats of one wide channel in each buffer; the depthwise buffer's stride is kept off a
    /// multiple of 4 KiB (the projection reads its channels in place, a panel's rows then share
    /// L1 sets).
    let expandedStride, filteredStride: Int

    /// `budget`: floats of expanded rows a band may hold (and half that of filtered rows).
    init(inChannels: Int, wide: Int, outChannels: Int, depthwise g: ConvGeometry, budget: Int = 1 << 17) {
        self.inChannels = inChannels; self.wide = wide; self.outChannels = outChannels
        depthwise = Depthwise3x3(g)
        // By default about 512 KiB of expanded rows and 256 KiB of filtered rows: both in a 1 MiB L2
        // with room for the projection's output panels. MobileNetV2 at batch 8, per band budget:
        // 256 Ki floats 9.4 ms for its three fused blocks, 128 Ki 9.2, 64 Ki 10.6.
        let s = g.strideH
        var rows = 1
        while rows < g.outHeight && wide * ((rows + 1) * s + g.kernelH) * g.width <= budget
                && wide * (rows + 1) * g.outWidth <= budget / 2 { rows += 1 }
        bandRows = rows
        bufferRows = (rows - 1) * s + g.kernelH
        expandedStride = bufferRows * g.width
        var f = rows * g.outWidth
        if (f * 4) % 4096 == 0 { f += 16 }
        filteredStride = f
    }

    /// Scratch floats: the expanded rows with the depthwise loads' margins, and the filtered rows.
    var scratchCount: Int { Depthwise3x3.before + wide * expandedStride + Depthwise3x3.after + 16 + wide * filteredStride + 16 }

    /// Output rows `rows` of one image (`x`: its input planes, `out`: its output planes,
    /// `residual`: its residual planes), band after band.
    func run(rows: Range<Int>, x: UnsafePointer<Float>, expand: (a: PackedMatrix?, w: UnsafePointer<Float>, bias: UnsafePointer<Float>)?,
             filter: (w: UnsafePointer<Float>, bias: UnsafePointer<Float>),
             project: (a: PackedMatrix?, w: UnsafePointer<Float>, bias: UnsafePointer<Float>),
             expandActivation: Activation?, filterClip: Clip, projectActivation: Activation?,
             residual: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let one = CPUThreads(count: 1)
        let s = g.strideH, inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
        let expanded = scratch + Depthwise3x3.before
        let filtered = expanded + wide * expandedStride + Depthwise3x3.after + 16
        // Image rows held in `expanded`: [top, top + held).
        var top = 0, held = 0
        var oy0 = rows.lowerBound
        while oy0 < rows.upperBound {
            let oy1 = min(rows.upperBound, oy0 + bandRows)
            // The input rows these output rows' windows cover inside the image.
            let lo = max(0, oy0 * s - g.padTop), hi = min(g.height, (oy1 - 1) * s - g.padTop + g.kernelH)
            // Rows already held move to the buffer's top; the rest are computed.
            var have = 0
            if held > 0 && lo >= top && lo < top + held {
                have = top + held - lo
                if lo > top {
                    for c in 0..<wide {
                        let p = expanded + c * expandedStride
                        memmove(p, p + (lo - top) * g.width, have * g.width * 4)
                    }
                }
            }
            let first = lo + have
            if hi > first, let expand {
                gemmWith(m: wide, n: (hi - first) * g.width, k: inChannels, packedA: expand.a, a: expand.w, lda: inChannels,
                         b: DenseOperand(base: x + first * g.width, ld: inPlane, transposed: false),
                         c: expanded + have * g.width, ldc: expandedStride,
                         epilogue: GEMMEpilogue(bias: expand.bias, biasAxis: .rows, activation: expandActivation), threads: one)
            } else if hi > first {
                // No expansion: the input rows themselves, copied (the depthwise loads reach past
                // a row, which in place could leave the tensor).
                for c in 0..<wide {
                    (expanded + c * expandedStride + have * g.width).update(from: x + c * inPlane + first * g.width,
                                                                            count: (hi - first) * g.width)
                }
            }
            top = lo; held = max(hi - lo, 0)
            // Image row iy of channel c is at expanded + c * stride + (iy - lo) * width.
            for c in 0..<wide {
                depthwise.run(rows: oy0..<oy1, src: expanded + c * expandedStride - lo * g.width, weights: filter.w + 9 * c,
                              bias: filter.bias[c], clip: filterClip, dst: filtered + c * filteredStride)
            }
            let n = (oy1 - oy0) * g.outWidth
            gemmWith(m: outChannels, n: n, k: wide, packedA: project.a, a: project.w, lda: wide,
                     b: DenseOperand(base: filtered, ld: filteredStride, transposed: false, inPlace: true),
                     c: out + oy0 * g.outWidth, ldc: outPlane,
                     epilogue: GEMMEpilogue(bias: project.bias, biasAxis: .rows, addend: residual.map { $0 + oy0 * g.outWidth },
                                            addendLd: outPlane, activation: projectActivation),
                     threads: one)
            oy0 = oy1
        }
    }
}

extension CPUKernels {
    static func makeExpandDepthwiseProject(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .expandDepthwiseProject(let a) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0), out = ctx.outputShapes[0]
        let expands = ctx.hasInput(1)
        let batch = x[0], inChannels = x[1], wide = expands ? ctx.shape(1)[0] : x[1], outChannels = out[1]
        let d = a.depthwise
        let g = ConvGeometry(channels: 1, height: x[2], width: x[3], outHeight: out[2], outWidth: out[3],
                             kernelH: d.kernelH, kernelW: d.kernelW, strideH: d.strideH, strideW: d.strideW,
                             dilationH: d.dilationH, dilationW: d.dilationW, padTop: d.padding.top, padLeft: d.padding.left)
        guard Depthwise3x3.supports(g), d.groups == wide, !expands || ctx.hasInput(2), ctx.hasInput(4), ctx.hasInput(6) else {
            throw QuarryError.unsupported("expand_depthwise_project '\(ctx.node.name)': needs biases and a 3x3 depthwise filter of stride 1 or 2")
        }
        let block = ExpandDepthwiseProject(inChannels: inChannels, wide: wide, outChannels: outChannels, depthwise: g)
        let name = ctx.node.name
        let expandA = ctx.constants[1].map { w in
            ctx.packCache.value("\(name)/expand-weights") { PackedMatrix(a: w.pointer, m: wide, k: inChannels, lda: inChannels) }
        }
        let projectA = ctx.constants[5].map { w in
            ctx.packCache.value("\(name)/project-weights") { PackedMatrix(a: w.pointer, m: outChannels, k: wide, lda: wide) }
        }
        let clamp = FusedClamp(d.activation)
        let filterClip = Clip(lo: V16(repeating: clamp?.lo ?? -.infinity), hi: V16(repeating: clamp?.hi ?? .infinity))
        let threads = ctx.threads, hasResidual = ctx.hasInput(7)
        let inImage = inChannels * x[2] * x[3], outImage = outChannels * out[2] * out[3]
        // Whole images per thread when every thread gets one; else an image's rows split.
        let splits = batch >= threads.count ? 1 : threads.count
        let units = batch * splits
        return { inputs, outputs in
            let xp = inputs[0]!, y = outputs[0]
            let expand = expands ? (a: expandA, w: inputs[1]!, bias: inputs[2]!) : nil, filter = (w: inputs[3]!, bias: inputs[4]!)
            let project = (a: projectA, w: inputs[5]!, bias: inputs[6]!)
            threads.parallelFor(min(threads.count, units)) { worker in
                let workers = min(threads.count, units)
                ThreadBuffers.current.withScratch(block.scratchCount) { scratch in
                    for unit in (units * worker / workers)..<(units * (worker + 1) / workers) {
                        let n = unit / splits, part = unit % splits
                        let rows = (g.outHeight * part / splits)..<(g.outHeight * (part + 1) / splits)
                        block.run(rows: rows, x: xp + n * inImage, expand: expand, filter: filter, project: project,
                                  expandActivation: a.expandActivation, filterClip: filterClip,
                                  projectActivation: a.projectActivation,
                                  residual: hasResidual ? inputs[7]! + n * outImage : nil, out: y + n * outImage,
                                  scratch: scratch)
                    }
                }
            }
        }
    }
}
