// ONNX Attention (opsets 23–25), lowered onto Quarry's graph ops (matmul, softmax, elementwise,
// reduce, layout) so that it runs on every backend. It follows the operator's reference
// implementation (onnx/reference/ops/op_attention.py), which writes the node tests' outputs:
//
//   Q, K, V 3-D [B, S, H·D] (with q_num_heads / kv_num_heads) or 4-D [B, H, S, D]
//   K, V ← concat(past, K / V) along the sequence (the present_key / present_value outputs)
//   K, V heads repeated when q_num_heads is a multiple of kv_num_heads (GQA / MQA)
//   scores = scale · Q·Kᵀ, then softcap · tanh(scores / softcap)
//   bias   = attn_mask (bool: 0 or −inf; float: added; padded with −inf to the total length)
//          + causal frontier (j ≤ i + offset) + sliding window (opset 25) + nonpad_kv_seqlen padding
//   P = softmax(scores + bias), rows whose bias is −inf throughout set to zero; Y = P·V
//
// The float32 runtime has no select, so masking is arithmetic that stays exact: a 0/1 mask m
// becomes ((m − 1) · FLT_MAX) · 2, which is 0 or −inf with no 0 · inf; the softmax reads the bias
// clipped to −FLT_MAX (so a fully masked row gives no NaN); and the fully-masked-row guard is
// computed from the bias's row maximum r as clip(((r · 2⁻⁶⁴) · 2⁻⁶⁴ + 1) · 2³⁰, 0, 1), which is 0
// for r = −inf and 1 for any finite r (the two steps keep every factor a normal float).

import Foundation
import Quarry

extension OnnxImporter {
    static func attention(_ c: inout NodeContext) throws {
        let q = try c.shape(0), k = try c.shape(1), v = try c.shape(2)
        let rank = q.count
        guard rank == 3 || rank == 4, k.count == rank, v.count == rank else {
            throw QuarryError.invalidArgument("Q \(q), K \(k) and V \(v) must all be 3-D or all 4-D")
        }
        let qHeadsAttr = c.has("q_num_heads") ? c.int("q_num_heads", 0) : nil
        let kvHeadsAttr = c.has("kv_num_heads") ? c.int("kv_num_heads", 0) : nil
        let isCausal = c.int("is_causal", 0) != 0
        let softcap = c.float("softcap", 0)
        let mode = c.int("qk_matmul_output_mode", 0)
        let left = c.int("left_window_size", -1), right = c.int("right_window_size", -1)
        // softmax_precision asks for the softmax in a given float type; Quarry computes it in float32,
        // which is the requested precision or more.
        c.ignore("softmax_precision")
        guard (0...3).contains(mode) else { throw QuarryError.invalidArgument("qk_matmul_output_mode \(mode) must be 0, 1, 2 or 3") }
        guard left >= -1, right >= -1 else { throw QuarryError.invalidArgument("window sizes \(left), \(right) must be -1 or nonnegative") }
        guard c.hasInput(4) == c.hasInput(5) else { throw QuarryError.invalidArgument("past_key and past_value must be given together") }
        let hasPast = c.hasInput(4)
        let hasNonpad = c.hasInput(6)
        if hasNonpad && hasPast { throw QuarryError.invalidArgument("nonpad_kv_seqlen cannot be combined with past_key / past_value") }

        // Q, K, V as [B, H, S, D].
        let batch = q[0]
        var qHeads: Int, kvHeads: Int
        var q4 = try c.value(0), k4 = try c.value(1), v4 = try c.value(2)
        var qShape: [Int], kShape: [Int], vShape: [Int]
        if rank == 3 {
            guard let qh = qHeadsAttr, let kh = kvHeadsAttr, qh > 0, kh > 0 else {
                throw QuarryError.invalidArgument("3-D Q, K, V need positive q_num_heads and kv_num_heads")
            }
            guard q[2] % qh == 0, k[2] % kh == 0, v[2] % kh == 0 else {
                throw QuarryError.invalidArgument("hidden sizes Q \(q[2]), K \(k[2]), V \(v[2]) do not divide into \(qh) / \(kh) heads")
            }
            qHeads = qh; kvHeads = kh
            func heads(_ x: String, _ s: [Int], _ h: Int, _ tag: String) throws -> (String, [Int]) {
                let r = try c.emitInternal(.reshape(shape: [s[0], s[1], h, s[2] / h]), [x], "\(tag)_heads")
                let t = try c.emitInternal(.transpose(perm: [0, 2, 1, 3]), [r.name], "\(tag)_bhsd")
                return (t.name, t.shape)
            }
            (q4, qShape) = try heads(q4, q, qHeads, "q")
            (k4, kShape) = try heads(k4, k, kvHeads, "k")
            (v4, vShape) = try heads(v4, v, kvHeads, "v")
        } else {
            qHeads = q[1]; kvHeads = k[1]
            for (name, value, actual) in [("q_num_heads", qHeadsAttr, q[1]), ("kv_num_heads", kvHeadsAttr, k[1])] {
                if let value, value != actual {
                    throw QuarryError.invalidArgument("\(name) \(value) does not match the 4-D input's \(actual) heads")
                }
            }
            qShape = q; kShape = k; vShape = v
        }
        guard kShape[0] == batch, vShape[0] == batch, vShape[1] == kvHeads, kShape[2] == vShape[2], qShape[3] == kShape[3] else {
            throw QuarryError.invalidArgument("Q \(q), K \(k) and V \(v) do not fit together (batch, heads, key sequence, head size)")
        }
        guard kvHeads > 0, qHeads % kvHeads == 0 else {
            throw QuarryError.invalidArgument("q_num_heads \(qHeads) must be a multiple of kv_num_heads \(kvHeads)")
        }

        // The key / value cache.
        var past = 0
        if hasPast {
            let pk = try c.shape(4), pv = try c.shape(5)
            guard pk.count == 4, pv.count == 4, pk[0] == batch, pk[1] == kvHeads, pk[3] == kShape[3],
                  pv[0] == batch, pv[1] == kvHeads, pv[3] == vShape[3], pk[2] == pv[2] else {
                throw QuarryError.invalidArgument("past_key \(pk) / past_value \(pv) do not fit K \(kShape) / V \(vShape)")
            }
            past = pk[2]
            k4 = try c.emitInternal(.concat(axis: 2), [try c.value(4), k4], "present_key").name
            v4 = try c.emitInternal(.concat(axis: 2), [try c.value(5), v4], "present_value").name
        }
        if c.outputUsed(1) { try c.alias(k4, output: 1) }
        if c.outputUsed(2) { try c.alias(v4, output: 2) }
        let sq = qShape[2], total = kShape[2] + past, dv = vShape[3]

        // Grouped heads: query head h reads key / value head h / rep, as numpy.repeat(axis 1) does.
        var kx = k4, vx = v4
        let rep = qHeads / kvHeads
        if rep > 1 {
            let zeros = c.parameter(HostTensor(floats: [Float](repeating: 0, count: rep), shape: [1, 1, rep, 1, 1]), key: "zeros:[1, 1, \(rep), 1, 1]")
            func repeated(_ x: String, _ d: Int, _ tag: String) throws -> String {
                let r = try c.emitInternal(.reshape(shape: [batch, kvHeads, 1, total, d]), [x], "\(tag)_group")
                let e = try c.emitInternal(.binary(.add, activation: nil), [r.name, zeros], "\(tag)_repeat")
                return try c.emitInternal(.reshape(shape: [batch, qHeads, total, d]), [e.name], "\(tag)_heads_repeated").name
            }
            kx = try repeated(k4, kShape[3], "k")
            vx = try repeated(v4, dv, "v")
        }

        let scale = c.has("scale") ? c.float("scale", 1) : Float(1 / Double(qShape[3]).squareRoot())
        var scores = try c.emitInternal(.matmul(transposeA: false, transposeB: true), [q4, kx], "qk").name
        scores = try c.emitInternal(.binary(.mul, activation: nil), [scores, c.scalarParameter(scale)], "scaled").name
        if softcap > 0 {
            let d = try c.emitInternal(.binary(.mul, activation: nil), [scores, c.scalarParameter(1 / softcap)], "softcap_div")
            let t = try c.emitInternal(.activation(.tanh), [d.name], "softcap_tanh")
            scores = try c.emitInternal(.binary(.mul, activation: nil), [t.name, c.scalarParameter(softcap)], "softcapped").name
        }

        // The additive bias: run-time terms (masks, per-batch frontiers) and one constant [Sq, T].
        var terms: [String] = []
        let flt = Float.greatestFiniteMagnitude
        /// 0/1 (allowed) → 0/−inf, exactly.
        func toBias(_ allowed: String, _ tag: String) throws -> String {
            let a = try c.emitInternal(.binary(.sub, activation: nil), [allowed, c.scalarParameter(1)], "\(tag)_off")
            let b = try c.emitInternal(.binary(.mul, activation: nil), [a.name, c.scalarParameter(flt)], "\(tag)_big")
            return try c.emitInternal(.binary(.mul, activation: nil), [b.name, c.scalarParameter(2)], "\(tag)_bias").name
        }
        if c.hasInput(3) {
            let m = try c.shape(3)
            guard !m.isEmpty, m.count <= 4, let last = m.last, last <= total else {
                throw QuarryError.invalidArgument("attn_mask \(m) does not fit [\(batch), \(qHeads), \(sq), \(total)]")
            }
            let boolMask = try c.isInteger(3)
            var mask = try c.value(3)
            if last < total {
                // A shorter mask is padded to the total length with False / −inf.
                var pads = [Int](repeating: 0, count: 2 * m.count)
                pads[2 * m.count - 1] = total - last
                mask = try c.emitInternal(.pad(pads: pads, mode: .constant, value: boolMask ? 0 : -.infinity), [mask], "mask_padded").name
            }
            terms.append(boolMask ? try toBias(mask, "mask") : mask)
        }
        let windowed = left >= 0 || right >= 0
        if isCausal || windowed {
            if hasNonpad {
                // The frontier's offset is nonpad_kv_seqlen[b] − Sq, known at run time: with
                // d = i − j − Sq (a constant) and n = nonpad_kv_seqlen, the window keeps
                // j ≤ i + n − Sq + right, j ≥ i + n − Sq − left, causal keeps j ≤ i + n − Sq.
                let n = try c.emitInternal(.reshape(shape: [batch, 1, 1, 1]), [try c.value(6)], "nonpad_b")
                var d = [Float](repeating: 0, count: sq * total)
                for i in 0..<sq { for j in 0..<total { d[i * total + j] = Float(i - j - sq) } }
                let dp = c.parameter(HostTensor(floats: d, shape: [sq, total]), key: "attention_offsets:\(sq)x\(total)")
                let diff = try c.emitInternal(.binary(.add, activation: nil), [n.name, dp], "frontier")
                func keep(_ sign: Float, _ bound: Int, _ tag: String) throws {
                    // allowed ⇔ sign·diff + bound ≥ 0 ⇔ clip(sign·diff + bound + 1, 0, 1) = 1 (integers).
                    let s = try c.emitInternal(.binary(.mul, activation: nil), [diff.name, c.scalarParameter(sign)], "\(tag)_signed")
                    let a = try c.emitInternal(.binary(.add, activation: nil), [s.name, c.scalarParameter(Float(bound + 1))], "\(tag)_shift")
                    let allowed = try c.emitInternal(.activation(.clip(min: 0, max: 1)), [a.name], "\(tag)_allowed")
                    terms.append(try toBias(allowed.name, tag))
                }
                if isCausal { try keep(1, 0, "causal") }
                if left >= 0 { try keep(-1, left, "window_left") }
                if right >= 0 { try keep(1, right, "window_right") }
            } else {
                var b = [Float](repeating: 0, count: sq * total)
                for i in 0..<sq {
                    for j in 0..<total {
                        let diff = i + past - j
                        var ok = true
                        if isCausal && diff < 0 { ok = false }
                        if left >= 0 && diff > left { ok = false }
                        if right >= 0 && -diff > right { ok = false }
                        if !ok { b[i * total + j] = -.infinity }
                    }
                }
                terms.append(c.parameter(HostTensor(floats: b, shape: [sq, total]), key: "attention_frontier:\(sq)x\(total)+\(past),causal\(isCausal),window\(left),\(right)"))
            }
        }
        if hasNonpad {
            // Keys at or past nonpad_kv_seqlen[b] are padding: allowed ⇔ clip(n − j, 0, 1) = 1.
            let n = try c.emitInternal(.reshape(shape: [batch, 1, 1, 1]), [try c.value(6)], "nonpad_len")
            let negJ = c.parameter(HostTensor(floats: (0..<total).map { -Float($0) }, shape: [total]), key: "negative_iota:\(total)")
            let rem = try c.emitInternal(.binary(.add, activation: nil), [n.name, negJ], "nonpad_left")
            let allowed = try c.emitInternal(.activation(.clip(min: 0, max: 1)), [rem.name], "nonpad_allowed")
            terms.append(try toBias(allowed.name, "nonpad"))
        }
        var bias: String? = terms.first
        for (n, t) in terms.dropFirst().enumerated() {
            bias = try c.emitInternal(.binary(.add, activation: nil), [bias!, t], "bias\(n + 1)").name
        }

        var probs: String
        var withBias = scores
        if let bias {
            withBias = try c.emitInternal(.binary(.add, activation: nil), [scores, bias], "qk_bias").name
            let clipped = try c.emitInternal(.activation(.clip(min: -flt, max: .infinity)), [bias], "bias_finite")
            let logits = try c.emitInternal(.binary(.add, activation: nil), [scores, clipped.name], "logits")
            probs = try c.emitInternal(.softmax(axis: 3), [logits.name], "softmax").name
            // Rows whose bias is −inf throughout attend nothing: their probabilities are zero.
            let biasRank = c.importer.shapeOfValue(bias)?.count ?? 4
            let r = try c.emitInternal(.reduce(.max, axes: [biasRank - 1], keepDims: true), [bias], "row_max")
            let s1 = try c.emitInternal(.binary(.mul, activation: nil), [r.name, c.scalarParameter(0x1p-64)], "row_scaled")
            let s2 = try c.emitInternal(.binary(.mul, activation: nil), [s1.name, c.scalarParameter(0x1p-64)], "row_scaled2")
            let s3 = try c.emitInternal(.binary(.add, activation: nil), [s2.name, c.scalarParameter(1)], "row_shift")
            let s4 = try c.emitInternal(.binary(.mul, activation: nil), [s3.name, c.scalarParameter(0x1p30)], "row_steep")
            let any = try c.emitInternal(.activation(.clip(min: 0, max: 1)), [s4.name], "row_attends")
            probs = try c.emitInternal(.binary(.mul, activation: nil), [probs, any.name], "probs").name
        } else {
            probs = try c.emitInternal(.softmax(axis: 3), [scores], "softmax").name
        }
        if c.outputUsed(3) {
            switch mode {
            case 0, 1: try c.alias(scores, output: 3)
            case 2: try c.alias(withBias, output: 3)
            default: try c.alias(probs, output: 3)
            }
        }
        let y = try c.emitInternal(.matmul(transposeA: false, transposeB: false), [probs, vx], "pv")
        if rank == 4 {
            try c.alias(y.name, output: 0)
        } else {
            let t = try c.emitInternal(.transpose(perm: [0, 2, 1, 3]), [y.name], "y_bshd")
            try c.emit(.reshape(shape: [batch, sq, qHeads * dv]), [t.name])
        }
    }
}
