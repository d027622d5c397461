// Dense and matmul as GEMMs (Kernels/gemm.cl). The schedule depends on the device: CPU devices
// (PoCL) get register blocking straight from global memory, devices with dedicated local memory
// get the local-memory tiled kernel. B operands are packed in zero-padded column panels (see
// gemm.cl) so that the register-blocked kernel streams contiguous memory with no edge tests;
// constant weights are packed on the host once, runtime operands by `pack_b` into scratch.

import Foundation
import Quarry

/// How gemm.cl is specialised for a device: the parameters of the variant `KernelChoice.openCLGEMM`
/// picks (QUARRY_GEMM overrides it: "tiled[:LM,LN,WM,WN,TK]", or "reg:TM,VW,NV": rows per
/// work-item, vector width, vectors per row).
struct GEMMSchedule: Hashable {
    var tiled: Bool
    var tm = 8, vw = 16, nv = 1
    /// Tiled: work-items along M and N, each computing wm x wn, and the depth of a K step.
    var lm = 16, ln = 16, wm = 8, wn = 8, tk = 16

    init(tiled: Bool, tm: Int = 8, vw: Int = 16, nv: Int = 1) {
        self.tiled = tiled; self.tm = tm; self.vw = vw; self.nv = nv
    }

    init(_ variant: KernelVariant) {
        tiled = variant.name == "opencl.gemm.tiled"
        tm = variant.parameter("tm") ?? tm; vw = variant.parameter("vw") ?? vw; nv = variant.parameter("nv") ?? nv
        lm = variant.parameter("lm") ?? lm; ln = variant.parameter("ln") ?? ln
        wm = variant.parameter("wm") ?? wm; wn = variant.parameter("wn") ?? wn; tk = variant.parameter("tk") ?? tk
    }

    var variant: KernelVariant {
        tiled ? KernelVariant("opencl.gemm.tiled", ["lm": lm, "ln": ln, "wm": wm, "wn": wn, "tk": tk])
            : KernelVariant("opencl.gemm.register", ["tm": tm, "vw": vw, "nv": nv])
    }

    /// Columns of C one work-item (register) or work-group (tiled) covers: B is padded to it.
    var columnTile: Int { tiled ? ln * wn : vw * nv }
    /// Tiled: rows of C a work-group covers.
    var rowTile: Int { lm * wm }

    var options: [String] {
        tiled ? ["-DLM=\(lm)", "-DLN=\(ln)", "-DWM=\(wm)", "-DWN=\(wn)", "-DTK=\(tk)"]
            : ["-DTM=\(tm)", "-DVW=\(vw)", "-DNV=\(nv)"]
    }

    /// Bytes of local memory the tiled kernel declares: two buffers of TK x (BM + 1) and TK x BN.
    var localMemoryBytes: Int { tiled ? 2 * tk * (rowTile + 1 + columnTile) * 4 : 0 }
    var kernelName: String { tiled ? "gemm_tiled" : "gemm" }
    /// -D options for every program that writes or reads packed B panels.
    var panelOptions: [String] { ["-DBP=\(columnTile)"] }

    /// Floats of a packed [k, n] operand.
    func packedCount(k: Int, n: Int) -> Int { roundUp(n, columnTile) * k }

    /// Packs `value(k, n)` on the host into the panel layout.
    func packOnHost(k: Int, n: Int, _ value: (Int, Int) -> Float) -> Tensor {
        let bp = columnTile
        let t = Tensor(shape: [packedCount(k: k, n: n)], repeating: 0)
        let p = t.pointer
        for kk in 0..<k {
            for nn in 0..<n { p[((nn / bp) * k + kk) * bp + nn % bp] = value(kk, nn) }
        }
        return t
    }
}

/// What the tiled GEMM needs to read B as a convolution's column matrix straight from its NCHW
/// input (gemm.cl, IMPLICIT): the table of the K rows' offsets and the geometry of the columns.
struct ImplicitConvolution {
    /// Two ints a row k = (c * KH + ky) * KW + kx: the offset of (c, ky * DH, kx * DW) in an
    /// image, and ky * DH << 16 | kx * DW.
    var table: BufferRef
    /// C * H * W: the distance between two images of the input.
    var imageFloats: Int
    var h: Int, w: Int, ow: Int
    var strideH: Int, strideW: Int, padTop: Int, padLeft: Int
}

/// One (batched) GEMM: C = A · B + bias, then the activation.
struct GEMMCall {
    var m: Int, n: Int, k: Int
    var batch = 1
    var a: BufferRef, lda: Int, strideA = 0
    /// Packed in panels (GEMMSchedule.packOnHost / pack_b).
    var b: BufferRef, strideB = 0
    var c: BufferRef, ldc: Int, strideC = 0
    var bias: BufferRef? = nil
    var biasPerRow = false
    /// Added before the activation, read at C's offsets (a fused skip connection).
    var residual: BufferRef? = nil
    var activation: Activation? = nil
    /// When > 0, columns are (image, pixel) pairs of a convolution output with this many pixels
    /// per image, and images are `imageStride` floats apart in C.
    var convPixels = 0
    var imageStride = 0
}

extension Lowering {
    var gemmSchedule: GEMMSchedule { scheduleOverride ?? device.gemmSchedule }

    func gemm(_ call: GEMMCall, implicitConvolution conv: ImplicitConvolution? = nil) throws {
        let s = gemmSchedule
        var options = s.options + s.panelOptions + activationOptions(call.activation)
        options.append("-DBIAS=\(call.bias == nil ? 0 : call.biasPerRow ? 2 : 1)")
        options.append("-DOUT_MODE=\(call.convPixels > 0 ? 1 : 0)")
        options.append("-DRESIDUAL=\(call.residual == nil ? 0 : 1)")
        precondition(conv == nil || s.tiled, "the implicit convolution is a variant of the tiled GEMM")
        if conv != nil { options.append("-DIMPLICIT=1") }
        var args: [KernelArg] = [
            .int(call.m), .int(call.n), .int(call.k),
            .buffer(call.a), .int(call.lda), .long(call.strideA),
            .buffer(call.b), .long(call.strideB),
            .buffer(call.c), .int(call.ldc), .long(call.strideC),
            .buffer(try call.bias ?? dummy()), .int(max(call.convPixels, 1)), .long(call.imageStride),
            .buffer(try call.residual ?? dummy()),
        ]
        if s.tiled {
            let c = try conv ?? ImplicitConvolution(table: dummy(), imageFloats: 0, h: 0, w: 0, ow: 1, strideH: 0, strideW: 0, padTop: 0, padLeft: 0)
            args += [.buffer(c.table), .int(c.imageFloats), .int(c.h), .int(c.w), .int(c.ow),
                     .int(c.strideH), .int(c.strideW), .int(c.padTop), .int(c.padLeft)]
            try launch("gemm", s.kernelName, options: options, args: args,
                       global: [ceilDiv(call.n, s.columnTile) * s.ln, ceilDiv(call.m, s.rowTile) * s.lm, call.batch],
                       local: [s.ln, s.lm, 1])
        } else {
            try launch("gemm", s.kernelName, options: options, args: args,
                       global: [ceilDiv(call.m, s.tm), ceilDiv(call.n, s.columnTile), call.batch])
        }
    }

    /// Packs a runtime B operand ([K, N] at `ld`, or [N, K] when transposed) into scratch.
    func packB(_ src: BufferRef, k: Int, n: Int, ld: Int, transposed: Bool, batch: Int = 1, stride: Int = 0)
        throws -> (ref: BufferRef, stride: Int)
    {
        let s = gemmSchedule
        let count = s.packedCount(k: k, n: n)
        let dst = scratch(count * batch)
        try launch("gemm", "pack_b", options: s.options + s.panelOptions, args: [
            .int(k), .int(n), .int(transposed ? 1 : 0), .buffer(src), .int(ld), .long(stride),
            .buffer(dst), .int(roundUp(n, s.columnTile)), .long(count),
        ], global: [roundUp(n, s.columnTile), k, batch])
        return (dst, count)
    }

    /// A constant B operand packed on the host, from w [K, N] or, transposed, from w [N, K] as
    /// PyTorch's Linear stores it.
    func packConstantB(_ purpose: String, _ w: Tensor, k: Int, n: Int, transposed: Bool) throws -> BufferRef {
        let s = gemmSchedule
        return try packed(purpose + "/bp\(s.columnTile)") {
            let src = w.pointer
            return s.packOnHost(k: k, n: n) { kk, nn in transposed ? src[nn * k + kk] : src[kk * n + nn] }
        }
    }

    func lowerDense(_ act: Activation?) throws {
        let x = shape(0), w = shape(1)
        let k = w[1], n = w[0]
        let m = x.dropLast().reduce(1, *)
        let b: BufferRef
        if let wt = constants[1] {
            b = try packConstantB("weight", wt, k: k, n: n, transposed: true)
        } else {
            b = try packB(try input(1), k: k, n: n, ld: k, transposed: true).ref
        }
        try gemm(GEMMCall(
            m: m, n: n, k: k, a: try input(0), lda: k, b: b, c: output, ldc: n,
            bias: has(2) ? try input(2) : nil, biasPerRow: false, activation: act))
    }

    func lowerMatMul(transposeA: Bool, transposeB: Bool) throws {
        let a = shape(0), b = shape(1), out = outputShape
        let m = out[out.count - 2], n = out[out.count - 1]
        let k = transposeA ? a[a.count - 2] : a[a.count - 1]
        let outBatch = Array(out.dropLast(2))
        let batch = outBatch.reduce(1, *)
        // Each operand's batch either matches the output's or is a single matrix (stride 0);
        // mixed broadcasting (e.g. [2, 1] against [1, 3]) would need per-dimension strides.
        func batchStride(_ s: [Int], _ matrix: Int) throws -> Int {
            let bs = Array(s.dropLast(2))
            let count = bs.reduce(1, *)
            if count == 1 { return 0 }
            let padded = Array(repeating: 1, count: outBatch.count - bs.count) + bs
            guard padded == outBatch else {
                throw unsupported("batch dimensions \(bs) broadcast per dimension against \(outBatch)")
            }
            return matrix
        }
        let sa = try batchStride(a, m * k), sb = try batchStride(b, k * n)
        var aRef = try input(0)
        if transposeA {
            let count = sa == 0 ? 1 : batch
            let dst = scratch(m * k * count)
            try launch("gemm", "transpose_a", options: gemmSchedule.options + gemmSchedule.panelOptions, args: [
                .int(m), .int(k), .buffer(aRef), .int(m), .long(m * k), .buffer(dst), .long(m * k),
            ], global: [k, m, count])
            aRef = dst
        }
        let packedB: BufferRef, packedStride: Int
        if let bt = constants[1], sb == 0 {
            packedB = try packConstantB("b", bt, k: k, n: n, transposed: transposeB)
            packedStride = 0
        } else {
            let p = try packB(try input(1), k: k, n: n, ld: transposeB ? k : n, transposed: transposeB,
                              batch: sb == 0 ? 1 : batch, stride: k * n)
            packedB = p.ref
            packedStride = sb == 0 ? 0 : p.stride
        }
        try gemm(GEMMCall(
            m: m, n: n, k: k, batch: batch, a: aRef, lda: k, strideA: sa,
            b: packedB, strideB: packedStride, c: output, ldc: n, strideC: m * n))
    }
}
