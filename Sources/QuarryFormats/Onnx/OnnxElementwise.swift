// Elementwise ONNX operators beyond the basic arithmetic of OnnxOps.swift: rounding and sign,
// trigonometry, softplus / elu / selu, comparisons and logic (bools as 0 / 1 floats), Mod,
// integer Div and Where. Constant inputs fold on the host as the other handlers do (so shape
// subgraphs keep their integer kinds); run-time values become activation, binary and select
// nodes. Outputs that hold integers or bools are marked so, as the runtime carries them exactly
// up to 2^24.

import Foundation
import Quarry

extension OnnxImporter {
    /// Floor, Ceil, Round and Sign: an integer input gives an integer output, folded or not.
    static func unaryKeepingKind(_ c: inout NodeContext, _ act: Activation, _ fold: @escaping (Double) -> Double) throws {
        if let t = try c.constant(0) {
            try c.setConstant(0, HostTensor(doubles: t.doubles.map(fold), shape: t.shape, kind: t.kind))
            return
        }
        try c.emit(.activation(act), [try c.value(0)], integer: try c.isInteger(0))
    }

    /// Not: a bool in, a bool out.
    static func not(_ c: inout NodeContext) throws {
        if let t = try c.constant(0) {
            try c.setConstant(0, HostTensor(doubles: t.doubles.map { $0 == 0 ? 1 : 0 }, shape: t.shape, kind: .bool))
            return
        }
        try c.emit(.activation(.not), [try c.value(0)], integer: true)
    }

    /// Equal, Less, LessOrEqual, Greater, GreaterOrEqual, And, Or, Xor: numpy-broadcast, bool out.
    static func compare(_ c: inout NodeContext, _ op: BinaryOp) throws {
        let f: (Double, Double) -> Bool
        switch op {
        case .equal: f = { $0 == $1 }
        case .less: f = { $0 < $1 }
        case .lessOrEqual: f = { $0 <= $1 }
        case .greater: f = { $0 > $1 }
        case .greaterOrEqual: f = { $0 >= $1 }
        case .and: f = { $0 != 0 && $1 != 0 }
        case .or: f = { $0 != 0 || $1 != 0 }
        case .xor: f = { ($0 != 0) != ($1 != 0) }
        default: preconditionFailure("\(op) is not a comparison")
        }
        if let a = try c.constant(0), let b = try c.constant(1) {
            // Int64 shape values compare exactly here; only run-time values go through float32.
            try c.setConstant(0, try HostTensor.broadcast(a, b, kind: .bool) { f($0, $1) ? 1 : 0 })
            return
        }
        try c.emit(.binary(op, activation: nil), [try c.value(0), try c.value(1)], integer: true)
    }

    /// Mod: fmod = 0 takes the divisor's sign (Python's %; ONNX allows it on floats from opset
    /// 28, on integers before), fmod = 1 the dividend's (C's fmod).
    static func mod(_ c: inout NodeContext) throws {
        let cStyle = c.int("fmod", 0) != 0
        if let a = try c.constant(0), let b = try c.constant(1) {
            let kind: HostTensor.Kind = a.kind == .float || b.kind == .float ? .float : .int
            try c.setConstant(0, try HostTensor.broadcast(a, b, kind: kind) { x, y in
                // An integer remainder by zero is undefined; 0 keeps the fold from trapping.
                if kind == .int && y == 0 { return 0 }
                let r = Foundation.fmod(x, y)
                return !cStyle && r != 0 && (r < 0) != (y < 0) ? r + y : r
            })
            return
        }
        try c.emit(.binary(cStyle ? .fmod : .mod, activation: nil), [try c.value(0), try c.value(1)],
                   integer: try c.isInteger(0) && c.isInteger(1))
    }

    /// Div: integers of run-time values divide in float32 and truncate toward zero (ONNX's
    /// integer division, as C's). For |dividend| < 2^24 the float quotient cannot round onto the
    /// next integer (its distance from one is at least 1/|divisor|, more than its rounding
    /// error), so the truncated result is exact.
    static func div(_ c: inout NodeContext) throws {
        if !c.allInputsConstant, try c.isInteger(0), try c.isInteger(1) {
            try c.emit(.binary(.div, activation: .trunc), [try c.value(0), try c.value(1)], integer: true)
            return
        }
        try c.binary(.div, fold: /)
    }

    /// Where(condition, X, Y): a select node, which reads only the chosen operand, so infinite
    /// fill values (attention masks written with -inf) pass through as they are.
    static func select(_ c: inout NodeContext) throws {
        if let cond = try c.constant(0), let x = try c.constant(1), let y = try c.constant(2) {
            let kind: HostTensor.Kind = x.kind == .float || y.kind == .float ? .float : x.kind
            // cond·x + (1 − cond)·y written so that the operand not chosen is never read.
            let cx = try HostTensor.broadcast(cond, x, kind: .float) { $0 != 0 ? $1 : 0 }
            let cy = try HostTensor.broadcast(cond, y, kind: .float) { $0 != 0 ? 0 : $1 }
            try c.setConstant(0, try HostTensor.broadcast(cx, cy, kind: kind) { $0 + $1 })
            return
        }
        try c.emit(.select, [try c.value(0), try c.value(1), try c.value(2)], integer: try c.isInteger(1) && c.isInteger(2))
    }
}
