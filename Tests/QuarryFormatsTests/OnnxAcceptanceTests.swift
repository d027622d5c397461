import Foundation
import Quarry
import QuarryCPU
import XCTest
@testable import QuarryFormats

/// ResNet-50, MobileNetV2 and BERT-base exported the PyTorch way (random weights). The models are
/// hundreds of MB, so they are generated rather than committed:
///   python3 scripts/make_onnx_fixtures.py --big /tmp/quarry-big
///   QUARRY_BIG_ONNX_DIR=/tmp/quarry-big swift test --filter OnnxAcceptanceTests
final class OnnxAcceptanceTests: XCTestCase {
    func check(_ name: String) throws {
        guard let root = ProcessInfo.processInfo.environment["QUARRY_BIG_ONNX_DIR"] else {
            throw XCTSkip("set QUARRY_BIG_ONNX_DIR after running scripts/make_onnx_fixtures.py --big DIR")
        }
        let dir = "\(root)/\(name)"
        let model = try OnnxModel(path: "\(dir)/model.onnx")
        let inputs = try NumPy.readArchive(path: "\(dir)/inputs.npz")
        let expected = try NumPy.readArchive(path: "\(dir)/outputs.npz")
        let shapes = inputs.mapValues(\.shape)
        let graph = try model.graph(inputShapes: shapes)
        let inferred = try graph.inferShapes(inputShapes: shapes)
        for (out, e) in expected { XCTAssertEqual(inferred[out], e.shape, "\(name): '\(out)'") }
        let compiled: CompiledGraph
        do {
            compiled = try CPUDevice().compile(graph, outputs: Array(expected.keys))
            let results = try compiled.run(inputs.mapValues { $0.tensor() })
            for (out, e) in expected {
                let want = e.tensor()
                let scale = want.scalars.map(abs).max() ?? 1
                let c = closeness(try XCTUnwrap(results[out]), want, rtol: 1e-4, atol: 1e-4 * scale)
                XCTAssertLessThanOrEqual(c, 1, "\(name): '\(out)' differs from onnxruntime beyond 1e-4 relative (ratio \(c))")
            }
        } catch QuarryError.unsupported(let m) where m.contains("not implemented on the CPU yet") {
            throw XCTSkip("\(name) imports with onnxruntime's shapes; values wait for CPU kernels: \(m)")
        }
    }

    func testResNet50() throws { try check("resnet50") }
    func testMobileNetV2() throws { try check("mobilenetv2") }
    func testBERTBase() throws { try check("bert") }
}
