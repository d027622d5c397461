// LSTM and GRU (Kernels/lstm.cl): the input projections of all steps as one batched GEMM (batch
// index = direction), then one fused launch per step for both directions together.

import Quarry

extension Lowering {
    func lowerLSTM(_ a: RecurrentAttributes) throws { try lowerRecurrent(a, gates: 4) }
    func lowerGRU(_ a: RecurrentAttributes) throws { try lowerRecurrent(a, gates: 3) }

    private func lowerRecurrent(_ a: RecurrentAttributes, gates: Int) throws {
        let isLSTM = gates == 4
        let x = shape(0)
        let b = x[0], s = x[1], i = x[2], h = a.hiddenSize, d = a.direction.count
        let gh = gates * h
        // G[d][b * S + t][gates * H] = x · W[d]^T
        let gRef = scratch(d * b * s * gh)
        let schedule = gemmSchedule
        let per = schedule.packedCount(k: i, n: gh)
        let w: BufferRef
        if let wt = constants[1] {
            w = try packed("w/bp\(schedule.columnTile)") {
                let t = Tensor(shape: [d * per], repeating: 0)
                for dd in 0..<d {
                    let one = schedule.packOnHost(k: i, n: gh) { kk, nn in wt.pointer[(dd * gh + nn) * i + kk] }
                    (t.pointer + dd * per).update(from: one.pointer, count: per)
                }
                return t
            }
        } else {
            w = try packB(try input(1), k: i, n: gh, ld: i, transposed: true, batch: d, stride: gh * i).ref
        }
        try gemm(GEMMCall(
            m: b * s, n: gh, k: i, batch: d, a: try input(0), lda: i, strideA: 0,
            b: w, strideB: per, c: gRef, ldc: gh, strideC: b * s * gh))

        let stateCount = d * b * h
        let hOut = outputs[1]
        let other = scratch(stateCount)
        // Step t reads one h buffer and writes the other; the last step must write h_n.
        let first = s % 2 == 0 ? hOut : other
        let second = s % 2 == 0 ? other : hOut
        if has(4) {
            try launch("layout", "copy", args: [.buffer(try input(4)), .buffer(first), .long(stateCount)], global: [stateCount])
        } else {
            try launch("layout", "fill", args: [.buffer(first), .long(stateCount), .float(0)], global: [stateCount])
        }
        if isLSTM {
            if has(5) {
                try launch("layout", "copy", args: [.buffer(try input(5)), .buffer(outputs[2]), .long(stateCount)], global: [stateCount])
            } else {
                try launch("layout", "fill", args: [.buffer(outputs[2]), .long(stateCount), .float(0)], global: [stateCount])
            }
        }
        let bias: BufferRef = has(3) ? try input(3) : try dummy()
        let reverseOnly = a.direction == .reverse ? 1 : 0
        for step in 0..<s {
            let hp = step % 2 == 0 ? first : second, hn = step % 2 == 0 ? second : first
            if isLSTM {
                try launch("lstm", "lstm_step", args: [
                    .buffer(gRef), .buffer(try input(2)), .buffer(bias), .int(has(3) ? 1 : 0),
                    .buffer(hp), .buffer(hn), .buffer(outputs[2]), .buffer(output),
                    .int(step), .int(s), .int(b), .int(h), .int(d), .int(reverseOnly),
                ], global: [h, b, d])
            } else {
                try launch("lstm", "gru_step", args: [
                    .buffer(gRef), .buffer(try input(2)), .buffer(bias), .int(has(3) ? 1 : 0),
                    .buffer(hp), .buffer(hn), .buffer(output),
                    .int(step), .int(s), .int(b), .int(h), .int(d), .int(reverseOnly),
                ], global: [h, b, d])
            }
        }
    }
}
