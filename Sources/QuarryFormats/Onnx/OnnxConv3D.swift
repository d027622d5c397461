// ONNX Conv and ConvTranspose on 3-D inputs [N, C, D, H, W], lowered onto the 2-D ops: a 3-D
// kernel is a sum over its depth taps of 2-D kernels, each applied to every depth slice at once
// (the slices folded into the batch).
//
//   Conv:          y[:, :, z] = Σ_kd conv2d(x_padded[:, :, z·sd + kd·dd], w[:, :, kd])
//   ConvTranspose: y[:, :, d·sd + kd·dd − pad] += convT2d(x[:, :, d], w[:, :, kd])
//
// For the transposed convolution each tap's result is spread along the depth by inserting
// sd − 1 zero slices between consecutive ones, shifted by kd·dd (padding), summed, and cropped by
// the depth pads. Height and width (strides, pads, dilations, groups) stay with the 2-D ops.

import Foundation
import Quarry

extension OnnxImporter {
    /// The weight's depth tap `k` as a 4-D weight (a parameter for a constant, a slice otherwise).
    static func depthTap(_ c: inout NodeContext, weight w: [Int], tap k: Int) throws -> String {
        if let t = try c.constant(1) {
            let tap = t.taking([k], axis: 2).reshaped([w[0], w[1], w[3], w[4]])
            return c.parameter(tap, key: c.inputName(1) + ":depth\(k)")
        }
        let s = try c.emitInternal(.slice(starts: [k], ends: [k + 1], axes: [2], steps: [1]), [try c.value(1)], "weight_depth\(k)")
        return try c.emitInternal(.reshape(shape: [w[0], w[1], w[3], w[4]]), [s.name], "weight_depth\(k)_2d").name
    }

    static func conv3d(_ c: inout NodeContext, group: Int) throws {
        let x = try c.shape(0), w = try c.shape(1)
        guard w.count == 5 else { throw QuarryError.invalidArgument("3-D Conv needs an [O, C, kd, kh, kw] weight, got \(w)") }
        let win = try c.windowND(kernel: [w[2], w[3], w[4]], input: [x[2], x[3], x[4]])
        let (n, ch) = (x[0], x[1])
        let (sd, dd) = (win.stride[0], win.dilation[0])
        let depth = x[2] + win.begin[0] + win.end[0]
        let outD = (depth - dd * (w[2] - 1) - 1) / sd + 1
        guard outD > 0 else { throw QuarryError.invalidArgument("kernel depth \(w[2]) (dilation \(dd)) exceeds the padded depth \(depth)") }
        var xp = try c.value(0)
        if win.begin[0] > 0 || win.end[0] > 0 {
            xp = try c.emitInternal(.pad(pads: [0, 0, win.begin[0], 0, 0, 0, 0, win.end[0], 0, 0], mode: .constant, value: 0), [xp], "depth_padded").name
        }
        let attrs = Conv2DAttributes(kernel: (w[3], w[4]), stride: (win.stride[1], win.stride[2]),
                                     padding: Padding2D(top: win.begin[1], left: win.begin[2], bottom: win.end[1], right: win.end[2]),
                                     dilation: (win.dilation[1], win.dilation[2]), groups: group)
        var sum: String? = nil
        var oh = 0, ow = 0
        for k in 0..<w[2] {
            let start = k * dd
            let s = try c.emitInternal(.slice(starts: [start], ends: [start + (outD - 1) * sd + 1], axes: [2], steps: [sd]), [xp], "tap\(k)")
            let t = try c.emitInternal(.transpose(perm: [0, 2, 1, 3, 4]), [s.name], "tap\(k)_depth_major")
            let b = try c.emitInternal(.reshape(shape: [n * outD, ch, x[3], x[4]]), [t.name], "tap\(k)_batched")
            let y = try c.emitInternal(.conv2d(attrs), [b.name, try depthTap(&c, weight: w, tap: k)], "tap\(k)_conv")
            (oh, ow) = (y.shape[2], y.shape[3])
            sum = try sum.map { try c.emitInternal(.binary(.add, activation: nil), [$0, y.name], "sum\(k)").name } ?? y.name
        }
        let y5 = try c.emitInternal(.reshape(shape: [n, outD, w[0], oh, ow]), [sum!], "depth_unbatched")
        let y = try c.emitInternal(.transpose(perm: [0, 2, 1, 3, 4]), [y5.name], "channels_first").name
        if c.hasInput(2) {
            let b = try c.emitInternal(.reshape(shape: [1, w[0], 1, 1, 1]), [try c.value(2)], "bias5d")
            try c.emit(.binary(.add, activation: nil), [y, b.name])
        } else {
            try c.alias(y)
        }
    }

    static func convTranspose3d(_ c: inout NodeContext, group: Int, strides: [Int], dilations: [Int], pads: [Int], outputPadding: [Int]) throws {
        let x = try c.shape(0), w = try c.shape(1)
        guard w.count == 5 else { throw QuarryError.invalidArgument("3-D ConvTranspose needs a [C, O/group, kd, kh, kw] weight, got \(w)") }
        let (n, ch, d) = (x[0], x[1], x[2])
        let (sd, dd) = (strides[0], dilations[0])
        let outChannels = w[1] * group
        // The full depth before the pads are cropped, output padding included.
        let full = sd * (d - 1) + outputPadding[0] + (w[2] - 1) * dd + 1
        let outD = full - pads[0] - pads[3]
        guard outD > 0 else { throw QuarryError.invalidArgument("pads \(pads) leave no output depth") }
        let attrs = ConvTranspose2DAttributes(kernel: (w[3], w[4]), stride: (strides[1], strides[2]),
                                              padding: Padding2D(top: pads[1], left: pads[2], bottom: pads[4], right: pads[5]),
                                              outputPadding: (outputPadding[1], outputPadding[2]), dilation: (dilations[1], dilations[2]), groups: group)
        let t = try c.emitInternal(.transpose(perm: [0, 2, 1, 3, 4]), [try c.value(0)], "depth_major")
        let b = try c.emitInternal(.reshape(shape: [n * d, ch, x[3], x[4]]), [t.name], "batched")
        var sum: String? = nil
        var plane = 0, oh = 0, ow = 0
        for k in 0..<w[2] {
            let y = try c.emitInternal(.convTranspose2d(attrs), [b.name, try depthTap(&c, weight: w, tap: k)], "tap\(k)_conv")
            (oh, ow) = (y.shape[2], y.shape[3])
            plane = outChannels * oh * ow
            // [N, D, plane] → D slices sd apart ([N, D·sd, plane], the last sd − 1 dropped) at depth k·dd.
            var spread = try c.emitInternal(.reshape(shape: [n, d, 1, plane]), [y.name], "tap\(k)_slices").name
            if sd > 1 {
                let zeros = c.parameter(HostTensor(floats: [Float](repeating: 0, count: n * d * (sd - 1) * plane), shape: [n, d, sd - 1, plane]),
                                        key: "zeros:[\(n), \(d), \(sd - 1), \(plane)]")
                spread = try c.emitInternal(.concat(axis: 2), [spread, zeros], "tap\(k)_strided").name
            }
            spread = try c.emitInternal(.reshape(shape: [n, d * sd, plane]), [spread], "tap\(k)_depth").name
            let used = (d - 1) * sd + 1, before = k * dd
            if used < d * sd { spread = try c.emitInternal(.slice(starts: [0], ends: [used], axes: [1], steps: [1]), [spread], "tap\(k)_trim").name }
            let after = full - before - used
            spread = try c.emitInternal(.pad(pads: [0, before, 0, 0, after, 0], mode: .constant, value: 0), [spread], "tap\(k)_placed").name
            sum = try sum.map { try c.emitInternal(.binary(.add, activation: nil), [$0, spread], "sum\(k)").name } ?? spread
        }
        var y = sum!
        if pads[0] > 0 || pads[3] > 0 {
            y = try c.emitInternal(.slice(starts: [pads[0]], ends: [pads[0] + outD], axes: [1], steps: [1]), [y], "depth_cropped").name
        }
        let y5 = try c.emitInternal(.reshape(shape: [n, outD, outChannels, oh, ow]), [y], "unflattened")
        let yt = try c.emitInternal(.transpose(perm: [0, 2, 1, 3, 4]), [y5.name], "channels_first")
        if c.hasInput(2) {
            let bias = try c.emitInternal(.reshape(shape: [1, outChannels, 1, 1, 1]), [try c.value(2)], "bias5d")
            try c.emit(.binary(.add, activation: nil), [yt.name, bias.name])
        } else {
            try c.alias(yt.name)
        }
    }
}
