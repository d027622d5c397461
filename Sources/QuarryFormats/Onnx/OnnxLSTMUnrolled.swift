// ONNX LSTM forms the lstm op does not take (peephole weights P, sequence_lens shorter than the
// sequence), unrolled over the time steps into dense, elementwise and layout ops, so they run on
// every backend. Per direction and step, in ONNX's gate order i, o, f, c:
//
//   g  = x_t·Wᵀ + Wb + Rb + h·Rᵀ
//   i  = σ(g_i + P_i ⊙ c)    f = σ(g_f + P_f ⊙ c)    c' = f ⊙ c + i ⊙ tanh(g_c)
//   o  = σ(g_o + P_o ⊙ c')   h' = o ⊙ tanh(c')
//
// A batch row past its sequence length keeps its state and outputs zeros: with the constant 0/1
// mask m_t (t < length), h ← m·h' + (1 − m)·h and y_t = m·h', exact since m is 0 or 1. The graph
// grows with the sequence length, so only these forms take this path.

import Foundation
import Quarry

extension OnnxImporter {
    static func lstmUnrolled(_ c: inout NodeContext, hidden: Int, direction: RecurrentDirection, layout: Int, lengths: [Int]?) throws {
        let x0 = try c.shape(0)
        let xSeq = layout == 0 ? try c.value(0) : try c.emitInternal(.transpose(perm: [1, 0, 2]), [try c.value(0)], "time_major").name
        let (steps, batch, width) = layout == 0 ? (x0[0], x0[1], x0[2]) : (x0[1], x0[0], x0[2])
        let dirs = direction.count, h4 = 4 * hidden
        guard try c.shape(1) == [dirs, h4, width], try c.shape(2) == [dirs, h4, hidden] else {
            throw QuarryError.invalidArgument("W \(try c.shape(1)) / R \(try c.shape(2)) do not fit \(dirs) direction(s), hidden \(hidden), input \(width)")
        }
        if c.hasInput(3), try c.shape(3) != [dirs, 8 * hidden] { throw QuarryError.invalidArgument("B \(try c.shape(3)) must be \([dirs, 8 * hidden])") }
        if c.hasInput(7), try c.shape(7) != [dirs, 3 * hidden] { throw QuarryError.invalidArgument("P \(try c.shape(7)) must be \([dirs, 3 * hidden])") }
        /// Rows [from, from + count) of input `i`'s direction `d`, as a matrix [count, cols].
        func part(_ i: Int, _ d: Int, from: Int, count: Int, _ tag: String) throws -> String {
            let s = try c.shape(i)
            let cols = s.count == 3 ? s[2] : 1
            let sl = try c.emitInternal(.slice(starts: [d, from], ends: [d + 1, from + count], axes: [0, 1], steps: [1, 1]), [try c.value(i)], tag)
            return try c.emitInternal(.reshape(shape: cols == 1 ? [count] : [count, cols]), [sl.name], tag + "_2d").name
        }
        func state(_ i: Int, _ d: Int, _ tag: String) throws -> String {
            if !c.hasInput(i) {
                return c.parameter(HostTensor(floats: [Float](repeating: 0, count: batch * hidden), shape: [batch, hidden]), key: "zeros:[\(batch), \(hidden)]")
            }
            let axis = layout == 0 ? 0 : 1
            let sl = try c.emitInternal(.slice(starts: [d], ends: [d + 1], axes: [axis], steps: [1]), [try c.value(i)], tag)
            return try c.emitInternal(.reshape(shape: [batch, hidden]), [sl.name], tag + "_2d").name
        }
        var ys: [String] = [], lastH: [String] = [], lastC: [String] = []
        for d in 0..<dirs {
            let reverse = direction == .reverse || (direction == .bidirectional && d == 1)
            let w = try part(1, d, from: 0, count: h4, "w\(d)"), r = try part(2, d, from: 0, count: h4, "r\(d)")
            var ins = [xSeq, w]
            if c.hasInput(3) {
                let wb = try part(3, d, from: 0, count: h4, "wb\(d)"), rb = try part(3, d, from: h4, count: h4, "rb\(d)")
                ins.append(try c.emitInternal(.binary(.add, activation: nil), [wb, rb], "bias\(d)").name)
            }
            // Every step's input projection at once: [S, B, 4H].
            let gx = try c.emitInternal(.dense(activation: nil), ins, "input_projection\(d)").name
            var peep: [String] = []
            if c.hasInput(7) { for k in 0..<3 { peep.append(try part(7, d, from: k * hidden, count: hidden, "p\(d)_\(k)")) } }
            var h = try state(5, d, "h0_\(d)"), cell = try state(6, d, "c0_\(d)")
            var outs = [String](repeating: "", count: steps)
            for t in (reverse ? Array((0..<steps).reversed()) : Array(0..<steps)) {
                let tag = "d\(d)t\(t)"
                let xt = try c.emitInternal(.slice(starts: [t], ends: [t + 1], axes: [0], steps: [1]), [gx], "\(tag)_x")
                let xt2 = try c.emitInternal(.reshape(shape: [batch, h4]), [xt.name], "\(tag)_x2")
                let hr = try c.emitInternal(.dense(activation: nil), [h, r], "\(tag)_hr")
                let g = try c.emitInternal(.binary(.add, activation: nil), [xt2.name, hr.name], "\(tag)_gates").name
                func gate(_ k: Int) throws -> String {
                    try c.emitInternal(.slice(starts: [k * hidden], ends: [(k + 1) * hidden], axes: [1], steps: [1]), [g], "\(tag)_g\(k)").name
                }
                func peephole(_ pre: String, _ k: Int, _ with: String) throws -> String {
                    guard !peep.isEmpty else { return pre }
                    let p = try c.emitInternal(.binary(.mul, activation: nil), [with, peep[k]], "\(tag)_peep\(k)")
                    return try c.emitInternal(.binary(.add, activation: nil), [pre, p.name], "\(tag)_pre\(k)").name
                }
                // P holds i, o, f.
                let i = try c.emitInternal(.activation(.sigmoid), [try peephole(try gate(0), 0, cell)], "\(tag)_i")
                let f = try c.emitInternal(.activation(.sigmoid), [try peephole(try gate(2), 2, cell)], "\(tag)_f")
                let ct = try c.emitInternal(.activation(.tanh), [try gate(3)], "\(tag)_c~")
                let fc = try c.emitInternal(.binary(.mul, activation: nil), [f.name, cell], "\(tag)_fc")
                let ic = try c.emitInternal(.binary(.mul, activation: nil), [i.name, ct.name], "\(tag)_ic")
                let c2 = try c.emitInternal(.binary(.add, activation: nil), [fc.name, ic.name], "\(tag)_c").name
                let o = try c.emitInternal(.activation(.sigmoid), [try peephole(try gate(1), 1, c2)], "\(tag)_o")
                let tc = try c.emitInternal(.activation(.tanh), [c2], "\(tag)_tanh_c")
                let h2 = try c.emitInternal(.binary(.mul, activation: nil), [o.name, tc.name], "\(tag)_h").name
                if let lengths, lengths.contains(where: { $0 <= t }) {
                    let mask = (0..<batch).map { Float(t < lengths[$0] ? 1 : 0) }
                    let m = c.parameter(HostTensor(floats: mask, shape: [batch, 1]), key: "lstm_mask:\(mask)")
                    let keep = c.parameter(HostTensor(floats: mask.map { 1 - $0 }, shape: [batch, 1]), key: "lstm_keep:\(mask)")
                    func blend(_ new: String, _ old: String, _ what: String) throws -> String {
                        let a = try c.emitInternal(.binary(.mul, activation: nil), [new, m], "\(tag)_\(what)_new")
                        let b = try c.emitInternal(.binary(.mul, activation: nil), [old, keep], "\(tag)_\(what)_old")
                        return try c.emitInternal(.binary(.add, activation: nil), [a.name, b.name], "\(tag)_\(what)_kept").name
                    }
                    outs[t] = try c.emitInternal(.binary(.mul, activation: nil), [h2, m], "\(tag)_y").name
                    h = try blend(h2, h, "h")
                    cell = try blend(c2, cell, "cell")
                } else {
                    outs[t] = h2
                    h = h2
                    cell = c2
                }
            }
            let ySteps = try outs.enumerated().map { t, y in try c.emitInternal(.reshape(shape: [1, 1, batch, hidden]), [y], "d\(d)t\(t)_y4").name }
            ys.append(steps == 1 ? ySteps[0] : try c.emitInternal(.concat(axis: 0), ySteps, "y\(d)").name)
            lastH.append(try c.emitInternal(.reshape(shape: [1, batch, hidden]), [h], "hn\(d)").name)
            lastC.append(try c.emitInternal(.reshape(shape: [1, batch, hidden]), [cell], "cn\(d)").name)
        }
        // ONNX Y: layout 0 [S, D, B, H]; layout 1 [B, S, D, H]. Y_h, Y_c: [D, B, H] / [B, D, H].
        if c.outputUsed(0) {
            let y = dirs == 1 ? ys[0] : try c.emitInternal(.concat(axis: 1), ys, "y").name
            if layout == 0 { try c.alias(y, output: 0) } else { try c.emit(.transpose(perm: [2, 0, 1, 3]), [y], output: 0) }
        }
        for (i, parts) in [(1, lastH), (2, lastC)] where c.outputUsed(i) {
            let s = dirs == 1 ? parts[0] : try c.emitInternal(.concat(axis: 0), parts, "state\(i)").name
            if layout == 0 { try c.alias(s, output: i) } else { try c.emit(.transpose(perm: [1, 0, 2]), [s], output: i) }
        }
    }
}
