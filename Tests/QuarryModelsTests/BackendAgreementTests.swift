import Quarry
import QuarryCPU
import QuarryOpenCL
import XCTest
@testable import QuarryModels

// A small model of every family gives the same features on the OpenCL backend (PoCL here) as on
// the CPU backend. Each backend's kernels are checked against float64 references op by op
// elsewhere; this checks the whole path — passes, memory plan, weights kept on the device,
// fallbacks — on real architectures. Differences come only from float32 summation order, so the
// bound is relative to the output's largest magnitude.

final class BackendAgreementTests: XCTestCase {
    var rng = SeededGenerator(seed: 21)

    func openCL() throws -> OpenCLDevice {
        guard let d = OpenCLRuntime.devices().first else {
            throw XCTSkip("no OpenCL device: \(OpenCLRuntime.discoveryError ?? "none found")")
        }
        return d
    }

    func image(_ n: Int, _ size: Int) -> Tensor { Tensor.random(shape: [n, 3, size, size], using: &rng) }

    func ids(_ n: Int, _ s: Int, vocab: Int) -> Tensor {
        let t = Tensor(uninitializedShape: [n, s])
        for i in 0..<t.count { t[flat: i] = Float(Int.random(in: 0..<vocab, using: &rng)) }
        return t
    }

    func agree(_ name: String, _ graph: Graph, _ inputs: [String: Tensor], taps: [String],
               file: StaticString = #filePath, line: UInt = #line) throws {
        var g = graph
        fillForTest(&g, seed: 11)
        let cpu = try CPUDevice(threads: 2).compile(g, outputs: taps).run(inputs)
        let cl = try openCL().compile(g, outputs: taps).run(inputs)
        for tap in taps {
            let a = try XCTUnwrap(cpu[tap]), b = try XCTUnwrap(cl[tap])
            XCTAssertEqual(a.shape, b.shape, "\(name) \(tap)", file: file, line: line)
            let scale = max(a.scalars.map(abs).max() ?? 0, 1e-6)
            var worst: Float = 0
            for i in 0..<a.count {
                XCTAssertTrue(b[flat: i].isFinite, "\(name) \(tap): OpenCL element \(i) is \(b[flat: i])", file: file, line: line)
                worst = max(worst, abs(a[flat: i] - b[flat: i]) / scale)
            }
            XCTAssertLessThan(worst, 2e-4, "\(name) \(tap): CPU and OpenCL differ by \(worst) of the largest value", file: file, line: line)
        }
    }

    func testImageFamilies() throws {
        _ = try openCL()
        try agree("plain_cnn", try PlainCNN.build(PlainCNNConfig(channels: [8, 16], numClasses: 5, imageSize: 12)),
                  ["input": image(2, 12)], taps: ["classifier"])
        try agree("vgg", try VGG.build(VGGConfig(layers: [8, 0, 16, 16, 0], numClasses: 10, imageSize: 28, classifierWidth: 32)),
                  ["input": image(2, 28)], taps: ["classifier.6"])
        try agree("resnet", try ResNet.build(ResNetConfig(block: .bottleneck, layers: [2, 1, 1, 1], numClasses: 7, imageSize: 40, baseWidth: 8)),
                  ["input": image(2, 40)], taps: ["layer2", "avgpool", "fc"])
        try agree("inception_v3", try InceptionV3.build(InceptionV3Config(numClasses: 10, imageSize: 75, auxLogits: false, widthDivisor: 16)),
                  ["input": image(1, 75)], taps: ["avgpool"])
        try agree("densenet", try DenseNet.build(DenseNetConfig(growthRate: 8, blocks: [2, 3, 2, 2], initialFeatures: 16, numClasses: 6, imageSize: 32)),
                  ["input": image(2, 32)], taps: ["classifier"])
        try agree("mobilenet_v2", try MobileNetV2.build(MobileNetV2Config(widthMultiplier: 0.25, numClasses: 10, imageSize: 32)),
                  ["input": image(2, 32)], taps: ["features", "classifier.1"])
        try agree("unet", try UNet.build(UNetConfig(numClasses: 3, baseWidth: 4, imageSize: 32)),
                  ["input": image(1, 32)], taps: ["outc"])
        try agree("yolov4", try YOLOv4.build(YOLOv4Config(imageSize: 64, widthDivisor: 16)),
                  ["input": image(1, 64)], taps: try YOLOv4.build(YOLOv4Config(imageSize: 64, widthDivisor: 16)).outputs)
        try agree("conv_autoencoder", try ConvAutoencoder.build(ConvAutoencoderConfig(baseWidth: 4, latentChannels: 5, imageSize: 16)),
                  ["input": image(2, 16)], taps: ["encoder", "decoder"])
    }

    func testSequenceFamilies() throws {
        _ = try openCL()
        try agree("lstm", try LSTMNetwork.build(LSTMNetworkConfig(inputSize: 6, hiddenSize: 5, layers: 2, bidirectional: true)),
                  ["input": Tensor.random(shape: [2, 4, 6], using: &rng)], taps: ["lstm"])
        let bert = BERTConfig(vocabSize: 50, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 64, maxPositions: 16, sequenceLength: 6)
        let mask = try Tensor(shape: [2, 6], scalars: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        try agree("bert", try BERT.build(bert), ["input_ids": ids(2, 6, vocab: 50), "attention_mask": mask],
                  taps: ["encoder.layer.1", "pooler"])
        let gpt = GPTConfig(vocabSize: 40, contextLength: 16, layers: 2, heads: 4, hiddenSize: 32, sequenceLength: 5)
        try agree("gpt", try GPT.build(gpt), ["input_ids": ids(2, 5, vocab: 40)], taps: ["ln_f"])
    }
}
