// Activations, applied in place. Conv / dense / add epilogues call `applyActivation` on the tile
// they have just written, while it is still in cache.

import Foundation
import Quarry

extension CPUKernels {
    static func makeActivation(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .activation(let act) = ctx.node.op else { preconditionFailure() }
        let n = ctx.outputShapes[0].reduce(1, *)
        let threads = ctx.threads
        return { inputs, outputs in
            let src = inputs[0]!, dst = outputs[0]
            threads.parallelRanges(n, minimumPerThread: 16384) { r in
                (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count)
                applyActivation(act, dst + r.lowerBound, count: r.count)
            }
        }
    }
}

/// Applies `act` in place to `count` floats.
public func applyActivation(_ act: Activation, _ p: UnsafeMutablePointer<Float>, count: Int) {
    switch act {
    case .relu: for i in 0..<count { p[i] = max(p[i], 0) }
    case .clip(let lo, let hi): for i in 0..<count { p[i] = min(max(p[i], lo), hi) }
    case .leakyRelu(let a): for i in 0..<count { p[i] = p[i] >= 0 ? p[i] : a * p[i] }
    case .sigmoid: for i in 0..<count { p[i] = 1 / (1 + Foundation.exp(-p[i])) }
    case .hardSigmoid(let a, let b): for i in 0..<count { p[i] = min(max(a * p[i] + b, 0), 1) }
    case .tanh: for i in 0..<count { p[i] = Foundation.tanh(p[i]) }
    case .silu: for i in 0..<count { p[i] = p[i] / (1 + Foundation.exp(-p[i])) }
    case .mish:
        for i in 0..<count {
            let x = p[i]
            let sp = x > 20 ? x : Foundation.log1p(Foundation.exp(x))
            p[i] = x * Foundation.tanh(sp)
        }
    case .gelu(let approximate):
        if approximate {
            let c: Float = 0.7978845608028654  // sqrt(2/pi)
            for i in 0..<count { let x = p[i]; p[i] = 0.5 * x * (1 + Foundation.tanh(c * (x + 0.044715 * x * x * x))) }
        } else {
            for i in 0..<count { let x = p[i]; p[i] = 0.5 * x * (1 + Foundation.erf(x * 0.7071067811865476)) }
        }
    case .hardSwish: for i in 0..<count { let x = p[i]; p[i] = x * min(max(x + 3, 0), 6) / 6 }
    case .sqrt: for i in 0..<count { p[i] = p[i].squareRoot() }
    case .exp: for i in 0..<count { p[i] = Foundation.exp(p[i]) }
    case .log: for i in 0..<count { p[i] = Foundation.log(p[i]) }
    case .neg: for i in 0..<count { p[i] = -p[i] }
    case .abs: for i in 0..<count { p[i] = Swift.abs(p[i]) }
    case .erf: for i in 0..<count { p[i] = Foundation.erf(p[i]) }
    case .reciprocal: for i in 0..<count { p[i] = 1 / p[i] }
    }
}
