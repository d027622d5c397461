// Activations, applied in place. Conv / dense / add epilogues call `applyActivation` on the tile
// they have just written, while it is still in cache.
//
// The transcendental functions are SIMD16 approximations rather than libm calls, because a libm
// call per element costs more than the conv that produced the element. Each is accurate to about
// 1e-6 relative (the tests compare them with Foundation's double-precision functions):
// - exp: Cody–Waite reduction by ln 2, a degree-6 polynomial on [-ln2/2, ln2/2], 2^n built in
//   the exponent bits (as two factors, so n = 128 near the top still fits). Below -87.3 it returns 0, above 88.72 +inf (as float exp does).
// - tanh: an odd polynomial for |x| < 0.625 (where 1 - 2/(e^2x + 1) would cancel), else the
//   exp form.
// - erfc (x >= 0): the Chebyshev-fitted form t·exp(-x² + P(t)), t = 1/(1 + x/2), whose fractional
//   error is below 1.2e-7 everywhere (Press et al., Numerical Recipes §6.2); erf takes its Taylor
//   series below 0.5 and 1 - erfc above, and exact gelu uses erfc on the negative side so that
//   1 + erf(x) does not cancel.
// `log` and `sqrt` stay scalar: rare as activations (log-softmax needs one log per row).

import CQuarryKernels
import Foundation
import Quarry

typealias V16 = SIMD16<Float>

extension CPUKernels {
    static func makeActivation(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .activation(let act) = ctx.node.op else { preconditionFailure() }
        let n = ctx.outputShapes[0].reduce(1, *)
        let threads = ctx.threads
        return { inputs, outputs in
            let src = inputs[0]!, dst = outputs[0]
            threads.parallelRanges(n, minimumPerThread: 16384) { r in
                // Work in L1-sized pieces so the copy and the activation share the cache.
                var lo = r.lowerBound
                while lo < r.upperBound {
                    let c = min(4096, r.upperBound - lo)
                    (dst + lo).update(from: src + lo, count: c)
                    applyActivation(act, dst + lo, count: c)
                    lo += c
                }
            }
        }
    }
}

/// Applies `act` in place to `count` floats.
/// The transcendental ones (sigmoid, tanh, silu, mish, gelu, exp) run in CQuarryKernels, in the
/// instruction-set level's vectors, with the formulas described at the top of this file; the
/// SIMD16 exp, sigmoid and tanh below serve the Swift kernels that fuse them (recurrent cells,
/// softmax, attention), and erf stays here.
public func applyActivation(_ act: Activation, _ p: UnsafeMutablePointer<Float>, count: Int) {
    switch act {
    case .relu: mapInPlace(p, count, Relu())
    case .clip(let lo, let hi): mapInPlace(p, count, Clip(lo: V16(repeating: lo), hi: V16(repeating: hi)))
    case .leakyRelu(let a): mapInPlace(p, count, LeakyRelu(alpha: a))
    case .sigmoid: quarry_activate(Int32(QUARRY_ACT_SIGMOID), p, count)
    case .hardSigmoid(let a, let b): mapInPlace(p, count, HardSigmoid(alpha: a, beta: b))
    case .tanh: quarry_activate(Int32(QUARRY_ACT_TANH), p, count)
    case .silu: quarry_activate(Int32(QUARRY_ACT_SILU), p, count)
    case .mish: quarry_activate(Int32(QUARRY_ACT_MISH), p, count)
    case .gelu(let approximate):
        quarry_activate(Int32(approximate ? QUARRY_ACT_GELU_TANH : QUARRY_ACT_GELU), p, count)
    case .hardSwish: mapInPlace(p, count, HardSwish())
    case .sqrt: for i in 0..<count { p[i] = p[i].squareRoot() }
    case .exp: quarry_activate(Int32(QUARRY_ACT_EXP), p, count)
    case .log: for i in 0..<count { p[i] = Foundation.log(p[i]) }
    case .neg: mapInPlace(p, count, Neg())
    case .abs: mapInPlace(p, count, Abs())
    case .erf: mapInPlace(p, count, Erf())
    case .reciprocal: mapInPlace(p, count, Reciprocal())
    // Rare in feature extractors (ONNX graphs use them for positions, masks and index maths), so
    // they call libm per element rather than carry SIMD approximations of their own.
    case .sin: for i in 0..<count { p[i] = Foundation.sin(p[i]) }
    case .cos: for i in 0..<count { p[i] = Foundation.cos(p[i]) }
    case .floor: mapInPlace(p, count, Rounding(rule: .down))
    case .ceil: mapInPlace(p, count, Rounding(rule: .up))
    case .round: mapInPlace(p, count, Rounding(rule: .toNearestOrEven))
    case .trunc: mapInPlace(p, count, Rounding(rule: .towardZero))
    case .softplus:
        for i in 0..<count { let x = p[i]; p[i] = Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x))) }
    // expm1, not exp - 1: for small negative x the difference cancels to a few bits.
    case .elu(let alpha):
        for i in 0..<count { let x = p[i]; p[i] = x > 0 ? x : alpha * Foundation.expm1(x) }
    case .selu(let alpha, let gamma):
        for i in 0..<count { let x = p[i]; p[i] = gamma * (x > 0 ? x : alpha * Foundation.expm1(x)) }
    case .not: mapInPlace(p, count, Not())
    case .sign: mapInPlace(p, count, Sign())
    }
}

/// One elementwise function on vectors. Activations are structs conforming to it rather than
/// closures, because generic specialisation inlines them into the loop reliably while a closure
/// argument is often left as a call per vector (SIMD16 then crosses the call in four xmm pieces).
protocol VectorFunction {
    func callAsFunction(_ x: V16) -> V16
}

struct Relu: VectorFunction { @inline(__always) func callAsFunction(_ x: V16) -> V16 { x.replacing(with: 0, where: x .< 0) } }
/// x limited to [lo, hi], the one clamp of the CPU kernels (activations, and the fused relu / relu6
/// of the GEMM, Winograd and depthwise epilogues). Compare-and-replace: it compiles to vmaxps /
/// vminps, while `clamped` or pointwiseMin / pointwiseMax compile to scalar IEEE-minimum loops
/// (3x slower GEMM with relu).
struct Clip: VectorFunction {
    let lo, hi: V16
    init(lo: V16, hi: V16) { self.lo = lo; self.hi = hi }
    init(_ c: FusedClamp) { lo = V16(repeating: c.lo); hi = V16(repeating: c.hi) }
    // Transparent: the epilogues call it inside large kernels, where @inline(__always) was left as
    // a call per vector.
    @_transparent func callAsFunction(_ x: V16) -> V16 { x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi) }
}
struct LeakyRelu: VectorFunction {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: V16) -> V16 { x.replacing(with: x * alpha, where: x .< 0) }
}
struct HardSigmoid: VectorFunction {
    let alpha, beta: Float
    @inline(__always) func callAsFunction(_ x: V16) -> V16 {
        let y = x * alpha + beta
        return y.replacing(with: 0, where: y .< 0).replacing(with: 1, where: y .> 1)
    }
}
struct HardSwish: VectorFunction {
    @inline(__always) func callAsFunction(_ x: V16) -> V16 {
        let t = x + 3
        return x * t.replacing(with: 0, where: t .< 0).replacing(with: 6, where: t .> 6) * (1 / 6 as Float)
    }
}
struct Neg: VectorFunction { @inline(__always) func callAsFunction(_ x: V16) -> V16 { -x } }
struct Abs: VectorFunction { @inline(__always) func callAsFunction(_ x: V16) -> V16 { x.replacing(with: -x, where: x .< 0) } }
struct Erf: VectorFunction { @inline(__always) func callAsFunction(_ x: V16) -> V16 { verf(x) } }
struct Rounding: VectorFunction {
    let rule: FloatingPointRoundingRule
    @inline(__always) func callAsFunction(_ x: V16) -> V16 { x.rounded(rule) }
}
struct Not: VectorFunction {
    @inline(__always) func callAsFunction(_ x: V16) -> V16 { V16(repeating: 0).replacing(with: 1, where: x .== 0) }
}
struct Sign: VectorFunction {
    @inline(__always) func callAsFunction(_ x: V16) -> V16 {
        V16(repeating: 0).replacing(with: 1, where: x .> 0).replacing(with: -1, where: x .< 0)
    }
}
struct Reciprocal: VectorFunction { @inline(__always) func callAsFunction(_ x: V16) -> V16 { 1 / x } }

/// Applies `f` to `count` floats in 16-wide pieces; the tail goes through a zero-padded vector.
@inline(__always)
func mapInPlace<F: VectorFunction>(_ p: UnsafeMutablePointer<Float>, _ count: Int, _ f: F) {
    let raw = UnsafeMutableRawPointer(p)
    var i = 0
    while i + 32 <= count {
        let a = raw.loadUnaligned(fromByteOffset: i * 4, as: V16.self)
        let b = raw.loadUnaligned(fromByteOffset: i * 4 + 64, as: V16.self)
        raw.storeBytes(of: f(a), toByteOffset: i * 4, as: V16.self)
        raw.storeBytes(of: f(b), toByteOffset: i * 4 + 64, as: V16.self)
        i += 32
    }
    while i + 16 <= count {
        raw.storeBytes(of: f(raw.loadUnaligned(fromByteOffset: i * 4, as: V16.self)), toByteOffset: i * 4, as: V16.self)
        i += 16
    }
    if i < count {
        let m = count - i
        var v = V16(repeating: 0)
        for j in 0..<m { v[j] = p[i + j] }
        let r = f(v)
        for j in 0..<m { p[i + j] = r[j] }
    }
}

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}

@inline(__always) func load16(_ p: UnsafeMutablePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}

@inline(__always) func store16(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}

/// Loads `n` < 16 floats, padding with `fill`.
@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float = 0) -> V16 {
    var v = V16(repeating: fill)
    for j in 0..<n { v[j] = p[j] }
    return v
}

/// Stores the first `n` <= 16 floats of `v` (all 16 as one vector store).
@inline(__always) func storePartial(_ v: V16, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 16 { store16(v, p); return }
    for j in 0..<n { p[j] = v[j] }
}

@_transparent
func vexp(_ x: V16) -> V16 {
    let magic = V16(repeating: 12582912)  // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.replacing(with: -87.33654, where: x .< -87.33654).replacing(with: 88.72283, where: x .> 88.72283)
    let t = xc * 1.442695041 + magic
    let n = t - magic
    // ln 2 split so that n * ln2Hi is exact.
    let r = xc - n * 0.693359375 + n * 2.12194440e-4
    var p = V16(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * (r * r) + r + 1
    // 2^n as 2^(n/2) * 2^(n - n/2): n reaches 128 near the overflow threshold, past the exponent range.
    let ni = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let n1 = ni &>> 1, n2 = ni &- n1
    let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: V16.self)
    let s2 = unsafeBitCast((n2 &+ 127) &<< 23, to: V16.self)
    var y = p * s1 * s2
    y = y.replacing(with: 0, where: x .< -87.33654)
    y = y.replacing(with: .infinity, where: x .> 88.72283)
    return y.replacing(with: x, where: x .!= x)
}

@_transparent func vsigmoid(_ x: V16) -> V16 { 1 / (1 + vexp(-x)) }

@_transparent
func vtanh(_ x: V16) -> V16 {
    let z = x * x
    var s = V16(repeating: -5.70498872745e-3)
    s = s * z + 2.06390887954e-2
    s = s * z - 5.37397155531e-2
    s = s * z + 1.33314422036e-1
    s = s * z - 3.33332819422e-1
    let small = s * z * x + x
    let ax = x.replacing(with: -x, where: x .< 0)
    // e^{2|x|} overflows to inf for large |x|, which gives exactly 1.
    let big = 1 - 2 / (vexp(2 * ax) + 1)
    let signed = big.replacing(with: -big, where: x .< 0)
    return signed.replacing(with: small, where: ax .< 0.625)
}

/// erfc for x >= 0.
@_transparent
func verfcPositive(_ x: V16) -> V16 {
    let t = 1 / (1 + 0.5 * x)
    var p = V16(repeating: 0.17087277)
    p = p * t - 0.82215223
    p = p * t + 1.48851587
    p = p * t - 1.13520398
    p = p * t + 0.27886807
    p = p * t - 0.18628806
    p = p * t + 0.09678418
    p = p * t + 0.37409196
    p = p * t + 1.00002368
    p = p * t - 1.26551223
    return t * vexp(p - x * x)
}

/// erf by its Taylor series, accurate for |x| < 0.5:
/// 2/sqrt(pi) * (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320).
@_transparent
func verfSeries(_ x: V16) -> V16 {
    let z = x * x
    var s = V16(repeating: -1 / 1320 as Float)
    s = s * z + (1 / 216 as Float)
    s = s * z - (1 / 42 as Float)
    s = s * z + (1 / 10 as Float)
    s = s * z - (1 / 3 as Float)
    s = s * z + 1
    return s * x * 1.1283791670955126
}

@_transparent
func verf(_ x: V16) -> V16 {
    let ax = x.replacing(with: -x, where: x .< 0)
    let tail = 1 - verfcPositive(ax)
    let big = tail.replacing(with: -tail, where: x .< 0)
    return big.replacing(with: verfSeries(x), where: ax .< 0.5)
}

