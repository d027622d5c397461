// Multi-head scaled dot-product attention with an online softmax (the FlashAttention recurrence):
// each task owns one (batch, head, range of 32-query blocks) and walks the keys in blocks of 64,
// keeping per query a running maximum m, a running denominator l and an unnormalised output row,
// so no Sq x Sk score matrix exists beyond one block (32 x 64 floats).
//
// A task packs its head's K once, transposed (Kᵀ[d, j]), so that the scores of 4 queries x 32 keys
// are eight vector accumulators updated with broadcast query elements (no horizontal sums); then
// P = exp(S - m_new) with the vector exp, the old accumulators are rescaled by exp(m_old - m_new),
// and P·V is added with the same register blocking over the value width.
//
// Masking: the key padding mask holds 1 to attend and 0 for padding; `causal` lets query i see
// keys j <= i (top-left aligned, as PyTorch's is_causal, also when Sq != Sk). A query that sees
// no key at all (every key padded) gets a zero output row rather than the NaN of 0/0.

import Foundation
import Quarry

extension CPUKernels {
    static func makeAttention(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .attention(let heads, let causal) = ctx.node.op else { preconditionFailure() }
        let q = ctx.shape(0), k = ctx.shape(1), v = ctx.shape(2)
        var geometry = AttentionGeometry(
            batch: q[0], sq: q[1], sk: k[1], heads: heads, dq: q[2] / heads, dv: v[2] / heads,
            causal: causal, hasMask: ctx.hasInput(3))
        let threads = ctx.threads
        // K is packed once per task, so tasks hold as many query blocks as still leave about
        // four tasks per thread.
        let chunks = min(geometry.queryBlocks, max(1, (4 * threads.count + q[0] * heads - 1) / max(q[0] * heads, 1)))
        geometry.chunks = chunks
        let tasks = q[0] * heads * chunks
        return { inputs, outputs in
            let qp = inputs[0]!, kp = inputs[1]!, vp = inputs[2]!, mask = inputs.count > 3 ? inputs[3] : nil
            let out = outputs[0]
            // Contiguous task ranges, each with its thread's scratch (not the stack: probing it
            // for a temporary allocation this size costs more than a heap buffer; not a fresh
            // heap buffer per run: past 128 KiB, at long sequences, those are fresh pages).
            threads.parallelRanges(tasks) { r in
                ThreadBuffers.current.withScratch(geometry.scratchCount) { scratch in
                    for task in r { geometry.run(task: task, qp, kp, vp, geometry.hasMask ? mask : nil, out, scratch: scratch) }
                }
            }
        }
    }
}

struct AttentionGeometry {
    static let queryBlock = 32, keyBlock = 64
    let batch, sq, sk, heads, dq, dv: Int
    let causal, hasMask: Bool
    /// Tasks per (batch, head), each a contiguous range of query blocks.
    var chunks = 1
    var queryBlocks: Int { (sq + Self.queryBlock - 1) / Self.queryBlock }
    /// Keys rounded up to whole vectors: the row length of the packed Kᵀ.
    var paddedKeys: Int { (sk + 15) & ~15 }
    var scratchCount: Int { Self.queryBlock * dq + dq * paddedKeys + Self.queryBlock * Self.keyBlock + Self.queryBlock * dv + 2 * Self.queryBlock }

    func run(
        task: Int, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
        _ mask: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let bq = Self.queryBlock, bk = Self.keyBlock
        let chunk = task % chunks, h = (task / chunks) % heads, b = task / (chunks * heads)
        let qb0 = chunk * queryBlocks / chunks, qb1 = (chunk + 1) * queryBlocks / chunks
        let qStride = heads * dq, vStride = heads * dv
        let scale = 1 / Float(dq).squareRoot()
        let skp = paddedKeys
        let qs = scratch, kt = qs + bq * dq, s = kt + dq * skp, acc = s + bq * bk
        let m = acc + bq * dv, l = m + bq
        // Kᵀ [dq, skp] for the keys this task's queries can see; padded columns are zero (and
        // masked below).
        let keysUsed = causal ? min(sk, qb1 * bq) : sk
        let keysPacked = (keysUsed + 15) & ~15
        for j in 0..<keysPacked {
            if j < keysUsed {
                let row: Int = (b &* sk &+ j) &* qStride
                let src = k + (row &+ h &* dq)
                var dst = kt + j
                for d in 0..<dq { dst.pointee = src[d]; dst += skp }
            } else {
                for d in 0..<dq { kt[d * skp + j] = 0 }
            }
        }
        for qb in qb0..<qb1 {
            let q0 = qb * bq, nq = min(bq, sq - q0)
            for i in 0..<bq {
                // Rows past nq duplicate row 0 so the 4-row tiles never read garbage.
                let src = q + (b * sq + q0 + (i < nq ? i : 0)) * qStride + h * dq
                for d in 0..<dq { qs[i &* dq &+ d] = src[d] * scale }
                m[i] = -.infinity; l[i] = 0
            }
            acc.initialize(repeating: 0, count: bq * dv)
            let keyEnd = causal ? min(sk, q0 + nq) : sk
            var k0 = 0
            while k0 < keyEnd {
                let nk = min(bk, keyEnd - k0), nkp = (nk + 15) & ~15
                scores(qs, kt + k0, ldk: skp, s, nkp: nkp)
                let needsMask = nk < nkp || hasMask || (causal && k0 + nk - 1 > q0)
                for i in 0..<nq {
                    let row = s + i * bk
                    if needsMask {
                        for j in 0..<nkp {
                            let key = k0 + j
                            if j >= nk || (causal && key > q0 + i) || (mask.map { $0[b * sk + key] == 0 } ?? false) {
                                row[j] = -.infinity
                            }
                        }
                    }
                    let newM = Swift.max(m[i], maxOf(row, nkp))
                    if newM == -.infinity {
                        row.initialize(repeating: 0, count: nkp)
                        continue
                    }
                    let corr = m[i] == -.infinity ? 0 : Foundation.exp(m[i] - newM)
                    let vm = V16(repeating: newM)
                    var sum = V16()
                    var j = 0
                    while j < nkp {
                        let p = vexp(load16(row + j) - vm)
                        sum += p
                        store16(p, row + j)
                        j += 16
                    }
                    l[i] = l[i] * corr + sum.sum()
                    m[i] = newM
                    if corr != 1 { affine(UnsafePointer(acc + i * dv), acc + i * dv, dv, corr, 0) }
                }
                accumulatePV(s, v + (b * sk + k0) * vStride + h * dv, vStride, acc, nq: nq, nk: nk)
                k0 += nk
            }
            for i in 0..<nq {
                let dst = out + (b * sq + q0 + i) * vStride + h * dv
                let inv: Float = l[i] > 0 ? 1 / l[i] : 0
                affine(UnsafePointer(acc + i * dv), dst, dv, inv, 0)
            }
        }
    }

    /// s[i, j] = Σ_d qs[i, d] · kt[d, j] for all 32 rows and nkp (a multiple of 16) keys.
    @inline(__always)
    func scores(_ qs: UnsafeMutablePointer<Float>, _ kt: UnsafeMutablePointer<Float>, ldk: Int, _ s: UnsafeMutablePointer<Float>, nkp: Int) {
        let bk = Self.keyBlock
        var i = 0
        while i < Self.queryBlock {
            let r0 = qs + i * dq, r1 = r0 + dq, r2 = r1 + dq, r3 = r2 + dq
            var j = 0
            while j + 32 <= nkp {
                var a0 = V16(), a1 = V16(), a2 = V16(), a3 = V16()
                var b0 = V16(), b1 = V16(), b2 = V16(), b3 = V16()
                for d in 0..<dq {
                    let x = load16(kt + d * ldk + j), y = load16(kt + d * ldk + j + 16)
                    a0 = a0.addingProductFast(r0[d], x); b0 = b0.addingProductFast(r0[d], y)
                    a1 = a1.addingProductFast(r1[d], x); b1 = b1.addingProductFast(r1[d], y)
                    a2 = a2.addingProductFast(r2[d], x); b2 = b2.addingProductFast(r2[d], y)
                    a3 = a3.addingProductFast(r3[d], x); b3 = b3.addingProductFast(r3[d], y)
                }
                store16(a0, s + i * bk + j); store16(b0, s + i * bk + j + 16)
                store16(a1, s + (i + 1) * bk + j); store16(b1, s + (i + 1) * bk + j + 16)
                store16(a2, s + (i + 2) * bk + j); store16(b2, s + (i + 2) * bk + j + 16)
                store16(a3, s + (i + 3) * bk + j); store16(b3, s + (i + 3) * bk + j + 16)
                j += 32
            }
            if j < nkp {
                var a0 = V16(), a1 = V16(), a2 = V16(), a3 = V16()
                for d in 0..<dq {
                    let x = load16(kt + d * ldk + j)
                    a0 = a0.addingProductFast(r0[d], x); a1 = a1.addingProductFast(r1[d], x)
                    a2 = a2.addingProductFast(r2[d], x); a3 = a3.addingProductFast(r3[d], x)
                }
                store16(a0, s + i * bk + j); store16(a1, s + (i + 1) * bk + j)
                store16(a2, s + (i + 2) * bk + j); store16(a3, s + (i + 3) * bk + j)
            }
            i += 4
        }
    }

    /// acc[i, :] += Σ_j p[i, j] · v[j, :] for the first nq rows.
    @inline(__always)
    func accumulatePV(
        _ p: UnsafeMutablePointer<Float>, _ v: UnsafePointer<Float>, _ vStride: Int,
        _ acc: UnsafeMutablePointer<Float>, nq: Int, nk: Int
    ) {
        let bk = Self.keyBlock
        var i = 0
        while i < nq {
            // Rows past nq read row i's probabilities and are not stored.
            let rows = Swift.min(4, nq - i)
            let p0 = p + i * bk, p1 = rows > 1 ? p0 + bk : p0, p2 = rows > 2 ? p0 + 2 * bk : p0, p3 = rows > 3 ? p0 + 3 * bk : p0
            var c = 0
            while c + 32 <= dv {
                let o0 = acc + i * dv + c
                var a0 = load16(o0), b0 = load16(o0 + 16)
                var a1 = rows > 1 ? load16(o0 + dv) : V16(), b1 = rows > 1 ? load16(o0 + dv + 16) : V16()
                var a2 = rows > 2 ? load16(o0 + 2 * dv) : V16(), b2 = rows > 2 ? load16(o0 + 2 * dv + 16) : V16()
                var a3 = rows > 3 ? load16(o0 + 3 * dv) : V16(), b3 = rows > 3 ? load16(o0 + 3 * dv + 16) : V16()
                for j in 0..<nk {
                    let vr = v + j * vStride + c
                    let x = load16(vr), y = load16(vr + 16)
                    a0 = a0.addingProductFast(p0[j], x); b0 = b0.addingProductFast(p0[j], y)
                    a1 = a1.addingProductFast(p1[j], x); b1 = b1.addingProductFast(p1[j], y)
                    a2 = a2.addingProductFast(p2[j], x); b2 = b2.addingProductFast(p2[j], y)
                    a3 = a3.addingProductFast(p3[j], x); b3 = b3.addingProductFast(p3[j], y)
                }
                store16(a0, o0); store16(b0, o0 + 16)
                if rows > 1 { store16(a1, o0 + dv); store16(b1, o0 + dv + 16) }
                if rows > 2 { store16(a2, o0 + 2 * dv); store16(b2, o0 + 2 * dv + 16) }
                if rows > 3 { store16(a3, o0 + 3 * dv); store16(b3, o0 + 3 * dv + 16) }
                c += 32
            }
            while c + 16 <= dv {
                let o0 = acc + i * dv + c
                var a0 = load16(o0)
                var a1 = rows > 1 ? load16(o0 + dv) : V16()
                var a2 = rows > 2 ? load16(o0 + 2 * dv) : V16()
                var a3 = rows > 3 ? load16(o0 + 3 * dv) : V16()
                for j in 0..<nk {
                    let x = load16(v + j * vStride + c)
                    a0 = a0.addingProductFast(p0[j], x); a1 = a1.addingProductFast(p1[j], x)
                    a2 = a2.addingProductFast(p2[j], x); a3 = a3.addingProductFast(p3[j], x)
                }
                store16(a0, o0)
                if rows > 1 { store16(a1, o0 + dv) }
                if rows > 2 { store16(a2, o0 + 2 * dv) }
                if rows > 3 { store16(a3, o0 + 3 * dv) }
                c += 16
            }
            if c < dv {
                for r in 0..<rows {
                    let pr = p + (i + r) * bk, o = acc + (i + r) * dv
                    for j in 0..<nk {
                        let vr = v + j * vStride, pj = pr[j]
                        for cc in c..<dv { o[cc] += pj * vr[cc] }
                    }
                }
            }
            i += 4
        }
    }
}
