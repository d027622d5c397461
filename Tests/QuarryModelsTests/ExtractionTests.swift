import Quarry
import QuarryCPU
import XCTest
@testable import QuarryModels

final class ExtractionTests: XCTestCase {
    func testRequestingATapRunsOnlyWhatItNeeds() throws {
        var g = try ResNet.build(ResNetConfig(block: .basic, layers: [1, 1, 1, 1], imageSize: 32, baseWidth: 8))
        fillForTest(&g, seed: 1)
        let compiled = try CPUDevice(threads: 1).compile(g, outputs: ["layer2"])
        let names = compiled.graph.nodes.map(\.name)
        XCTAssertFalse(names.contains { $0.hasPrefix("layer3") || $0.hasPrefix("layer4") || $0 == "fc" }, "\(names)")
        XCTAssertTrue(names.contains { $0.hasPrefix("layer2") })
    }

    func testMaterializeFollowsTheReferenceInit() throws {
        var g = try PlainCNN.build(PlainCNNConfig(channels: [16], imageSize: 8))
        XCTAssertFalse(g.untrained)
        g.materializeParameters(seed: 42)
        XCTAssertTrue(g.untrained, "features from initialised weights are labelled untrained")
        let p = g.parameters
        XCTAssertEqual(p["features.0.bn.weight"]?.value?.scalars, [Float](repeating: 1, count: 16))
        XCTAssertEqual(p["features.0.bn.bias"]?.value?.scalars, [Float](repeating: 0, count: 16))
        XCTAssertEqual(p["features.0.bn.running_mean"]?.value?.scalars, [Float](repeating: 0, count: 16))
        XCTAssertEqual(p["features.0.bn.running_var"]?.value?.scalars, [Float](repeating: 1, count: 16))
        // He (fan_out = 16 * 9): the sample standard deviation is near sqrt(2 / 144).
        let w = try XCTUnwrap(p["features.0.conv.weight"]?.value).scalars.map(Double.init)
        let std = (w.map { $0 * $0 }.reduce(0, +) / Double(w.count)).squareRoot()
        XCTAssertEqual(std, (2.0 / 144).squareRoot(), accuracy: 0.2 * (2.0 / 144).squareRoot())
        // Same seed, same weights.
        var h = try PlainCNN.build(PlainCNNConfig(channels: [16], imageSize: 8))
        h.materializeParameters(seed: 42)
        XCTAssertEqual(h.parameters["classifier.weight"]?.value?.scalars, p["classifier.weight"]?.value?.scalars)
    }

    func testParameterNamesAreCheckpointKeys() throws {
        let resnet = try ModelZoo.entry(named: "resnet50").build().parameters
        for key in ["conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
                    "layer4.2.conv3.weight", "fc.weight", "fc.bias"] {
            XCTAssertNotNil(resnet[key], key)
        }
        XCTAssertEqual(resnet["layer1.0.conv2.weight"]?.shape, [64, 64, 3, 3])
        XCTAssertEqual(resnet["layer2.0.conv2.weight"]?.shape, [128, 128, 3, 3])  // v1.5: stride on the 3x3
        let bert = try ModelZoo.entry(named: "bert_base").build().parameters
        for key in ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight",
                    "encoder.layer.11.attention.self.query.weight", "encoder.layer.0.attention.output.LayerNorm.bias",
                    "encoder.layer.3.intermediate.dense.weight", "encoder.layer.3.output.dense.bias", "pooler.dense.weight"] {
            XCTAssertNotNil(bert[key], key)
        }
        let gpt2 = try ModelZoo.entry(named: "gpt2").build().parameters
        XCTAssertEqual(gpt2["h.0.attn.c_attn.weight"]?.shape, [768, 2304], "Conv1D keeps the checkpoint's [in, out]")
        XCTAssertEqual(gpt2["h.11.mlp.c_fc.weight"]?.shape, [768, 3072])
        XCTAssertNotNil(gpt2["ln_f.weight"])
        let lstm = try ModelZoo.entry(named: "lstm").build().parameters
        XCTAssertEqual(lstm["lstm.weight_ih_l1_reverse"]?.shape, [1024, 512])
        XCTAssertEqual(lstm["lstm.bias_hh_l0"]?.shape, [1024])
        let vgg = try ModelZoo.entry(named: "vgg16").build().parameters
        XCTAssertEqual(vgg["features.28.weight"]?.shape, [512, 512, 3, 3])
        XCTAssertEqual(vgg["classifier.0.weight"]?.shape, [4096, 25088])
        let mobilenet = try ModelZoo.entry(named: "mobilenet_v2").build().parameters
        XCTAssertEqual(mobilenet["features.1.conv.0.0.weight"]?.shape, [32, 1, 3, 3])
        XCTAssertEqual(mobilenet["features.2.conv.1.0.weight"]?.shape, [96, 1, 3, 3])
        XCTAssertEqual(mobilenet["features.17.conv.3.running_mean"]?.shape, [320])
        let densenet = try ModelZoo.entry(named: "densenet121").build().parameters
        XCTAssertEqual(densenet["features.denseblock4.denselayer16.conv2.weight"]?.shape, [32, 128, 3, 3])
        XCTAssertEqual(densenet["features.transition3.conv.weight"]?.shape, [512, 1024, 1, 1])
        let inception = try ModelZoo.entry(named: "inception_v3").build().parameters
        XCTAssertEqual(inception["Mixed_7c.branch3x3dbl_3b.conv.weight"]?.shape, [384, 384, 3, 1])
        XCTAssertEqual(inception["AuxLogits.fc.weight"]?.shape, [1000, 768])
        let unet = try ModelZoo.entry(named: "unet").build().parameters
        XCTAssertEqual(unet["up1.up.weight"]?.shape, [1024, 512, 2, 2])
        XCTAssertEqual(unet["down4.maxpool_conv.1.double_conv.3.weight"]?.shape, [1024, 1024, 3, 3])
        let yolo = try ModelZoo.entry(named: "yolov4").build().parameters
        XCTAssertEqual(yolo["down3.resblock.module_list.7.1.conv.0.weight"]?.shape, [128, 128, 3, 3])
        XCTAssertEqual(yolo["head.conv18.conv.0.bias"]?.shape, [255])
        XCTAssertEqual(yolo["neek.conv4.conv.1.running_var"]?.shape, [512])
    }

    func testPooling() throws {
        var rng = SeededGenerator(seed: 3)
        let x = Tensor.random(shape: [2, 3, 4], in: -1...1, using: &rng)  // [N, S, D]
        let mask = try Tensor(shape: [2, 3], scalars: [1, 1, 1, 1, 1, 0])
        let v = x.scalars.map(Double.init)
        func at(_ n: Int, _ s: Int, _ d: Int) -> Double { v[(n * 3 + s) * 4 + d] }

        let cls = try FeaturePooling.clsToken.apply(to: x)
        XCTAssertEqual(cls.shape, [2, 4])
        for n in 0..<2 { for d in 0..<4 { XCTAssertEqual(Double(cls.scalars[n * 4 + d]), at(n, 0, d)) } }

        let mean = try FeaturePooling.maskedMean.apply(to: x, attentionMask: mask)
        for d in 0..<4 {
            XCTAssertEqual(Double(mean.scalars[d]), (at(0, 0, d) + at(0, 1, d) + at(0, 2, d)) / 3, accuracy: 1e-6)
            XCTAssertEqual(Double(mean.scalars[4 + d]), (at(1, 0, d) + at(1, 1, d)) / 2, accuracy: 1e-6)
        }

        let last = try FeaturePooling.lastToken.apply(to: x, attentionMask: mask)
        for d in 0..<4 {
            XCTAssertEqual(Double(last.scalars[d]), at(0, 2, d))
            XCTAssertEqual(Double(last.scalars[4 + d]), at(1, 1, d), "last token with mask 1")
        }

        let maxed = try FeaturePooling.maskedMax.apply(to: x, attentionMask: mask)
        for d in 0..<4 {
            XCTAssertEqual(Double(maxed.scalars[d]), max(at(0, 0, d), at(0, 1, d), at(0, 2, d)))
            XCTAssertEqual(Double(maxed.scalars[4 + d]), max(at(1, 0, d), at(1, 1, d)), "max over the tokens with mask 1")
        }

        let img = Tensor.random(shape: [2, 3, 5, 7], in: -1...1, using: &rng)
        let gap = try FeaturePooling.globalAverage.apply(to: img)
        XCTAssertEqual(gap.shape, [2, 3])
        let iv = img.scalars.map(Double.init)
        for i in 0..<6 {
            XCTAssertEqual(Double(gap.scalars[i]), iv[(i * 35)..<((i + 1) * 35)].reduce(0, +) / 35, accuracy: 1e-6)
        }
        XCTAssertEqual(try FeaturePooling.none.apply(to: img).shape, [2, 105])

        XCTAssertThrowsError(try FeaturePooling.clsToken.apply(to: img))
        XCTAssertThrowsError(try FeaturePooling.maskedMean.apply(to: x, attentionMask: Tensor(shape: [2, 4], repeating: 1)))
        XCTAssertThrowsError(try FeaturePooling.lastToken.apply(to: x, attentionMask: Tensor(shape: [2, 3], repeating: 0)))
        XCTAssertThrowsError(try FeaturePooling.maskedMax.apply(to: x, attentionMask: Tensor(shape: [2, 3], repeating: 0)))
    }

    func testL2Normalisation() throws {
        let x = try Tensor(shape: [3, 2], scalars: [3, 4, 0, 0, -1, 1])
        let y = l2Normalized(x).scalars
        XCTAssertEqual(y[0], 0.6, accuracy: 1e-7); XCTAssertEqual(y[1], 0.8, accuracy: 1e-7)
        XCTAssertEqual(y[2], 0); XCTAssertEqual(y[3], 0)
        XCTAssertEqual(y[4], -Float(0.5).squareRoot(), accuracy: 1e-7)
        XCTAssertEqual(x.scalars, [3, 4, 0, 0, -1, 1], "the input is not modified")
        let pooled = try FeaturePooling.none.apply(to: x, l2Normalize: true)
        XCTAssertEqual(pooled.scalars, y)
    }
}
