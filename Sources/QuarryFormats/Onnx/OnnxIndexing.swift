// ONNX ArgMax / ArgMin, TopK, CumSum, Gather on an axis other than 0 with run-time indices,
// GatherElements, GatherND and ScatterND, onto Quarry's graph ops of the same names. Index
// tensors (int64 in ONNX) arrive as float values; an index outside its axis gives NaN in a
// gather's output and skips a ScatterND update (Op.swift documents the rule both backends follow).
// The positions these ops output (ArgMax, TopK's Indices) are int64 in ONNX: marked integer so
// that later integer folding and the tests treat them as whole numbers.

import Quarry

extension OnnxImporter {
    static func argExtreme(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", 0), rank: x.count)
        let keep = c.int("keepdims", 1) != 0, last = c.int("select_last_index", 0) != 0
        guard x[axis] > 0 else { throw QuarryError.invalidArgument("\(c.op) over the empty axis \(axis) of \(x)") }
        try c.emit(.argExtreme(largest: c.op == "ArgMax", axis: axis, keepDims: keep, selectLast: last), [try c.value(0)], integer: true)
    }

    /// K is an input from opset 10 (an attribute before); it sets the output shape, so it must be
    /// known at import: a constant, a value computed from shapes, or a graph input given with the
    /// input shapes (OnnxModel.constantOperands lists it).
    static func topK(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", -1), rank: x.count)
        let k: Int
        if c.opset < 10 {
            k = c.int("k", -1)
        } else {
            let t = try c.requireConstant(1, "K")
            guard t.count == 1 else { throw QuarryError.invalidArgument("TopK's K must hold one value, got shape \(t.shape)") }
            k = t.sizes[0]
        }
        guard k >= 0, k <= x[axis] else { throw QuarryError.invalidArgument("TopK's K \(k) must lie in 0...\(x[axis]) (axis \(axis) of \(x))") }
        let largest = c.int("largest", 1) != 0
        // sorted = 0 lets the k elements come in any order; the sorted order is one of them.
        c.ignore("sorted")
        let outs = try c.emitMulti(.topK(k: k, axis: axis, largest: largest), [try c.value(0)],
                                   outputs: [c.outputName(0), c.outputName(1)])
        // emitMulti marks its outputs float: Values are integers when X is, Indices always.
        let integer = [try c.isInteger(0), true]
        for (i, (n, s)) in outs.enumerated() where n == c.outputName(i) {
            c.importer.values[n] = .runtime(name: n, shape: s, integer: integer[i])
        }
    }

    static func cumSum(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let a = try c.requireConstant(1, "axis")
        guard a.count == 1 else { throw QuarryError.invalidArgument("CumSum's axis must hold one value, got shape \(a.shape)") }
        let axis = try c.normAxis(a.sizes[0], rank: x.count)
        let exclusive = c.int("exclusive", 0) != 0, reverse = c.int("reverse", 0) != 0
        try c.emit(.cumSum(axis: axis, exclusive: exclusive, reverse: reverse), [try c.value(0)], integer: try c.isInteger(0))
    }

    /// Gather with run-time indices on a normalised `axis` other than 0 (axis 0 is an embedding
    /// lookup, see the Gather handler).
    static func gatherOnAxis(_ c: inout NodeContext, axis: Int) throws {
        try c.emit(.gather(axis: axis), [try c.value(0), try c.value(1)], integer: try c.isInteger(0))
    }

    static func gatherElements(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", 0), rank: x.count)
        try c.emit(.gatherElements(axis: axis), [try c.value(0), try c.value(1)], integer: try c.isInteger(0))
    }

    static func gatherND(_ c: inout NodeContext) throws {
        let b = c.int("batch_dims", 0)
        try c.emit(.gatherND(batchDims: b), [try c.value(0), try c.value(1)], integer: try c.isInteger(0))
    }

    static func scatterND(_ c: inout NodeContext) throws {
        let name = c.string("reduction", "none")
        guard let reduction = ScatterReduction(rawValue: name) else { throw c.unsupported("ScatterND reduction '\(name)'") }
        try c.emit(.scatterND(reduction), [try c.value(0), try c.value(1), try c.value(2)],
                   integer: try c.isInteger(0) && c.isInteger(2))
    }
}
