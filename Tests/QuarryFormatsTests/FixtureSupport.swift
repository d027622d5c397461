import Foundation
import Quarry
import XCTest
@testable import QuarryFormats

/// Tests/Fixtures, found from this file's path so no resources need declaring.
let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

func fixture(_ parts: String...) -> String {
    parts.reduce(fixturesURL) { $0.appendingPathComponent($1) }.path
}

func temporaryFolder() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-formats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.path
}

/// Largest |a − e| / (atol + rtol·|e|) over the elements; ≤ 1 passes.
func closeness(_ a: Tensor, _ e: Tensor, rtol: Float, atol: Float) -> Float {
    var worst: Float = 0
    for i in 0..<min(a.count, e.count) {
        // Where lowers infinite constants (attention masks) to ±Float.greatestFiniteMagnitude.
        if e[flat: i].isInfinite {
            if a[flat: i].sign != e[flat: i].sign || abs(a[flat: i]) < 1e38 { return .infinity }
            continue
        }
        let d = abs(a[flat: i] - e[flat: i]) / (atol + rtol * abs(e[flat: i]))
        if d.isNaN { return .infinity }
        worst = max(worst, d)
    }
    return worst
}

/// Serialises a hand-made model (hostile tests build their own).
func modelBytes(nodes: [Onnx_NodeProto], inputs: [(String, [Int64])], outputs: [String], initializers: [Onnx_TensorProto] = [], opset: Int64 = 17) throws -> Data {
    var g = Onnx_GraphProto()
    g.name = "test"
    g.node = nodes
    g.initializer = initializers
    g.input = inputs.map { name, dims in
        var vi = Onnx_ValueInfoProto()
        vi.name = name
        var tt = Onnx_TypeProto.Tensor()
        tt.elemType = 1
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in var dim = Onnx_TensorShapeProto.Dimension(); dim.dimValue = d; return dim }
        tt.shape = shape
        vi.type.tensorType = tt
        return vi
    }
    g.output = outputs.map { var vi = Onnx_ValueInfoProto(); vi.name = $0; return vi }
    var m = Onnx_ModelProto()
    m.irVersion = 8
    var op = Onnx_OperatorSetIdProto()
    op.version = opset
    m.opsetImport = [op]
    m.graph = g
    return try m.serializedData()
}

func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String? = nil, ints: [String: [Int64]] = [:]) -> Onnx_NodeProto {
    var n = Onnx_NodeProto()
    n.opType = op; n.input = inputs; n.output = outputs; n.name = name ?? outputs.first ?? op
    n.attribute = ints.map { k, v in var a = Onnx_AttributeProto(); a.name = k; a.type = .ints; a.ints = v; return a }
    return n
}

func floatTensor(_ name: String, dims: [Int64], values: [Float]) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dims = dims; t.dataType = 1
    t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
    return t
}
