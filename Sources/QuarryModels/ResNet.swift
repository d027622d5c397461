import Quarry

// ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
// CVPR 2016 (arXiv:1512.03385), in torchvision's "v1.5" layout: the bottleneck's stride sits on
// its 3x3 convolution rather than the first 1x1, and downsampling shortcuts are a 1x1 conv + BN
// (option B). Names are torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
// `avgpool`, `fc`), so a torchvision state_dict fills the parameters key for key; the fx-style
// names of repeated activations (`relu`, `relu_1`, `relu_2`) follow `create_feature_extractor`.

public struct ResNetConfig: Sendable {
    public enum Block: Sendable { case basic, bottleneck }
    public var block: Block
    /// Blocks in layer1…layer4.
    public var layers: [Int]
    public var numClasses: Int
    public var imageSize: Int
    /// Channels of the stem and of layer1's 3x3 convs (64 in the paper); each stage doubles them.
    /// Smaller values give cheap variants of the same structure for tests.
    public var baseWidth: Int

    public init(block: Block, layers: [Int], numClasses: Int = 1000, imageSize: Int = 224, baseWidth: Int = 64) {
        self.block = block; self.layers = layers; self.numClasses = numClasses; self.imageSize = imageSize
        self.baseWidth = baseWidth
    }

    public static func depth(_ depth: Int) throws -> ResNetConfig {
        switch depth {
        case 18: return ResNetConfig(block: .basic, layers: [2, 2, 2, 2])
        case 34: return ResNetConfig(block: .basic, layers: [3, 4, 6, 3])
        case 50: return ResNetConfig(block: .bottleneck, layers: [3, 4, 6, 3])
        case 101: return ResNetConfig(block: .bottleneck, layers: [3, 4, 23, 3])
        case 152: return ResNetConfig(block: .bottleneck, layers: [3, 8, 36, 3])
        default: throw QuarryError.invalidArgument("ResNet depth \(depth) is not one of 18, 34, 50, 101, 152")
        }
    }
}

public enum ResNet {
    public static func build(_ config: ResNetConfig) throws -> Graph {
        guard config.layers.count == 4, config.layers.allSatisfy({ $0 >= 1 }) else {
            throw QuarryError.invalidArgument("ResNet needs four stages of at least one block, got \(config.layers)")
        }
        let b = GraphBuilder()
        var x = imageInput(b, height: config.imageSize, width: config.imageSize)
        let base = config.baseWidth
        x = b.conv2d("conv1", x, in: 3, out: base, kernel: 7, stride: 2, padding: 3)
        x = b.batchNorm("bn1", x, channels: base)
        x = b.activation("relu", .relu, x)
        x = b.maxPool("maxpool", x, kernel: 3, stride: 2, padding: 1)

        let expansion = config.block == .bottleneck ? 4 : 1
        var inC = base
        for (stage, blocks) in config.layers.enumerated() {
            let width = base << stage
            try b.scope("layer\(stage + 1)") {
                for i in 0..<blocks {
                    let stride = (i == 0 && stage > 0) ? 2 : 1
                    x = b.scope("\(i)") {
                        config.block == .bottleneck
                            ? bottleneck(b, x, in: inC, width: width, stride: stride)
                            : basic(b, x, in: inC, width: width, stride: stride)
                    }
                    x = b.identity("\(i)", x)
                    inC = width * expansion
                }
                _ = try b.shapeForOneItem(x)  // a too-small image fails here, naming the stage
            }
            x = b.identity("layer\(stage + 1)", x)
        }
        x = b.add("avgpool", .globalAvgPool, x)
        x = b.add("flatten", .flatten(axis: 1), x)
        x = b.linear("fc", x, in: inC, out: config.numClasses)
        return b.build(outputs: [x])
    }

    /// Shortcut: identity, or 1x1 conv + BN when the shape changes (`downsample.0`, `downsample.1`).
    static func shortcut(_ b: GraphBuilder, _ x: Value, in inC: Int, out outC: Int, stride: Int) -> Value {
        guard stride != 1 || inC != outC else { return x }
        let d = b.conv2d("downsample.0", x, in: inC, out: outC, kernel: 1, stride: stride)
        return b.batchNorm("downsample.1", d, channels: outC)
    }

    static func basic(_ b: GraphBuilder, _ x: Value, in inC: Int, width: Int, stride: Int) -> Value {
        var y = b.conv2d("conv1", x, in: inC, out: width, kernel: 3, stride: stride, padding: 1)
        y = b.batchNorm("bn1", y, channels: width)
        y = b.activation("relu", .relu, y)
        y = b.conv2d("conv2", y, in: width, out: width, kernel: 3, padding: 1)
        y = b.batchNorm("bn2", y, channels: width)
        let s = shortcut(b, x, in: inC, out: width, stride: stride)
        y = b.sum("add", y, s)
        return b.activation("relu_1", .relu, y)
    }

    static func bottleneck(_ b: GraphBuilder, _ x: Value, in inC: Int, width: Int, stride: Int) -> Value {
        let outC = width * 4
        var y = b.conv2d("conv1", x, in: inC, out: width, kernel: 1)
        y = b.batchNorm("bn1", y, channels: width)
        y = b.activation("relu", .relu, y)
        y = b.conv2d("conv2", y, in: width, out: width, kernel: 3, stride: stride, padding: 1)
        y = b.batchNorm("bn2", y, channels: width)
        y = b.activation("relu_1", .relu, y)
        y = b.conv2d("conv3", y, in: width, out: outC, kernel: 1)
        y = b.batchNorm("bn3", y, channels: outC)
        let s = shortcut(b, x, in: inC, out: outC, stride: stride)
        y = b.sum("add", y, s)
        return b.activation("relu_2", .relu, y)
    }

    /// Taps: the stem, every block (`layer3.5`), every stage, the pooled vector and the logits.
    static func taps(_ config: ResNetConfig) -> [String] {
        var t = ["conv1", "bn1", "relu", "maxpool"]
        for (stage, n) in config.layers.enumerated() {
            t += (0..<n).map { "layer\(stage + 1).\($0)" } + ["layer\(stage + 1)"]
        }
        return t + ["avgpool", "flatten", "fc"]
    }
}
