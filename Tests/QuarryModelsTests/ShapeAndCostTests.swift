import Quarry
import XCTest
@testable import QuarryModels

final class ShapeAndCostTests: XCTestCase {
    func testResNet50MACs() throws {
        // torchvision documents 4.09 GFLOPS (multiply-accumulates) for resnet50 at 224x224.
        let macs = try ModelZoo.entry(named: "resnet50").macsPerItem
        XCTAssertEqual(Double(macs), 4.09e9, accuracy: 0.01 * 4.09e9)
    }

    func testOtherPublishedMACs() throws {
        // torchvision's documented GFLOPS, within 1%.
        let published: [(String, Double)] = [
            ("resnet18", 1.81e9), ("resnet34", 3.66e9), ("resnet101", 7.80e9), ("resnet152", 11.51e9),
            ("vgg16", 15.47e9), ("mobilenet_v2", 0.30e9), ("densenet121", 2.83e9), ("inception_v3", 5.71e9),
            // darknet prints 128.459 BFLOPs (2 per MAC) for yolov4.cfg at 608x608.
            ("yolov4", 128.459e9 / 2),
        ]
        for (name, value) in published {
            let macs = try ModelZoo.entry(named: name).macsPerItem
            XCTAssertEqual(Double(macs), value, accuracy: 0.01 * value, name)
        }
    }

    func testLSTMMACsAtItsListedLength() throws {
        // 64 steps, per step and direction 4H(I + H) for each of two layers (I = 128, then 512).
        let h = 256
        XCTAssertEqual(try ModelZoo.entry(named: "lstm").macsPerItem, 64 * 2 * (4 * h * (128 + h) + 4 * h * (2 * h + h)))
    }

    func testMACsScaleWithBatch() throws {
        let g = try ModelZoo.entry(named: "plain_cnn").build()
        let one = try g.totalMACs(inputShapes: g.concreteInputShapes())
        let four = try g.totalMACs(inputShapes: g.concreteInputShapes(symbols: ["N": 4]))
        XCTAssertEqual(four, 4 * one)
        // First conv by hand: 32x32 outputs, 32 channels, 3*3*3 taps each.
        let shapes = try g.inferShapes(inputShapes: g.concreteInputShapes())
        let conv = try XCTUnwrap(g.nodes.first { $0.name == "features.0.conv" })
        XCTAssertEqual(macs(of: conv, shapes: shapes), 32 * 32 * 32 * 27)
        // Bytes: input 3*32*32, weight 32*27, output 32*32*32 floats.
        XCTAssertEqual(bytesMoved(of: conv, shapes: shapes), 4 * (3 * 1024 + 32 * 27 + 32 * 1024))
    }

    /// Every registered model infers shapes at its default size (cheap: no weights).
    func testEveryModelInfersShapesAtDefaultSize() throws {
        for entry in ModelZoo.all {
            let g = try entry.build()
            let shapes = try g.inferShapes(inputShapes: entry.defaultInputShapes(batch: 2))
            for tap in entry.taps {
                XCTAssertNotNil(shapes[tap], "\(entry.name): tap '\(tap)' is not a value of the graph")
                XCTAssertEqual(shapes[tap]?.first, 2, "\(entry.name): tap '\(tap)' is not batch-first")
            }
            XCTAssertTrue(entry.taps.contains(entry.defaultTap), entry.name)
            // The default pooling fits the default tap: a pooled vector per item.
            let rank = shapes[entry.defaultTap]?.count ?? 0
            switch entry.defaultPooling {
            case .none: break
            case .globalAverage: XCTAssertGreaterThanOrEqual(rank, 3, entry.name)
            case .clsToken, .maskedMean, .lastToken, .maskedMax: XCTAssertEqual(rank, 3, entry.name)
            }
            XCTAssertEqual(g.inputs.map(\.name), entry.inputs.map(\.name), entry.name)
        }
    }

    func testOutputShapesAtDefaultSize() throws {
        func outputShapes(_ name: String, batch: Int = 1) throws -> [[Int]] {
            let g = try ModelZoo.entry(named: name).build()
            let s = try g.inferShapes(inputShapes: g.concreteInputShapes(symbols: ["N": batch]))
            return g.outputs.map { s[$0]! }
        }
        XCTAssertEqual(try outputShapes("resnet50"), [[1, 1000]])
        XCTAssertEqual(try outputShapes("vgg16"), [[1, 1000]])
        XCTAssertEqual(try outputShapes("inception_v3"), [[1, 1000], [1, 1000]])
        XCTAssertEqual(try outputShapes("densenet121"), [[1, 1000]])
        XCTAssertEqual(try outputShapes("mobilenet_v2"), [[1, 1000]])
        XCTAssertEqual(try outputShapes("unet"), [[1, 2, 256, 256]])
        XCTAssertEqual(try outputShapes("yolov4"), [[1, 255, 76, 76], [1, 255, 38, 38], [1, 255, 19, 19]])
        XCTAssertEqual(try outputShapes("bert_base", batch: 2), [[2, 128, 768], [2, 768]])
        XCTAssertEqual(try outputShapes("gpt2"), [[1, 1024, 768]])
        XCTAssertEqual(try outputShapes("conv_autoencoder"), [[1, 3, 64, 64]])
        let g = try ModelZoo.entry(named: "conv_autoencoder").build()
        XCTAssertEqual(try g.inferShapes(inputShapes: g.concreteInputShapes())["encoder"], [1, 16, 8, 8])
    }

    /// Reduced input sizes, as the CPU tests run them.
    func testReducedSizes() throws {
        let cases: [(String, BuildOptions, String, [Int])] = [
            ("resnet18", BuildOptions(imageSize: 32), "layer4", [1, 512, 1, 1]),
            ("resnet50", BuildOptions(imageSize: 64), "layer4", [1, 2048, 2, 2]),
            ("vgg16", BuildOptions(imageSize: 32), "avgpool", [1, 512, 7, 7]),
            ("vgg16", BuildOptions(imageSize: 448), "avgpool", [1, 512, 7, 7]),
            ("inception_v3", BuildOptions(imageSize: 75), "Mixed_7c", [1, 2048, 1, 1]),
            ("densenet121", BuildOptions(imageSize: 32), "features", [1, 1024, 1, 1]),
            ("mobilenet_v2", BuildOptions(imageSize: 32), "features.18", [1, 1280, 1, 1]),
            ("unet", BuildOptions(imageSize: 32), "outc", [1, 2, 32, 32]),
            ("yolov4", BuildOptions(imageSize: 64), "head.conv18", [1, 255, 2, 2]),
            ("bert_base", BuildOptions(sequenceLength: 7), "encoder.layer.11", [1, 7, 768]),
            ("gpt2", BuildOptions(sequenceLength: 5), "h.11", [1, 5, 768]),
            ("conv_autoencoder", BuildOptions(imageSize: 16), "encoder", [1, 16, 2, 2]),
        ]
        for (name, options, tap, expected) in cases {
            let g = try ModelZoo.entry(named: name).build(options)
            XCTAssertEqual(try g.inferShapes(inputShapes: g.concreteInputShapes())[tap], expected, "\(name) \(tap)")
        }
    }

    func testBadSizesThrowDescriptiveErrors() {
        XCTAssertThrowsError(try ModelZoo.entry(named: "unet").build(BuildOptions(imageSize: 30)))
        XCTAssertThrowsError(try ModelZoo.entry(named: "yolov4").build(BuildOptions(imageSize: 100)))
        XCTAssertThrowsError(try ModelZoo.entry(named: "bert_base").build(BuildOptions(sequenceLength: 513)))
        // Inception at 32x32 runs out of pixels at Mixed_6a; the error names the node.
        XCTAssertThrowsError(try ModelZoo.entry(named: "inception_v3").build(BuildOptions(imageSize: 32))) { error in
            XCTAssertTrue("\(error)".contains("Mixed_6a"), "\(error)")
        }
        // 20x20 features from 640: 7x7 adaptive pooling has no fixed-window equivalent.
        XCTAssertThrowsError(try ModelZoo.entry(named: "vgg16").build(BuildOptions(imageSize: 640)))
    }
}
