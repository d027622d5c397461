// Fused multi-head attention (Kernels/attention.cl): one launch, one work-group per block of
// queries of one head; the head widths are build constants.

import Foundation
import Quarry

extension Lowering {
    func lowerAttention(heads: Int, causal: Bool) throws {
        let q = shape(0), k = shape(1), v = shape(2)
        let d = q[2] / heads, dv = v[2] / heads
        // The per-query rows live in private memory and the key/value block in local memory.
        guard d <= 256, dv <= 256 else { throw unsupported("head width \(max(d, dv)) exceeds 256") }
        let bq = 16, bk = 32
        let hasMask = has(3)
        let options = ["-DD=\(d)", "-DDV=\(dv)", "-DBQ=\(bq)", "-DBK=\(bk)", "-DCAUSAL=\(causal ? 1 : 0)", "-DHAS_MASK=\(hasMask ? 1 : 0)"]
        try launch("attention", "attention", options: options, args: [
            .buffer(try input(0)), .buffer(try input(1)), .buffer(try input(2)),
            .buffer(hasMask ? try input(3) : try dummy()), .buffer(output),
            .int(q[1]), .int(k[1]), .int(heads), .float(1 / Float(d).squareRoot()),
        ], global: [roundUp(q[1], bq), heads, q[0]], local: [bq, 1, 1])
    }
}
