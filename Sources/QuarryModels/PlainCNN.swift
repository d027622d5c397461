import Quarry

// A plain CNN: a small configurable stack of 3x3 conv → BN → ReLU → 2x2 max-pool stages, global
// average pooling and a linear classifier — the LeNet / VGG pattern (Y. LeCun et al., "Gradient-
// Based Learning Applied to Document Recognition", Proc. IEEE 1998; Simonyan & Zisserman 2015)
// at a size that trains from scratch on CIFAR-like data. Names follow an nn.Sequential per stage:
// `features.K.conv`, `features.K.bn`, `features.K.relu`, `features.K.pool`, `features.K` (the
// stage output), `avgpool`, `classifier`.

public struct PlainCNNConfig: Sendable {
    public var inputChannels: Int
    public var channels: [Int]
    public var numClasses: Int
    public var imageSize: Int
    public init(inputChannels: Int = 3, channels: [Int] = [32, 64, 128], numClasses: Int = 10, imageSize: Int = 32) {
        self.inputChannels = inputChannels; self.channels = channels; self.numClasses = numClasses
        self.imageSize = imageSize
    }
}

public enum PlainCNN {
    public static func build(_ config: PlainCNNConfig) throws -> Graph {
        guard !config.channels.isEmpty, config.imageSize >> config.channels.count >= 1 else {
            throw QuarryError.invalidArgument(
                "plain CNN: \(config.channels.count) pooling stages need an input of at least \(1 << config.channels.count) pixels, got \(config.imageSize)")
        }
        let b = GraphBuilder()
        var x = imageInput(b, channels: config.inputChannels, height: config.imageSize, width: config.imageSize)
        var inC = config.inputChannels
        b.scope("features") {
            for (k, c) in config.channels.enumerated() {
                let y = b.scope("\(k)") {
                    var y = b.conv2d("conv", x, in: inC, out: c, kernel: 3, padding: 1)
                    y = b.batchNorm("bn", y, channels: c)
                    y = b.activation("relu", .relu, y)
                    return b.maxPool("pool", y, kernel: 2, stride: 2)
                }
                x = b.identity("\(k)", y)
                inC = c
            }
        }
        x = b.add("avgpool", .globalAvgPool, x)
        x = b.add("flatten", .flatten(axis: 1), x)
        x = b.linear("classifier", x, in: inC, out: config.numClasses)
        return b.build(outputs: [x])
    }

    static func taps(_ config: PlainCNNConfig) -> [String] {
        config.channels.indices.map { "features.\($0)" } + ["avgpool", "flatten", "classifier"]
    }
}
