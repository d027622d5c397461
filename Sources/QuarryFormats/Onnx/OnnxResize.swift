// ONNX Resize (and Upsample) in every form, as one linear map per resized axis. Interpolation is
// separable and, once the sizes are known at import, each axis's map is a constant matrix
// A [out, in] (every mode: nearest with each rounding, linear, cubic, antialias, exclude_outside,
// all coordinate transformations, tf_crop_and_resize's roi). The axis is moved last, multiplied by
// A with the dense op, and moved back; positions that tf_crop_and_resize extrapolates get a zero
// row and the extrapolation value as the dense op's bias. The matrices follow onnx's reference
// implementation (onnx/reference/ops/op_resize.py, `_interpolate_1d_along_axis`) step by step.

import Foundation
import Quarry

extension OnnxImporter {
    static func resizeByMatrices(_ c: inout NodeContext, upsample: Bool) throws {
        let x = try c.shape(0)
        let r = x.count
        guard r >= 1 else { throw QuarryError.invalidArgument("cannot resize a scalar") }
        let mode = c.string("mode", "nearest")
        let ctm = upsample ? "asymmetric" : c.string("coordinate_transformation_mode", c.opset >= 11 ? "half_pixel" : "asymmetric")
        let nearestMode = upsample ? "floor" : c.string("nearest_mode", c.opset >= 11 ? "round_prefer_floor" : "floor")
        let cubicA = Double(c.float("cubic_coeff_a", -0.75))
        let exclude = c.int("exclude_outside", 0) != 0
        let extrapolation = c.float("extrapolation_value", 0)
        let antialias = !upsample && c.int("antialias", 0) != 0
        let policy = upsample ? "stretch" : c.string("keep_aspect_ratio_policy", "stretch")
        guard ["stretch", "not_larger", "not_smaller"].contains(policy) else { throw QuarryError.invalidArgument("keep_aspect_ratio_policy '\(policy)'") }
        guard ["nearest", "linear", "bilinear", "cubic"].contains(mode) else { throw c.unsupported("resize mode '\(mode)'") }
        guard ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize"].contains(ctm) else {
            throw c.unsupported("coordinate_transformation_mode '\(ctm)'")
        }
        guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearestMode) else { throw c.unsupported("nearest_mode '\(nearestMode)'") }
        if mode == "nearest" && antialias { throw QuarryError.invalidArgument("antialias applies to linear and cubic modes only") }
        var axes = Array(0..<r)
        if !upsample, let a = c.ints("axes") { axes = try a.map { try c.normAxis($0, rank: r) } }
        guard Set(axes).count == axes.count else { throw QuarryError.invalidArgument("repeated axes \(axes)") }

        var scales: [Double]? = nil, sizes: [Int]? = nil, roi: [Double]? = nil
        if upsample {
            if let s = c.attributes["scales"] { c.ignore("scales"); scales = s.floats.map(Double.init) } else { scales = try c.requireConstant(1, "scales").doubles }
        } else {
            let scalesInput = c.opset >= 11 ? 2 : 1
            if c.opset >= 11, c.hasInput(1) { let t = try c.requireConstant(1, "roi"); if t.count > 0 { roi = t.doubles } }
            if c.hasInput(scalesInput) { let t = try c.requireConstant(scalesInput, "scales"); if t.count > 0 { scales = t.doubles } }
            if c.opset >= 11, c.hasInput(3) { let t = try c.requireConstant(3, "sizes"); if t.count > 0 { sizes = t.sizes } }
        }
        var scale = [Double](repeating: 1, count: r), out = x
        if let sizes {
            guard scales == nil else { throw QuarryError.invalidArgument("Resize takes scales or sizes, not both") }
            guard sizes.count == axes.count, sizes.allSatisfy({ $0 > 0 && $0 < OnnxImporter.maxAttributeMagnitude }) else {
                throw QuarryError.invalidArgument("sizes \(sizes) do not fit axes \(axes)")
            }
            for (k, a) in axes.enumerated() { scale[a] = Double(sizes[k]) / Double(Swift.max(x[a], 1)); out[a] = sizes[k] }
            if policy != "stretch" {
                let picked = axes.map { scale[$0] }
                let s = policy == "not_larger" ? picked.min()! : picked.max()!
                for a in axes { scale[a] = s; out[a] = Int(s * Double(x[a]) + 0.5) }
            }
        } else if let scales {
            guard scales.count == axes.count else { throw QuarryError.invalidArgument("scales \(scales) do not fit axes \(axes)") }
            for (k, a) in axes.enumerated() {
                guard scales[k].isFinite, scales[k] > 0, Double(x[a]) * scales[k] < Double(OnnxImporter.maxAttributeMagnitude) else {
                    throw QuarryError.invalidArgument("scale \(scales[k]) is not valid")
                }
                scale[a] = scales[k]
                out[a] = Int(scales[k] * Double(x[a]))
            }
        } else {
            throw QuarryError.invalidArgument("Resize needs scales or sizes")
        }
        guard out.allSatisfy({ $0 > 0 }) else { throw c.unsupported("an empty output \(out)") }
        var roiOf: [Int: (Double, Double)] = [:]
        if let roi {
            guard roi.count == 2 * axes.count else { throw QuarryError.invalidArgument("roi \(roi) does not fit axes \(axes)") }
            for (k, a) in axes.enumerated() { roiOf[a] = (roi[k], roi[axes.count + k]) }
        }
        if ctm == "tf_crop_and_resize" && roi == nil { throw QuarryError.invalidArgument("tf_crop_and_resize needs a roi") }

        let coeffs: (Double, Double) -> [Double]
        switch mode {
        case "nearest":
            coeffs = { ratio, _ in
                if ratio == ratio.rounded() { return [0, 1] }
                switch nearestMode {
                case "round_prefer_floor": return ratio <= 0.5 ? [1, 0] : [0, 1]
                case "round_prefer_ceil": return ratio < 0.5 ? [1, 0] : [0, 1]
                case "floor": return [1, 0]
                default: return [0, 1]
                }
            }
        case "cubic":
            if antialias {
                coeffs = { ratio, s in cubicAntialias(ratio, s, cubicA) }
            } else {
                coeffs = { ratio, _ in cubic(ratio, cubicA) }
            }
        default:
            if antialias {
                coeffs = { ratio, s in linearAntialias(ratio, s) }
            } else {
                coeffs = { ratio, _ in [1 - ratio, ratio] }
            }
        }

        var v = try c.value(0)
        var shape = x
        for a in axes {
            let trivialRoi = roiOf[a].map { abs($0.0) < 1e-9 && abs($0.1 - 1) < 1e-9 } ?? true
            if abs(scale[a] - 1) <= 1e-9 && out[a] == x[a] && trivialRoi { continue }
            let (m, bias) = try resizeMatrix(input: x[a], output: out[a], scale: scale[a], coeffs: coeffs, ctm: ctm, roi: roiOf[a],
                                             extrapolation: extrapolation, excludeOutside: exclude)
            var perm = Array(0..<r)
            perm.swapAt(a, r - 1)
            var t = v
            if a != r - 1 { t = try c.emitInternal(.transpose(perm: perm), [v], "axis\(a)_last").name }
            let key = "resize:\(c.name):\(a):\(x[a])->\(out[a])"
            let w = c.parameter(HostTensor(floats: m, shape: [out[a], x[a]]), key: key)
            var ins = [t, w]
            if let bias { ins.append(c.parameter(HostTensor(floats: bias, shape: [out[a]]), key: key + ":extrapolation")) }
            v = try c.emitInternal(.dense(activation: nil), ins, "axis\(a)").name
            if a != r - 1 { v = try c.emitInternal(.transpose(perm: perm), [v], "axis\(a)_back").name }
            shape[a] = out[a]
        }
        try c.alias(v)
    }

    /// The [output, input] matrix of one axis (row-major) and, for tf_crop_and_resize positions
    /// outside the input, the bias that puts the extrapolation value there.
    static func resizeMatrix(input: Int, output: Int, scale: Double, coeffs: (Double, Double) -> [Double], ctm: String,
                             roi: (Double, Double)?, extrapolation: Float, excludeOutside: Bool) throws -> ([Float], [Float]?) {
        var m = [Double](repeating: 0, count: output * input)
        var bias: [Float]? = nil
        let outputWidth = scale * Double(input)
        for y in 0..<output {
            let yd = Double(y)
            let xo: Double
            switch ctm {
            case "align_corners": xo = outputWidth == 1 ? 0 : yd * Double(input - 1) / (outputWidth - 1)
            case "asymmetric": xo = yd / scale
            case "tf_crop_and_resize":
                let (r0, r1) = roi ?? (0, 1)
                xo = (outputWidth == 1 ? (r1 - r0) * Double(input - 1) / 2 : yd * (r1 - r0) * Double(input - 1) / (outputWidth - 1)) + r0 * Double(input - 1)
            case "pytorch_half_pixel": xo = outputWidth == 1 ? -0.5 : (yd + 0.5) / scale - 0.5
            case "half_pixel_symmetric":
                let adjustment = Double(output) / outputWidth
                let offset = Double(input) / 2 * (1 - adjustment)
                xo = offset + (yd + 0.5) / scale - 0.5
            default: xo = (yd + 0.5) / scale - 0.5
            }
            if ctm == "tf_crop_and_resize" && (xo < 0 || xo > Double(input - 1)) {
                if bias == nil { bias = [Float](repeating: 0, count: output) }
                bias![y] = extrapolation
                continue
            }
            let xi = xo.rounded(.down)
            let ratio = xo == xi ? 1 : xo - xi
            var cf = coeffs(ratio, scale)
            let n = cf.count
            // The n input positions nearest to xo (ties to the smaller), as the reference takes them.
            let pad = (n + 1) / 2
            let xp = xo + Double(pad)
            let pp = xp.rounded(.down)
            let frac = xp - pp
            let offset = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1) : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1)
            guard pp.magnitude < 1e15 else { throw QuarryError.invalidArgument("resize coordinate \(xo) is out of range") }
            let start = Int(pp) + offset - pad
            if excludeOutside {
                for k in 0..<n where start + k < 0 || start + k >= input { cf[k] = 0 }
                let sum = cf.reduce(0, +)
                if sum != 0 { cf = cf.map { $0 / sum } }
            }
            // Edge padding is clamping the positions into the input.
            for k in 0..<n { m[y * input + Swift.min(Swift.max(start + k, 0), input - 1)] += cf[k] }
        }
        return (m.map { Float($0) }, bias)
    }

    static func cubic(_ ratio: Double, _ a: Double) -> [Double] {
        let r1 = ratio + 1, q = 1 - ratio, q1 = q + 1
        return [((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a,
                ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
                ((a + 2) * q - (a + 3)) * q * q + 1,
                ((a * q1 - 5 * a) * q1 + 8 * a) * q1 - 4 * a]
    }

    /// Antialiased cubic: the kernel stretched by 1 / scale when downsampling, normalised.
    static func cubicAntialias(_ ratio: Double, _ scale: Double, _ a: Double) -> [Double] {
        let s = Swift.min(scale, 1)
        func k(_ v: Double) -> Double {
            let x = abs(v), x2 = x * x, x3 = x2 * x
            if x <= 1 { return (a + 2) * x3 - (a + 3) * x2 + 1 }
            if x < 2 { return a * x3 - 5 * a * x2 + 8 * a * x - 4 * a }
            return 0
        }
        let start = Int((-2 / s).rounded(.down)) + 1, end = 2 - start
        let c = (start..<end).map { k(s * (Double($0) - ratio)) }
        let sum = c.reduce(0, +)
        return c.map { $0 / sum }
    }

    /// Antialiased linear: a triangle stretched by 1 / scale when downsampling, normalised.
    static func linearAntialias(_ ratio: Double, _ scale: Double) -> [Double] {
        let s = Swift.min(scale, 1)
        let start = Int((-1 / s).rounded(.down)) + 1
        let footprint = 2 - 2 * start
        let c = (start..<(start + footprint)).map { Swift.min(Swift.max(1 - abs((Double($0) - ratio) * s), 0), 1) }
        let sum = c.reduce(0, +)
        return c.map { $0 / sum }
    }
}
