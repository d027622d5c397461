import Quarry

// DenseNet: G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected
// Convolutional Networks", CVPR 2017 (arXiv:1608.06993), DenseNet-BC in torchvision's layout:
// `features.conv0/norm0/relu0/pool0`, `features.denseblockK.denselayerL.{norm1,relu1,conv1,norm2,
// relu2,conv2}`, `features.transitionK.{norm,relu,conv,pool}`, `features.norm5`, `classifier`.
// A dense layer reads the concatenation of every earlier output in its block; the graph keeps
// that concatenation as a running value (`features.denseblockK.cat_L`), one concat a layer.

public struct DenseNetConfig: Sendable {
    public var growthRate: Int
    public var blocks: [Int]
    public var initialFeatures: Int
    /// Bottleneck width = bnSize * growthRate.
    public var bnSize: Int
    public var numClasses: Int
    public var imageSize: Int

    public init(growthRate: Int = 32, blocks: [Int] = [6, 12, 24, 16], initialFeatures: Int = 64, bnSize: Int = 4,
                numClasses: Int = 1000, imageSize: Int = 224) {
        self.growthRate = growthRate; self.blocks = blocks; self.initialFeatures = initialFeatures
        self.bnSize = bnSize; self.numClasses = numClasses; self.imageSize = imageSize
    }

    public static let densenet121 = DenseNetConfig()
}

public enum DenseNet {
    public static func build(_ config: DenseNetConfig) throws -> Graph {
        let b = GraphBuilder()
        var x = imageInput(b, height: config.imageSize, width: config.imageSize)
        var c = config.initialFeatures
        b.scope("features") {
            // torchvision's DenseNet initialises convs with kaiming_normal_ over fan_in.
            x = b.conv2d("conv0", x, in: 3, out: c, kernel: 7, stride: 2, padding: 3, fanIn: true)
            x = b.batchNorm("norm0", x, channels: c)
            x = b.activation("relu0", .relu, x)
            x = b.maxPool("pool0", x, kernel: 3, stride: 2, padding: 1)
            for (k, layers) in config.blocks.enumerated() {
                b.scope("denseblock\(k + 1)") {
                    for l in 1...layers {
                        let new = b.scope("denselayer\(l)") { denseLayer(b, x, in: c, config: config) }
                        x = b.concat(l == 1 ? "cat" : "cat_\(l - 1)", [x, new])
                        c += config.growthRate
                    }
                }
                x = b.identity("denseblock\(k + 1)", x)
                if k != config.blocks.count - 1 {
                    b.scope("transition\(k + 1)") {
                        x = b.batchNorm("norm", x, channels: c)
                        x = b.activation("relu", .relu, x)
                        x = b.conv2d("conv", x, in: c, out: c / 2, kernel: 1, fanIn: true)
                        x = b.avgPool("pool", x, kernel: 2, stride: 2)
                    }
                    c /= 2
                    x = b.identity("transition\(k + 1)", x)
                }
            }
            x = b.batchNorm("norm5", x, channels: c)
        }
        _ = try b.shapeForOneItem(x)
        x = b.identity("features", x)
        x = b.activation("relu", .relu, x)
        x = b.add("adaptive_avg_pool2d", .globalAvgPool, x)
        x = b.add("flatten", .flatten(axis: 1), x)
        x = b.linear("classifier", x, in: c, out: config.numClasses)
        return b.build(outputs: [x])
    }

    static func denseLayer(_ b: GraphBuilder, _ x: Value, in c: Int, config: DenseNetConfig) -> Value {
        let mid = config.bnSize * config.growthRate
        var y = b.batchNorm("norm1", x, channels: c)
        y = b.activation("relu1", .relu, y)
        y = b.conv2d("conv1", y, in: c, out: mid, kernel: 1, fanIn: true)
        y = b.batchNorm("norm2", y, channels: mid)
        y = b.activation("relu2", .relu, y)
        return b.conv2d("conv2", y, in: mid, out: config.growthRate, kernel: 3, padding: 1, fanIn: true)
    }

    static func taps(_ config: DenseNetConfig) -> [String] {
        var t = ["features.conv0", "features.pool0"]
        for k in 1...config.blocks.count {
            t.append("features.denseblock\(k)")
            if k < config.blocks.count { t.append("features.transition\(k)") }
        }
        return t + ["features.norm5", "features", "adaptive_avg_pool2d", "flatten", "classifier"]
    }
}
