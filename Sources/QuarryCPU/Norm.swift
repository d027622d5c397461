// Normalisations and softmax. Statistics are two-pass (mean, then the mean of squared deviations)
// in float with vector accumulators: one pass of E[x²] - E[x]² loses every digit when the mean is
// large against the spread, which happens in real activations.

import Foundation
import Quarry

extension CPUKernels {
    static func makeNorm(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0)
        let threads = ctx.threads
        let total = x.reduce(1, *)
        switch ctx.node.op {
        case .batchNorm(let eps):
            let c = x[1], inner = x.dropFirst(2).reduce(1, *), planes = x[0] * c
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                let scale = inputs[1]!, bias = inputs[2]!, mean = inputs[3]!, variance = inputs[4]!
                threads.parallelRanges(planes, minimumPerThread: max(1, 16384 / max(inner, 1))) { r in
                    for p in r {
                        let ch = p % c
                        let a = scale[ch] / (variance[ch] + eps).squareRoot()
                        affine(src + p * inner, dst + p * inner, inner, a, bias[ch] - mean[ch] * a)
                    }
                }
            }
        case .layerNorm(let eps, let nd):
            let d = x.suffix(nd).reduce(1, *), rows = total / max(d, 1)
            let hasGamma = ctx.hasInput(1), hasBeta = ctx.hasInput(2)
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                let gamma = hasGamma ? inputs[1] : nil, beta = hasBeta ? inputs[2] : nil
                threads.parallelRanges(rows, minimumPerThread: max(1, 16384 / max(d, 1))) { r in
                    for row in r {
                        let s = src + row * d, o = dst + row * d
                        let (mean, rstd) = moments(s, d, eps)
                        layerNormRow(s, o, d, mean, rstd, gamma, beta)
                    }
                }
            }
        case .instanceNorm(let eps):
            let c = x[1], inner = x.dropFirst(2).reduce(1, *), planes = x[0] * c
            let hasGamma = ctx.hasInput(1), hasBeta = ctx.hasInput(2)
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                let gamma = hasGamma ? inputs[1] : nil, beta = hasBeta ? inputs[2] : nil
                threads.parallelRanges(planes, minimumPerThread: max(1, 16384 / max(inner, 1))) { r in
                    for p in r {
                        let ch = p % c
                        let (mean, rstd) = moments(src + p * inner, inner, eps)
                        let a = rstd * (gamma?[ch] ?? 1)
                        affine(src + p * inner, dst + p * inner, inner, a, (beta?[ch] ?? 0) - mean * a)
                    }
                }
            }
        default: preconditionFailure()
        }
    }

    static func makeSoftmax(_ ctx: KernelContext) throws -> CPUKernel {
        let x = ctx.shape(0)
        let axisAttr: Int, isLog: Bool
        switch ctx.node.op {
        case .softmax(let a): axisAttr = a; isLog = false
        case .logSoftmax(let a): axisAttr = a; isLog = true
        default: preconditionFailure()
        }
        guard let axis = normalizeAxis(axisAttr, rank: x.count) else {
            throw QuarryError.shapeMismatch(node: ctx.node.name, message: "softmax axis \(axisAttr) out of range for \(x)")
        }
        let outer = x[..<axis].reduce(1, *), len = x[axis], inner = x[(axis + 1)...].reduce(1, *)
        let threads = ctx.threads
        if inner == 1 {
            return { inputs, outputs in
                let src = inputs[0]!, dst = outputs[0]
                threads.parallelRanges(outer, minimumPerThread: max(1, 8192 / max(len, 1))) { r in
                    for row in r { softmaxRow(src + row * len, dst + row * len, len, isLog: isLog) }
                }
            }
        }
        // Softmax across rows of `inner` contiguous values: vectorised over `inner`, in column
        // blocks so the running max and sum stay in cache.
        let block = 256
        let blocks = (inner + block - 1) / block
        return { inputs, outputs in
            let src = inputs[0]!, dst = outputs[0]
            threads.parallelRanges(outer * blocks, minimumPerThread: max(1, 4096 / max(len * block, 1))) { r in
                do {
                    let mx = UnsafeMutablePointer<Float>.allocate(capacity: 2 * block), sum = mx + block
                    defer { mx.deallocate() }
                    for task in r {
                        let o = task / blocks, b0 = (task % blocks) * block
                        let w = min(block, inner - b0)
                        let s = src + o * len * inner + b0, d = dst + o * len * inner + b0
                        mx.update(from: s, count: w)
                        for k in 1..<max(len, 1) {
                            combineMax(mx, s + k * inner, w)
                        }
                        sum.initialize(repeating: 0, count: w)
                        for k in 0..<len {
                            let sk = s + k * inner, dk = d + k * inner
                            var i = 0
                            while i + 16 <= w {
                                let e = vexp(load16(sk + i) - load16(mx + i))
                                store16(load16(sum + i) + e, sum + i)
                                if !isLog { store16(e, dk + i) }
                                i += 16
                            }
                            while i < w {
                                let e = Foundation.exp(sk[i] - mx[i])
                                sum[i] += e
                                if !isLog { dk[i] = e }
                                i += 1
                            }
                        }
                        if isLog {
                            // log-softmax = x - max - log(sum), computed from x so tiny probabilities keep their digits.
                            for i in 0..<w { mx[i] += Foundation.log(sum[i]) }
                            for k in 0..<len {
                                var i = 0
                                while i + 16 <= w { store16(load16(s + k * inner + i) - load16(mx + i), d + k * inner + i); i += 16 }
                                while i < w { d[k * inner + i] = s[k * inner + i] - mx[i]; i += 1 }
                            }
                        } else {
                            for i in 0..<w { sum[i] = 1 / sum[i] }
                            for k in 0..<len {
                                combineProduct(d + k * inner, sum, w)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = x * a + b over `n` floats.
@inline(__always)
func affine(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
    let va = V16(repeating: a), vb = V16(repeating: b)
    var i = 0
    while i + 32 <= n {
        store16(load16(s + i) * va + vb, d + i)
        store16(load16(s + i + 16) * va + vb, d + i + 16)
        i += 32
    }
    while i + 16 <= n { store16(load16(s + i) * va + vb, d + i); i += 16 }
    while i < n { d[i] = s[i] * a + b; i += 1 }
}

/// Mean and 1 / sqrt(variance + eps) of `n` floats, two-pass.
func moments(_ s: UnsafePointer<Float>, _ n: Int, _ eps: Float) -> (Float, Float) {
    let mean = sumOf(s, n) / Float(max(n, 1))
    let m = V16(repeating: mean)
    var a0 = V16(), a1 = V16()
    var i = 0
    while i + 32 <= n {
        let d0 = load16(s + i) - m, d1 = load16(s + i + 16) - m
        a0 += d0 * d0; a1 += d1 * d1
        i += 32
    }
    while i + 16 <= n { let d0 = load16(s + i) - m; a0 += d0 * d0; i += 16 }
    var ss = (a0 + a1).sum()
    while i < n { let d0 = s[i] - mean; ss += d0 * d0; i += 1 }
    return (mean, 1 / (ss / Float(max(n, 1)) + eps).squareRoot())
}

@inline(__always)
func layerNormRow(
    _ s: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ d: Int, _ mean: Float, _ rstd: Float,
    _ gamma: UnsafePointer<Float>?, _ beta: UnsafePointer<Float>?
) {
    let vm = V16(repeating: mean), vr = V16(repeating: rstd)
    var i = 0
    while i + 16 <= d {
        var y = (load16(s + i) - vm) * vr
        if let gamma { y *= load16(gamma + i) }
        if let beta { y += load16(beta + i) }
        store16(y, o + i)
        i += 16
    }
    while i < d {
        var y = (s[i] - mean) * rstd
        if let gamma { y *= gamma[i] }
        if let beta { y += beta[i] }
        o[i] = y
        i += 1
    }
}

/// Softmax (or log-softmax) of one contiguous row.
func softmaxRow(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int, isLog: Bool) {
    let mx = maxOf(s, n)
    let vm = V16(repeating: mx)
    var acc = V16()
    var i = 0
    while i + 16 <= n {
        let e = vexp(load16(s + i) - vm)
        acc += e
        if !isLog { store16(e, d + i) }
        i += 16
    }
    var sum = acc.sum()
    while i < n {
        let e = Foundation.exp(s[i] - mx)
        sum += e
        if !isLog { d[i] = e }
        i += 1
    }
    if isLog {
        let shift = mx + Foundation.log(sum)
        affine(s, d, n, 1, -shift)
    } else {
        let inv = 1 / sum
        affine(UnsafePointer(d), d, n, inv, 0)
    }
}
