import Quarry
import XCTest
@testable import QuarryModels

// Parameter counts against the published figures, to the parameter. Building a graph allocates no
// weight, so even GPT-3 175B is counted here.
final class ParameterCountTests: XCTestCase {
    func count(_ name: String) throws -> Int { try ModelZoo.entry(named: name).parameters }

    func testTorchvisionCounts() throws {
        // torchvision's model documentation ("num_params").
        XCTAssertEqual(try count("vgg16"), 138_357_544)
        XCTAssertEqual(try count("resnet18"), 11_689_512)
        XCTAssertEqual(try count("resnet34"), 21_797_672)
        XCTAssertEqual(try count("resnet50"), 25_557_032)
        XCTAssertEqual(try count("resnet101"), 44_549_160)
        XCTAssertEqual(try count("resnet152"), 60_192_808)
        XCTAssertEqual(try count("densenet121"), 7_978_856)
        XCTAssertEqual(try count("mobilenet_v2"), 3_504_872)
        XCTAssertEqual(try count("inception_v3"), 27_161_264)
    }

    func testBuffersAreNotParameters() throws {
        let g = try ModelZoo.entry(named: "resnet50").build()
        let buffers = g.parameters.filter { $0.value.isBuffer }
        XCTAssertEqual(buffers.count, 2 * 53)  // running mean and var of 53 batch norms
        XCTAssertTrue(buffers.keys.allSatisfy { $0.hasSuffix(".running_mean") || $0.hasSuffix(".running_var") })
        let all = g.parameters.values.reduce(0) { $0 + $1.count }
        XCTAssertEqual(all - g.parameterCount, buffers.values.reduce(0) { $0 + $1.count })
    }

    func testReferenceImplementationCounts() throws {
        // milesial/Pytorch-UNet UNet(n_channels=3, n_classes=2, bilinear=False).
        XCTAssertEqual(try count("unet"), 31_037_698)
        // darknet yolov4.cfg, 80 classes (learned parameters; BN running statistics excluded).
        XCTAssertEqual(try count("yolov4"), 64_363_101)
    }

    func testTransformerCounts() throws {
        XCTAssertEqual(try count("bert_base"), 109_482_240)
        XCTAssertEqual(try count("minilm_l6_h384"), 22_713_216)
        XCTAssertEqual(try count("gpt2"), 124_439_808)
        var noPooler = BERTConfig.base
        noPooler.pooler = false
        XCTAssertEqual(try BERT.build(noPooler).parameterCount, 109_482_240 - 768 * 768 - 768)
    }

    func testGPT3FamilyMatchesTable() throws {
        for row in GPTConfig.gpt3Table {
            let cfg = GPTConfig.gpt3(layers: row.layers, dModel: row.dModel, heads: row.heads)
            let n = try count(row.name)
            // The closed form, written out independently of the builder.
            let d = row.dModel, l = row.layers
            XCTAssertEqual(n, 50257 * d + 2048 * d + l * (12 * d * d + 13 * d) + 2 * d, row.name)
            XCTAssertEqual(n, GPT.closedFormParameterCount(cfg), row.name)
            // Table 2.1 prints rounded counts; these agree within 2% (350M: 355.9M; 2.7B: 2.65B).
            XCTAssertEqual(Double(n), row.published, accuracy: 0.02 * row.published, row.name)
        }
        let g = try ModelZoo.entry(named: "gpt3_175b").build()
        XCTAssertTrue(g.parameters.values.allSatisfy { $0.value == nil }, "large configs stay unmaterialised")
    }

    func testSmallModelCountsFromTheirFormulas() throws {
        // nn.LSTM: per layer and direction 4H(I + H) + 8H.
        let h = 256
        let l0 = 4 * h * (128 + h) + 8 * h, l1 = 4 * h * (2 * h + h) + 8 * h
        XCTAssertEqual(try count("lstm"), 2 * (l0 + l1))
        // Autoencoder (base 32, latent 16): convs with biases, then the mirrored decoder.
        let enc = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128) + (128 * 16 + 16)
        let dec = (16 * 128 + 128) + (128 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 3 * 9 + 3)
        XCTAssertEqual(try count("conv_autoencoder"), enc + dec)
        // Plain CNN [32, 64, 128], 10 classes: conv (no bias) + BN (2C) per stage, linear head.
        let plain = (3 * 32 * 9 + 64) + (32 * 64 * 9 + 128) + (64 * 128 * 9 + 256) + (128 * 10 + 10)
        XCTAssertEqual(try count("plain_cnn"), plain)
    }

    func testRegistryNamesAreUniqueAndLowerCase() {
        let names = ModelZoo.all.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertTrue(names.allSatisfy { $0 == $0.lowercased() })
        for required in ["resnet50", "mobilenet_v2", "vgg16", "bert_base", "minilm_l6_h384", "gpt2", "gpt3_125m",
                         "gpt3_175b", "inception_v3", "densenet121", "unet", "yolov4", "lstm", "plain_cnn",
                         "conv_autoencoder", "resnet18"] {
            XCTAssertTrue(names.contains(required), required)
        }
        XCTAssertThrowsError(try ModelZoo.entry(named: "resnet51"))
    }
}
