// Per-op error bounds. An element passes when |actual - expected| <= atol + rtol * scale, where the
// scale comes with the float64 reference (the sum of |terms| of a dot product, |x| + |y| of an
// elementwise op; see Reference.swift). rtol is a multiple of float32's unit roundoff, eps = 2^-24.
// The comments give the worst error measured on both backends over 16 cases of every op (seed 11,
// `quarry test-ops --reference float64 --cases-per-op 16`, CPU and PoCL), in eps of the scale;
// each bound leaves 5-30 times that. A dropped operand or a wrong index is off by the operand's
// own size, orders of magnitude above any of them.

import Quarry

public struct ErrorBound: Sendable, Codable, Hashable {
    public var rtol: Double
    public var atol: Double
    public init(rtol: Double, atol: Double) { self.rtol = rtol; self.atol = atol }

    /// The same bound widened `factor` times (a comparison of two float32 results, each within
    /// the bound of the float64 reference, may differ by both errors).
    public func widened(_ factor: Double) -> ErrorBound { ErrorBound(rtol: rtol * factor, atol: atol * factor) }

    /// Float32's unit roundoff, 2^-24.
    public static let eps = 5.960464477539063e-08
    /// Results that are copies of input elements (layout ops, max, embedding).
    public static let exact = ErrorBound(rtol: 0, atol: 0)
}

extension ErrorBound {
    /// The bound of `op` at a reduced precision: ops built on products (convolutions, dense,
    /// matmul, attention, recurrent layers) round their operands to the format's mantissa before
    /// multiplying (each term off by twice its unit roundoff) and accumulate in fp32, so their
    /// rtol becomes 4 units of the format; every other op still computes in fp32. No backend
    /// offers these modes yet (every `supports` answers fp32 only; `test-ops --precision`
    /// refuses the others with the device's reason).
    public static func forOp(_ op: Op, precision: Precision) -> ErrorBound {
        let fp32 = forOp(op)
        let unit: Double
        switch precision {
        case .fp32: return fp32
        case .tf32, .fp16: unit = 0x1p-11
        case .bf16: unit = 0x1p-8
        }
        switch op {
        case .conv2d, .convTranspose2d, .dense, .matmul, .attention, .lstm, .gru:
            return ErrorBound(rtol: max(fp32.rtol, 4 * unit), atol: max(fp32.atol, unit * 1e-3))
        default:
            return fp32
        }
    }

    /// The bound of `op`'s results against the float64 reference, in float32 (the only precision
    /// the backends compute in today; a reduced-precision mode such as tf32 or bf16 would get its
    /// own, wider rows here, keyed by the mode).
    public static func forOp(_ op: Op) -> ErrorBound {
        switch op {
        case .conv2d:
            // Measured 2 eps. Winograd F(4x4, 3x3) on the CPU multiplies the rounding of its
            // transforms (entries up to 8) into the sum, hence more room than a direct sum needs.
            return ErrorBound(rtol: 64 * eps, atol: 1e-6)
        case .convTranspose2d, .dense, .matmul:
            // A dot product of K terms loses at most K eps of the sum of |terms|, typically
            // sqrt(K) eps (K stays under 600 in the cases); measured 3.3 eps.
            return ErrorBound(rtol: 32 * eps, atol: 1e-6)
        case .attention:
            // Two chained dot products with a softmax (exp with a few ulp) between them; the scale
            // carries the score magnitudes. Measured 1.5 eps.
            return ErrorBound(rtol: 32 * eps, atol: 1e-6)
        case .lstm, .gru:
            // The scale is the step's largest pre-activation magnitude times the step count.
            // Measured 1 eps.
            return ErrorBound(rtol: 16 * eps, atol: 1e-6)
        case .maxPool2d, .globalMaxPool:
            return .exact
        case .avgPool2d, .globalAvgPool:
            // Measured 2.2 eps.
            return ErrorBound(rtol: 16 * eps, atol: 0)
        case .batchNorm:
            // Measured 2.5 eps.
            return ErrorBound(rtol: 16 * eps, atol: 1e-7)
        case .layerNorm, .instanceNorm:
            // Mean and variance of up to a few thousand values, then rsqrt. Measured 3.8 eps.
            return ErrorBound(rtol: 32 * eps, atol: 1e-6)
        case .softmax, .logSoftmax:
            // Measured 4.8 eps (log_softmax).
            return ErrorBound(rtol: 48 * eps, atol: 1e-7)
        case .activation:
            // Transcendental functions within a few ulp (OpenCL's built-ins allow 3-4 ulp, the
            // CPU's polynomial approximations about as many), and erf / tanh / exp compositions
            // such as mish and gelu a few times that. Measured 2 eps (erf on the CPU).
            return ErrorBound(rtol: 24 * eps, atol: 1e-7)
        case .binary(let b, let act):
            switch (b, act) {
            case (.max, nil), (.min, nil): return .exact
            // 0 / 1 results; remainders are exact in floating point, and Python's remainder adds
            // the divisor once (one rounding, only for fractions).
            case (let b, nil) where b.isBoolean || b == .fmod: return .exact
            case (.mod, nil): return ErrorBound(rtol: 2 * eps, atol: 0)
            // pow is exp(y log x); its scale already carries y log x. Measured 1.6 eps.
            case (.pow, _): return ErrorBound(rtol: 32 * eps, atol: 1e-7)
            // The op then a fused activation: measured 11.5 eps (min then an activation).
            default: return ErrorBound(rtol: 64 * eps, atol: 1e-7)
            }
        case .reduce(let r, _, _):
            // Measured 2.6 eps.
            return r == .max ? .exact : ErrorBound(rtol: 16 * eps, atol: 1e-7)
        case .upsample(let mode, _, _, _):
            // Bilinear weights come from a source coordinate computed in float32, whose rounding
            // (eps times coordinates up to ~24) moves them: measured 9 eps on PoCL (seed 2024).
            return mode == .nearest ? .exact : ErrorBound(rtol: 64 * eps, atol: 1e-7)
        case .select, .embedding, .concat, .split, .slice, .pad, .reshape, .transpose, .flatten, .identity:
            return .exact
        case .argExtreme, .topK, .gather, .gatherElements, .gatherND:
            // Positions and copies of input elements.
            return .exact
        case .cumSum:
            // A running float32 sum of up to 9 terms: its error grows with the sum of |terms|
            // (the reference's scale), at most 9 eps of it.
            return ErrorBound(rtol: 32 * eps, atol: 1e-7)
        case .scatterND(let r):
            // none / max / min copy elements; add / mul round once per update landing on an
            // element (a few at most in the cases), relative to the |terms| scale.
            return r == .add || r == .mul ? ErrorBound(rtol: 16 * eps, atol: 1e-7) : .exact
        case .input, .constant, .expandDepthwiseProject:
            return .exact
        }
    }
}
