// LSTM and GRU sequence layers.
//
// Gate order (PyTorch's; the ONNX importer permutes ONNX's to it):
//   LSTM  w[D,4H,I], r[D,4H,H] rows are i, f, g, o;  bias[D,8H] = [Wb_i Wb_f Wb_g Wb_o, Rb_i Rb_f Rb_g Rb_o]
//     i = σ(Wi x + Ri h + b_i)   f = σ(Wf x + Rf h + b_f)   g = tanh(Wg x + Rg h + b_g)
//     o = σ(Wo x + Ro h + b_o)   c' = f ⊙ c + i ⊙ g         h' = o ⊙ tanh(c')
//   GRU   w[D,3H,I], r[D,3H,H] rows are r, z, n;  bias[D,6H] = [Wb_r Wb_z Wb_n, Rb_r Rb_z Rb_n]
//     r = σ(Wr x + Rr h + b_r)   z = σ(Wz x + Rz h + b_z)
//     n = tanh(Wn x + Wb_n + r ⊙ (Rn h + Rb_n))     (linearBeforeReset, PyTorch / ONNX lbr=1)
//     n = tanh(Wn x + Wb_n + Rn (r ⊙ h) + Rb_n)     (otherwise, ONNX's default lbr=0)
//     h' = (1 - z) ⊙ n + z ⊙ h
// Directions: forward runs t = 0..<S, reverse t = S-1...0; bidirectional writes forward to
// y[..., 0..<H] and reverse to y[..., H..<2H]; h_n / c_n are indexed by direction.
//
// The input projection for every time step is one packed SGEMM ([B·S, I] x [I, G·H], GEMM.swift) before the
// recurrence. Weights are packed transposed with the gates interleaved per block of 16 hidden
// units ([i16 f16 g16 o16] per block), so one unit block's gates are 64 adjacent columns: the
// recurrent product for a block is followed at once by its gate nonlinearities and cell update
// while the gates are in L1, and threads can split a step by unit blocks.

import Foundation
import Quarry
import CQuarryKernels

/// Packed weights of one recurrent layer: per direction Wᵀ [I, C], Rᵀ [H, C] (in unit blocks), the input-side bias
/// [C] (with the recurrent bias folded in wherever it is a plain sum) and the recurrent-side bias
/// [C] (GRU with linearBeforeReset: Rb_n, applied inside r ⊙ (…)); C = gates · H rounded up to 16.
final class RecurrentWeights {
    let gates, hidden, input, paddedHidden, columns, perDirection, directions: Int
    let base: UnsafeMutablePointer<Float>

    init(gates: Int, hidden: Int, input: Int, directions: Int) {
        self.gates = gates; self.hidden = hidden; self.input = input; self.directions = directions
        paddedHidden = (hidden + 15) & ~15
        columns = gates * paddedHidden
        perDirection = (input + hidden + 2) * columns
        base = .allocate(capacity: max(perDirection * directions, 1))
        base.initialize(repeating: 0, count: max(perDirection * directions, 1))
    }
    deinit { base.deallocate() }

    func wt(_ d: Int) -> UnsafeMutablePointer<Float> { base + d * perDirection }
    func rt(_ d: Int) -> UnsafeMutablePointer<Float> { wt(d) + input * columns }
    func biasIn(_ d: Int) -> UnsafeMutablePointer<Float> { rt(d) + hidden * columns }
    func biasRec(_ d: Int) -> UnsafeMutablePointer<Float> { biasIn(d) + columns }

    /// Packed column of gate `g`, hidden unit `u`.
    @inline(__always) func column(_ g: Int, _ u: Int) -> Int { (u >> 4) * gates * 16 + g * 16 + (u & 15) }

    /// Wᵀ of each direction in the SGEMM's panel layout, for the input projection.
    private(set) var packedInput: [PackedMatrix] = []

    func pack(w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?, splitRecurrentN: Bool) {
        defer { packedInput = (0..<directions).map { PackedMatrix(b: wt($0), k: input, n: columns, ldb: columns) } }
        let h = hidden, gh = gates * h
        for d in 0..<directions {
            let wt = wt(d), rt = rt(d), bi = biasIn(d), br = biasRec(d)
            for g in 0..<gates {
                for u in 0..<h {
                    let col = column(g, u), row = g * h + u
                    let wr = w + (d * gh + row) * input
                    for i in 0..<input { wt[i * columns + col] = wr[i] }
                    let rr = r + (d * gh + row) * h
                    // Rᵀ is stored block by block, and each block's columns in panels of 32 (the
                    // last of a GRU block 16), each panel [k][32] contiguous: a step streams every
                    // panel as one run of memory, which the prefetcher follows (R is 4 MiB at
                    // H = 512, read from L3 every step), not 128 of every 256 bytes.
                    let gb = gates * 16, cb = col % gb, panel = cb / 32, width = min(32, gb - 32 * panel)
                    let panelBase = (col / gb) * h * gb + panel * 32 * h + cb % 32
                    for k in 0..<h { rt[panelBase + k * width] = rr[k] }
                    guard let bias else { continue }
                    let bw = bias[d * 2 * gh + row], bRec = bias[d * 2 * gh + gh + row]
                    if splitRecurrentN && g == 2 { bi[col] = bw; br[col] = bRec } else { bi[col] = bw + bRec }
                }
            }
        }
    }
}

/// out[r, c] = initial[r, c] + Σ_k a[r, k] · b[k, c] for c in `cols` (bounds multiples of 16, a
/// panel's columns all in or all out). b is a block of `width` columns in panels of 32 (the last
/// one 16 when `width` is not a multiple of 32), each panel's K x 32 floats contiguous.
/// `ldi` 0 broadcasts one initial row (a bias) to every row. Column panels are the outer loop so
/// a K x 32 panel of b (32 KiB for K = 256) stays in L1 across all row groups.
/// Runs in CQuarryKernels, in the instruction-set level chosen at run time (its register block per
/// level: 8 rows x 32 columns on AVX-512, 6 x 16 on AVX2; one row in four k phases at batch 1).
@inline(__always)
func multiplyAccumulate(
    _ a: UnsafePointer<Float>, lda: Int, rows: Int, k: Int,
    _ blockB: UnsafePointer<Float>, width: Int, cols: Range<Int>,
    initial: UnsafePointer<Float>, ldi: Int, _ out: UnsafeMutablePointer<Float>, ldo: Int
) {
    quarry_multiply_accumulate(a, lda, rows, k, blockB, width, cols.lowerBound, cols.upperBound, initial, ldi, out, ldo)
}

// The gate nonlinearities of one block of 16 units, out of line: inlined into the step closure
// (which holds every gate form), LLVM scalarised their compare-and-select masks lane by lane
// (vpmovm2d, vpextrd, sets): 15% of an LSTM run at batch 8.

/// GRU with the reset gate applied after the recurrent product: h' from the input projection,
/// the recurrent gates and h.
@inline(never)
func gruLinearBeforeReset(projection xp: UnsafePointer<Float>, gates gp: UnsafePointer<Float>,
                          h: UnsafePointer<Float>) -> V16 {
    let r = vsigmoid(load16(xp) + load16(gp)), z = vsigmoid(load16(xp + 16) + load16(gp + 16))
    let n = vtanh(load16(xp + 32) + r * load16(gp + 32))
    return (1 - z) * n + z * load16(h)
}

extension CPUKernels {
    static func makeLSTM(_ ctx: KernelContext) throws -> CPUKernel {
        try makeRecurrent(ctx, isLSTM: true)
    }

    static func makeGRU(_ ctx: KernelContext) throws -> CPUKernel {
        try makeRecurrent(ctx, isLSTM: false)
    }

    static func makeRecurrent(_ ctx: KernelContext, isLSTM: Bool) throws -> CPUKernel {
        let attrs: RecurrentAttributes
        switch ctx.node.op {
        case .lstm(let a), .gru(let a): attrs = a
        default: preconditionFailure()
        }
        let x = ctx.shape(0)
        let layer = RecurrentLayer(
            isLSTM: isLSTM, linearBeforeReset: attrs.linearBeforeReset, batch: x[0], steps: x[1],
            input: x[2], hidden: attrs.hiddenSize, directions: attrs.direction.count,
            reverseOnly: attrs.direction == .reverse,
            hasBias: ctx.hasInput(3), hasH0: ctx.hasInput(4), hasC0: isLSTM && ctx.hasInput(5))
        let threads = ctx.threads
        // Pack once when the weights are parameters; otherwise on every run.
        var packed: RecurrentWeights? = nil
        if let w = ctx.constants[1], let r = ctx.constants[2], !layer.hasBias || ctx.constants[3] != nil {
            packed = ctx.packCache.value(ctx.node.name) { () -> RecurrentWeights in
                let p = layer.makeWeights()
                p.pack(w: w.pointer, r: r.pointer, bias: ctx.constants[3]?.pointer, splitRecurrentN: layer.splitsRecurrentN)
                return p
            }
        }
        return { inputs, outputs in
            let weights: RecurrentWeights
            if let packed { weights = packed } else {
                weights = layer.makeWeights()
                weights.pack(w: inputs[1]!, r: inputs[2]!, bias: layer.hasBias ? inputs[3] : nil, splitRecurrentN: layer.splitsRecurrentN)
            }
            layer.run(weights, inputs, outputs, threads)
        }
    }
}

struct RecurrentLayer {
    let isLSTM, linearBeforeReset: Bool
    let batch, steps, input, hidden, directions: Int
    let reverseOnly, hasBias, hasH0, hasC0: Bool

    var gates: Int { isLSTM ? 4 : 3 }
    /// GRU with linearBeforeReset keeps Rb_n apart: it is multiplied by r.
    var splitsRecurrentN: Bool { !isLSTM && linearBeforeReset }

    func makeWeights() -> RecurrentWeights {
        RecurrentWeights(gates: gates, hidden: hidden, input: input, directions: directions)
    }

    func run(_ wts: RecurrentWeights, _ inputs: [UnsafePointer<Float>?], _ outputs: [UnsafeMutablePointer<Float>], _ threads: CPUThreads) {
        let c = wts.columns, rows = batch * steps
        // The projections and each direction's state in the thread's scratch: allocated per run,
        // the 2 MiB projection of a 256->512 LSTM at batch 4 was fresh pages, faulted in and
        // zeroed on every run.
        let stateCount = 3 * batch * wts.paddedHidden + batch * c
        ThreadBuffers.current.withScratch(directions * (rows * c + stateCount)) { proj in
            project(wts, proj, inputs, threads)
            let states = proj + directions * rows * c
            if directions == 2 && threads.count > 1 {
                threads.parallelFor(2) { d in
                    recur(d, wts, proj + d * rows * c, states + d * stateCount, inputs, outputs, CPUThreads(count: 1))
                }
            } else {
                for d in 0..<directions {
                    recur(d, wts, proj + d * rows * c, states + d * stateCount, inputs, outputs, threads)
                }
            }
        }
    }

    /// The input projection of every step, for every direction, into `proj`.
    private func project(_ wts: RecurrentWeights, _ proj: UnsafeMutablePointer<Float>, _ inputs: [UnsafePointer<Float>?],
                         _ threads: CPUThreads) {
        let c = wts.columns, rows = batch * steps
        let x = inputs[0]!
        // Input projection for every step: one SGEMM per direction, bias in its epilogue.
        for d in 0..<directions where rows > 0 {
            sgemm(m: rows, n: c, k: input, a: .matrix(x, ld: input, transposed: false), b: .packed(wts.packedInput[d]),
                  c: proj + d * rows * c, ldc: c, epilogue: GEMMEpilogue(bias: wts.biasIn(d), biasAxis: .columns),
                  threads: threads)
        }
    }

    /// The recurrence of direction `d` over all steps.
    func recur(
        _ d: Int, _ wts: RecurrentWeights, _ proj: UnsafeMutablePointer<Float>, _ state: UnsafeMutablePointer<Float>,
        _ inputs: [UnsafePointer<Float>?], _ outputs: [UnsafeMutablePointer<Float>], _ threads: CPUThreads
    ) {
        let hp = wts.paddedHidden, c = wts.columns, h = hidden, g = gates
        let blocks = hp / 16
        // State: h (two buffers), c or r ⊙ h, and the gates of one step.
        state.update(repeating: 0, count: 3 * batch * hp + batch * c)
        // h of step s is read from buffer s % 2 and written to the other.
        let hBuffers = (state, state + batch * hp)
        let cell = state + 2 * batch * hp, gatesBuf = state + 3 * batch * hp
        for b in 0..<batch {
            if hasH0 { (hBuffers.0 + b * hp).update(from: inputs[4]! + (d * batch + b) * h, count: h) }
            if hasC0 { (cell + b * hp).update(from: inputs[5]! + (d * batch + b) * h, count: h) }
        }
        let reverse = d == 1 || reverseOnly
        let y = outputs[0], yStride = directions * h
        let rt = UnsafePointer(wts.rt(d)), biasRec = UnsafePointer(wts.biasRec(d))
        // A step is split by unit blocks over a team of threads that stays together for all steps
        // (a barrier per step), when a step has enough work: with a dispatch per step, one thread
        // was faster at batch 1 on the 256->512 LSTM (2^20 MACs a step).
        let split = threads.count > 1 && blocks > 1 && batch * h * c >= 1 << 16
        let team = split ? threads : CPUThreads(count: 1)
        let resetFirst = !(isLSTM || linearBeforeReset)
        team.teamSteps(steps: steps, phases: resetFirst ? 2 : 1, chunks: blocks) { s, phase, blk in
            let t = reverse ? steps - 1 - s : s
            let hIn = UnsafePointer(s % 2 == 0 ? hBuffers.0 : hBuffers.1), hOut = s % 2 == 0 ? hBuffers.1 : hBuffers.0
            let projT = UnsafePointer(proj + t * c)  // row (b * steps + t): stride steps * c over b
            if !resetFirst {
                let gb = g * 16, cols = (blk * gb)..<((blk + 1) * gb), c0 = cols.lowerBound
                let rb = rt + blk * h * gb
                if isLSTM {
                    multiplyAccumulate(hIn, lda: hp, rows: batch, k: h, rb, width: gb, cols: 0..<gb,
                                       initial: projT + c0, ldi: steps * c, gatesBuf + c0, ldo: c)
                } else {
                    multiplyAccumulate(hIn, lda: hp, rows: batch, k: h, rb, width: gb, cols: 0..<gb,
                                       initial: biasRec + c0, ldi: 0, gatesBuf + c0, ldo: c)
                }
                for b in 0..<batch {
                    let gp = UnsafePointer(gatesBuf + b * c + cols.lowerBound)
                    let u = blk * 16
                    let hv: V16
                    if isLSTM {
                        // LSTM: c' = f ⊙ c + i ⊙ g stored over c, and h' = o ⊙ tanh(c'), in CQuarryKernels.
                        quarry_lstm_cell16(gp, cell + b * hp + u, hOut + b * hp + u)
                        hv = load16(hOut + b * hp + u)
                    } else {
                        hv = gruLinearBeforeReset(projection: projT + b * steps * c + cols.lowerBound, gates: gp,
                                                  h: hIn + b * hp + u)
                        store16(hv, hOut + b * hp + u)
                    }
                    let valid = min(16, h - u)
                    storePartial(hv, y + (b * steps + t) * yStride + d * h + u, valid)
                }
            } else if phase == 0 {
                // GRU, reset before the product: r and z for every unit first, then n from r ⊙ h.
                let rh = cell, c0 = blk * 48
                multiplyAccumulate(hIn, lda: hp, rows: batch, k: h, rt + blk * h * 48, width: 48, cols: 0..<32,
                                   initial: projT + c0, ldi: steps * c, gatesBuf + c0, ldo: c)
                for b in 0..<batch {
                    let gp = gatesBuf + b * c + c0, u = blk * 16
                    let r = vsigmoid(load16(gp))
                    store16(vsigmoid(load16(gp + 16)), gp + 16)
                    store16(r * load16(hIn + b * hp + u), rh + b * hp + u)
                }
            } else {
                let rh = cell, c0 = blk * 48
                multiplyAccumulate(UnsafePointer(rh), lda: hp, rows: batch, k: h, rt + blk * h * 48, width: 48,
                                   cols: 32..<48, initial: projT + c0, ldi: steps * c, gatesBuf + c0, ldo: c)
                for b in 0..<batch {
                    let gp = gatesBuf + b * c + c0, u = blk * 16
                    let z = load16(gp + 16), n = vtanh(load16(gp + 32))
                    let hv = (1 - z) * n + z * load16(hIn + b * hp + u)
                    store16(hv, hOut + b * hp + u)
                    storePartial(hv, y + (b * steps + t) * yStride + d * h + u, min(16, h - u))
                }
            }
        }
        let hPrev = steps % 2 == 0 ? hBuffers.0 : hBuffers.1
        for b in 0..<batch {
            (outputs[1] + (d * batch + b) * h).update(from: hPrev + b * hp, count: h)
            if isLSTM { (outputs[2] + (d * batch + b) * h).update(from: cell + b * hp, count: h) }
        }
    }
}
