import Quarry

// VGG: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
// Recognition", ICLR 2015 (arXiv:1409.1556), configuration D (VGG16), in torchvision's layout:
// `features.N` numbers every conv, ReLU and max-pool of one nn.Sequential (so `features.29` is
// the last ReLU and `features.30` the last pool), then `avgpool` (adaptive, 7x7) and
// `classifier.0`…`classifier.6` (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear). Dropout
// is an identity node so that every torchvision index names a value.

public struct VGGConfig: Sendable {
    /// Output channels of each conv; 0 is a 2x2 max-pool ("M" in torchvision's cfgs).
    public var layers: [Int]
    public var numClasses: Int
    public var imageSize: Int
    /// Width of the two hidden classifier layers (4096 in the paper).
    public var classifierWidth: Int

    public init(layers: [Int], numClasses: Int = 1000, imageSize: Int = 224, classifierWidth: Int = 4096) {
        self.layers = layers; self.numClasses = numClasses; self.imageSize = imageSize
        self.classifierWidth = classifierWidth
    }

    public static let vgg16 = VGGConfig(layers: [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0])
}

public enum VGG {
    public static func build(_ config: VGGConfig) throws -> Graph {
        let b = GraphBuilder()
        var x = imageInput(b, height: config.imageSize, width: config.imageSize)
        var inC = 3
        var index = 0
        b.scope("features") {
            for c in config.layers {
                if c == 0 {
                    x = b.maxPool("\(index)", x, kernel: 2, stride: 2)
                    index += 1
                } else {
                    // torchvision: kaiming_normal_(mode="fan_out"), bias 0.
                    x = b.conv2d("\(index)", x, in: inC, out: c, kernel: 3, padding: 1, bias: true)
                    x = b.activation("\(index + 1)", .relu, x)
                    index += 2
                    inC = c
                }
            }
        }
        x = try b.adaptiveAvgPool("avgpool", x, output: (7, 7))
        x = b.add("flatten", .flatten(axis: 1), x)
        b.scope("classifier") {
            let w: ParameterInit = .normal(std: 0.01)
            let hidden = config.classifierWidth
            x = b.linear("0", x, in: inC * 49, out: hidden, initializer: w)
            x = b.activation("1", .relu, x)
            x = b.identity("2", x)
            x = b.linear("3", x, in: hidden, out: hidden, initializer: w)
            x = b.activation("4", .relu, x)
            x = b.identity("5", x)
            x = b.linear("6", x, in: hidden, out: config.numClasses, initializer: w)
        }
        return b.build(outputs: [x])
    }

    static func taps(_ config: VGGConfig) -> [String] {
        let featureCount = config.layers.reduce(0) { $0 + ($1 == 0 ? 1 : 2) }
        return (0..<featureCount).map { "features.\($0)" } + ["avgpool", "flatten"] + (0..<7).map { "classifier.\($0)" }
    }
}
