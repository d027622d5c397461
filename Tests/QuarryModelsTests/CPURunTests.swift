import Quarry
import QuarryCPU
import XCTest
@testable import QuarryModels

// Every family runs on the CPU at a reduced size (small configurations of the same builders; the
// full ones are counted and shape-checked elsewhere). Outputs are checked for shape and for being
// finite, and the transformer tests check what the masks mean: padding never changes real tokens
// (BERT) and a later token never changes an earlier one (GPT).

/// Fills every parameter from a uniform distribution with its initializer's variance (a cheap
/// stand-in for Box–Muller, which is slow in debug builds); constants keep their value.
func fillForTest(_ graph: inout Graph, seed: UInt64) {
    var state = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 | 1)
    for name in graph.parameters.keys.sorted() {
        guard var p = graph.parameters[name], p.value == nil else { continue }
        let bound: Float
        var constant: Float? = nil
        switch p.initializer {
        case .he(let fan): bound = (6 / Float(max(fan, 1))).squareRoot()
        case .xavier(let fi, let fo): bound = (6 / Float(max(fi + fo, 1))).squareRoot()
        case .normal(let std): bound = std * Float(3).squareRoot()
        case .constant(let v): bound = 0; constant = v
        }
        let t = Tensor(uninitializedShape: p.shape)
        let ptr = t.pointer
        if let constant {
            ptr.initialize(repeating: constant, count: t.count)
        } else {
            for i in 0..<t.count {
                state ^= state << 13; state ^= state >> 17; state ^= state << 5
                ptr[i] = bound * (Float(state >> 8) * (2 / 16_777_216) - 1)
            }
        }
        p.value = t
        graph.parameters[name] = p
    }
    graph.untrained = true
}

/// Compiles and runs on the CPU; a kernel the CPU backend does not have yet skips the test with
/// the backend's message (the test runs for real once it lands).
func runOnCPU(_ graph: Graph, _ inputs: [String: Tensor], outputs: [String]) throws -> [String: Tensor] {
    do {
        let compiled = try CPUDevice(threads: 2).compile(graph, outputs: outputs)
        return try compiled.run(inputs)
    } catch QuarryError.unsupported(let message) {
        throw XCTSkip("CPU backend: \(message)")
    }
}

func assertFinite(_ t: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    let bad = t.scalars.firstIndex { !$0.isFinite }
    XCTAssertNil(bad, "\(what): element \(bad ?? -1) is not finite", file: file, line: line)
}

final class CPURunTests: XCTestCase {
    var rng = SeededGenerator(seed: 7)

    func image(_ n: Int, _ c: Int, _ size: Int) -> Tensor {
        Tensor.random(shape: [n, c, size, size], in: -1...1, using: &rng)
    }

    func ids(_ n: Int, _ s: Int, vocab: Int) -> Tensor {
        let t = Tensor(uninitializedShape: [n, s])
        for i in 0..<t.count { t.pointer[i] = Float(Int.random(in: 0..<vocab, using: &rng)) }
        return t
    }

    /// Builds, fills, runs at batch 2 and checks the shapes of `expected` (tap → shape).
    @discardableResult
    func check(_ graph: Graph, _ inputs: [String: Tensor], _ expected: [String: [Int]],
               file: StaticString = #filePath, line: UInt = #line) throws -> [String: Tensor] {
        var g = graph
        fillForTest(&g, seed: 3)
        let outputs = Array(expected.keys).sorted()
        let result = try runOnCPU(g, inputs, outputs: outputs)
        for (tap, shape) in expected {
            let t = try XCTUnwrap(result[tap], "missing output \(tap)", file: file, line: line)
            XCTAssertEqual(t.shape, shape, tap, file: file, line: line)
            assertFinite(t, tap, file: file, line: line)
        }
        return result
    }

    func testPlainCNN() throws {
        let g = try PlainCNN.build(PlainCNNConfig(channels: [8, 16], numClasses: 5, imageSize: 12))
        try check(g, ["input": image(2, 3, 12)], ["features.1": [2, 16, 3, 3], "classifier": [2, 5]])
    }

    func testVGG() throws {
        let cfg = VGGConfig(layers: [8, 0, 16, 16, 0], numClasses: 10, imageSize: 28, classifierWidth: 32)
        try check(try VGG.build(cfg), ["input": image(2, 3, 28)],
                  ["features.6": [2, 16, 14, 14], "features.7": [2, 16, 7, 7], "avgpool": [2, 16, 7, 7], "classifier.6": [2, 10]])
    }

    func testResNetBasicAndBottleneck() throws {
        let basic = ResNetConfig(block: .basic, layers: [1, 1, 1, 1], numClasses: 7, imageSize: 32, baseWidth: 8)
        try check(try ResNet.build(basic), ["input": image(2, 3, 32)],
                  ["layer1": [2, 8, 8, 8], "layer4": [2, 64, 1, 1], "fc": [2, 7]])
        let bottleneck = ResNetConfig(block: .bottleneck, layers: [2, 1, 1, 1], numClasses: 7, imageSize: 40, baseWidth: 8)
        try check(try ResNet.build(bottleneck), ["input": image(2, 3, 40)],
                  ["layer1.1": [2, 32, 10, 10], "layer4": [2, 256, 2, 2], "avgpool": [2, 256, 1, 1], "fc": [2, 7]])
    }

    func testInceptionV3() throws {
        // A sixteenth of the widths at the smallest input, without the aux head…
        let small = try InceptionV3.build(InceptionV3Config(numClasses: 10, imageSize: 75, auxLogits: false, widthDivisor: 16))
        try check(small, ["input": image(2, 3, 75)], ["Mixed_5d": [2, 18, 7, 7], "Mixed_7c": [2, 128, 1, 1], "fc": [2, 10]])
        // …and with it, which needs Mixed_6e at 17x17 (299 input).
        let aux = try InceptionV3.build(InceptionV3Config(numClasses: 10, imageSize: 299, widthDivisor: 16))
        try check(aux, ["input": image(1, 3, 299)], ["Mixed_6e": [1, 48, 17, 17], "AuxLogits": [1, 10], "fc": [1, 10]])
    }

    func testDenseNet() throws {
        let cfg = DenseNetConfig(growthRate: 8, blocks: [2, 3, 2, 2], initialFeatures: 16, numClasses: 6, imageSize: 32)
        // Channels: 16 → 32 → 16 → 40 → 20 → 36 → 18 → 34.
        try check(try DenseNet.build(cfg), ["input": image(2, 3, 32)],
                  ["features.denseblock2": [2, 40, 4, 4], "features": [2, 34, 1, 1], "classifier": [2, 6]])
    }

    func testMobileNetV2() throws {
        let g = try MobileNetV2.build(MobileNetV2Config(widthMultiplier: 0.25, numClasses: 10, imageSize: 32))
        try check(g, ["input": image(2, 3, 32)], ["features.3": [2, 8, 8, 8], "features.18": [2, 1280, 1, 1], "classifier.1": [2, 10]])
    }

    func testUNet() throws {
        let g = try UNet.build(UNetConfig(numClasses: 3, baseWidth: 4, imageSize: 32))
        try check(g, ["input": image(2, 3, 32)], ["down4": [2, 64, 2, 2], "up2": [2, 16, 8, 8], "outc": [2, 3, 32, 32]])
    }

    func testYOLOv4() throws {
        let g = try YOLOv4.build(YOLOv4Config(imageSize: 64, widthDivisor: 16))
        try check(g, ["input": image(1, 3, 64)],
                  ["down5": [1, 64, 2, 2], "head.conv2": [1, 255, 8, 8], "head.conv10": [1, 255, 4, 4], "head.conv18": [1, 255, 2, 2]])
    }

    func testConvAutoencoder() throws {
        let g = try ConvAutoencoder.build(ConvAutoencoderConfig(baseWidth: 4, latentChannels: 5, imageSize: 16))
        let out = try check(g, ["input": image(2, 3, 16)], ["encoder": [2, 5, 2, 2], "decoder": [2, 3, 16, 16]])
        XCTAssertTrue(out["decoder"]!.scalars.allSatisfy { $0 >= 0 && $0 <= 1 }, "the decoder ends in a sigmoid")
    }

    func testLSTM() throws {
        for bidirectional in [false, true] {
            let cfg = LSTMNetworkConfig(inputSize: 6, hiddenSize: 5, layers: 2, bidirectional: bidirectional)
            let x = Tensor.random(shape: [2, 4, 6], in: -1...1, using: &rng)
            let d = bidirectional ? 2 : 1
            try check(try LSTMNetwork.build(cfg), ["input": x], ["lstm.l0": [2, 4, 5 * d], "lstm": [2, 4, 5 * d]])
        }
    }

    func testBERTMaskKeepsPaddingOut() throws {
        let cfg = BERTConfig(vocabSize: 50, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 64, maxPositions: 16,
                             sequenceLength: 6)
        var g = try BERT.build(cfg)
        fillForTest(&g, seed: 5)
        let tokens = ids(2, 6, vocab: 50)
        let mask = try Tensor(shape: [2, 6], scalars: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        let taps = ["encoder.layer.1", "pooler"]
        let a = try runOnCPU(g, ["input_ids": tokens, "attention_mask": mask], outputs: taps)
        XCTAssertEqual(a["encoder.layer.1"]?.shape, [2, 6, 32])
        XCTAssertEqual(a["pooler"]?.shape, [2, 32])
        assertFinite(a["encoder.layer.1"]!, "encoder.layer.1")
        // Change the padded tokens of item 1: its real tokens' outputs must not move.
        let changed = tokens.copy()
        changed.pointer[6 + 4] = Float((Int(changed.pointer[6 + 4]) + 1) % 50)
        changed.pointer[6 + 5] = Float((Int(changed.pointer[6 + 5]) + 7) % 50)
        let b = try runOnCPU(g, ["input_ids": changed, "attention_mask": mask], outputs: taps)
        let ya = a["encoder.layer.1"]!.scalars, yb = b["encoder.layer.1"]!.scalars
        for i in (6 * 32)..<(10 * 32) { XCTAssertEqual(ya[i], yb[i], accuracy: 1e-5) }
        XCTAssertEqual(a["pooler"]!.scalars, b["pooler"]!.scalars)
    }

    func testGPTIsCausal() throws {
        let cfg = GPTConfig(vocabSize: 40, contextLength: 16, layers: 2, heads: 4, hiddenSize: 32, sequenceLength: 5)
        var g = try GPT.build(cfg)
        fillForTest(&g, seed: 9)
        let tokens = ids(2, 5, vocab: 40)
        let a = try runOnCPU(g, ["input_ids": tokens], outputs: ["h.1", "ln_f"])
        XCTAssertEqual(a["ln_f"]?.shape, [2, 5, 32])
        assertFinite(a["ln_f"]!, "ln_f")
        let changed = tokens.copy()
        changed.pointer[4] = Float((Int(changed.pointer[4]) + 3) % 40)  // item 0, last position
        let b = try runOnCPU(g, ["input_ids": changed], outputs: ["h.1", "ln_f"])
        let ya = a["ln_f"]!.scalars, yb = b["ln_f"]!.scalars
        for i in 0..<(4 * 32) { XCTAssertEqual(ya[i], yb[i], accuracy: 1e-5, "position \(i / 32) saw a later token") }
        XCTAssertNotEqual(Array(ya[(4 * 32)..<(5 * 32)]), Array(yb[(4 * 32)..<(5 * 32)]))
        // Item 1 is untouched.
        XCTAssertEqual(Array(ya[(5 * 32)...]), Array(yb[(5 * 32)...]))
    }

    func testBatchItemsAreIndependent() throws {
        var g = try ResNet.build(ResNetConfig(block: .bottleneck, layers: [1, 1, 1, 1], numClasses: 4, imageSize: 32, baseWidth: 4))
        fillForTest(&g, seed: 11)
        let x = image(2, 3, 32)
        let both = try runOnCPU(g, ["input": x], outputs: ["fc"])["fc"]!
        let second = try Tensor(shape: [1, 3, 32, 32], scalars: Array(x.scalars[(3 * 32 * 32)...]))
        let alone = try runOnCPU(g, ["input": second], outputs: ["fc"])["fc"]!
        for j in 0..<4 { XCTAssertEqual(both.scalars[4 + j], alone.scalars[j], accuracy: 1e-4 * max(1, abs(alone.scalars[j]))) }
    }
}
