import Quarry

// MobileNetV2: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted
// Residuals and Linear Bottlenecks", CVPR 2018 (arXiv:1801.04381), width 1.0, in torchvision's
// layout: `features.0` (Conv2dNormActivation: `.0` conv, `.1` BN, `.2` ReLU6), inverted residuals
// `features.1`…`features.17` (`conv.0.*` expand, `conv.1.*` depthwise, `conv.2` project, `conv.3`
// BN; the t = 1 block has no expansion, so its depthwise is `conv.0.*` and projection `conv.1`),
// `features.18` (1x1 to 1280), then `classifier.0` (Dropout) and `classifier.1` (Linear).

public struct MobileNetV2Config: Sendable {
    public var widthMultiplier: Double
    public var numClasses: Int
    public var imageSize: Int
    public init(widthMultiplier: Double = 1.0, numClasses: Int = 1000, imageSize: Int = 224) {
        self.widthMultiplier = widthMultiplier; self.numClasses = numClasses; self.imageSize = imageSize
    }
}

public enum MobileNetV2 {
    /// (expansion t, channels c, repeats n, first stride s) from the paper's Table 2.
    static let settings: [(t: Int, c: Int, n: Int, s: Int)] = [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ]

    /// torchvision's `_make_divisible`: round to a multiple of 8, never more than 10% down.
    static func makeDivisible(_ v: Double, _ divisor: Int = 8) -> Int {
        var n = max(divisor, (Int(v + Double(divisor) / 2) / divisor) * divisor)
        if Double(n) < 0.9 * v { n += divisor }
        return n
    }

    static func convBNReLU6(_ b: GraphBuilder, _ name: String, _ x: Value, in i: Int, out o: Int, kernel k: Int,
                            stride s: Int = 1, groups: Int = 1) -> Value {
        b.scope(name) {
            var y = b.conv2d("0", x, in: i, out: o, kernel: k, stride: s, padding: (k - 1) / 2, groups: groups)
            y = b.batchNorm("1", y, channels: o)
            return b.activation("2", .relu6, y)
        }
    }

    public static func build(_ config: MobileNetV2Config) throws -> Graph {
        let b = GraphBuilder()
        var x = imageInput(b, height: config.imageSize, width: config.imageSize)
        var inC = makeDivisible(32 * config.widthMultiplier)
        let lastC = makeDivisible(1280 * max(1.0, config.widthMultiplier))
        var index = 0
        b.scope("features") {
            x = convBNReLU6(b, "0", x, in: 3, out: inC, kernel: 3, stride: 2)
            x = b.identity("0", x)
            index = 1
            for (t, c, n, s) in settings {
                let outC = makeDivisible(Double(c) * config.widthMultiplier)
                for r in 0..<n {
                    let stride = r == 0 ? s : 1
                    let y = b.scope("\(index)") {
                        invertedResidual(b, x, in: inC, out: outC, stride: stride, expansion: t)
                    }
                    x = b.identity("\(index)", y)
                    inC = outC
                    index += 1
                }
            }
            x = convBNReLU6(b, "\(index)", x, in: inC, out: lastC, kernel: 1)
            x = b.identity("\(index)", x)
        }
        _ = try b.shapeForOneItem(x)
        x = b.identity("features", x)
        x = b.add("adaptive_avg_pool2d", .globalAvgPool, x)
        x = b.add("flatten", .flatten(axis: 1), x)
        b.scope("classifier") {
            x = b.identity("0", x)
            x = b.linear("1", x, in: lastC, out: config.numClasses, initializer: .normal(std: 0.01))
        }
        return b.build(outputs: [x])
    }

    static func invertedResidual(_ b: GraphBuilder, _ x: Value, in i: Int, out o: Int, stride: Int, expansion t: Int) -> Value {
        let hidden = i * t
        var y = x
        b.scope("conv") {
            var k = 0
            if t != 1 {
                y = convBNReLU6(b, "0", y, in: i, out: hidden, kernel: 1)
                k = 1
            }
            y = convBNReLU6(b, "\(k)", y, in: hidden, out: hidden, kernel: 3, stride: stride, groups: hidden)
            y = b.conv2d("\(k + 1)", y, in: hidden, out: o, kernel: 1)
            y = b.batchNorm("\(k + 2)", y, channels: o)
        }
        return stride == 1 && i == o ? b.sum("add", x, y) : y
    }

    static func taps() -> [String] {
        (0...18).map { "features.\($0)" } + ["features", "adaptive_avg_pool2d", "flatten", "classifier.1"]
    }
}
