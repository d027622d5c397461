import Quarry

// Inception-v3: C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna, "Rethinking the Inception
// Architecture for Computer Vision", CVPR 2016 (arXiv:1512.00567), in torchvision's layout:
// BasicConv2d modules (`Conv2d_1a_3x3.conv`, `.bn` with eps 0.001, ReLU), `Mixed_5b`…`Mixed_7c`
// with torchvision's branch names (`branch1x1`, `branch5x5_1`, `branch3x3dbl_2`, `branch_pool`…),
// the auxiliary classifier `AuxLogits` (fed by Mixed_6e, counted in the published 27,161,264),
// `avgpool`, `fc`. The input is 299x299. torchvision's checkpoint runs with transform_input=True,
// which turns ImageNet-normalised input into (x - 0.5) / 0.5; the zoo's preprocessing applies that
// normalisation directly (mean 0.5, std 0.5), so the graph has no transform of its own.

public struct InceptionV3Config: Sendable {
    public var numClasses: Int
    public var imageSize: Int
    /// The auxiliary head needs Mixed_6e to be at least 17x17 (input about 299).
    public var auxLogits: Bool
    /// Divides every internal width (1 = the paper's; all of them are multiples of 16); larger
    /// values give cheap variants of the same structure for tests.
    public var widthDivisor: Int
    public init(numClasses: Int = 1000, imageSize: Int = 299, auxLogits: Bool = true, widthDivisor: Int = 1) {
        self.numClasses = numClasses; self.imageSize = imageSize; self.auxLogits = auxLogits
        self.widthDivisor = widthDivisor
    }
}

public enum InceptionV3 {
    /// torchvision's BasicConv2d: conv (no bias), BN (eps 0.001), ReLU. Weights: truncated normal, std 0.1 in torchvision; a plain normal here.
    static func basic(_ b: GraphBuilder, _ w: Widths, _ name: String, _ x: Value, _ i: Int, _ o: Int, kernel: (Int, Int),
                      stride: Int = 1, padding: (Int, Int) = (0, 0), std: Float = 0.1) -> Value {
        // The image's 3 channels are not scaled; every internal width is.
        let (i, o) = (i == 3 ? 3 : w(i), w(o))
        let y = b.scope(name) {
            let c = b.conv2d("conv", x, in: i, out: o, kernel: kernel, stride: (stride, stride),
                             padding: Padding2D(padding.0, padding.1), initializer: .normal(std: std))
            return b.batchNorm("bn", c, channels: o, epsilon: 0.001)
        }
        // The module's output is its ReLU: the node takes the module's name.
        return b.activation(name, .relu, y)
    }

    static func basic(_ b: GraphBuilder, _ w: Widths, _ name: String, _ x: Value, _ i: Int, _ o: Int, k: Int, stride: Int = 1, pad: Int = 0) -> Value {
        basic(b, w, name, x, i, o, kernel: (k, k), stride: stride, padding: (pad, pad))
    }

    static func inceptionA(_ b: GraphBuilder, _ w: Widths, _ x: Value, _ c: Int, poolFeatures: Int) -> Value {
        let b1 = basic(b, w, "branch1x1", x, c, 64, k: 1)
        var b5 = basic(b, w, "branch5x5_1", x, c, 48, k: 1)
        b5 = basic(b, w, "branch5x5_2", b5, 48, 64, k: 5, pad: 2)
        var bd = basic(b, w, "branch3x3dbl_1", x, c, 64, k: 1)
        bd = basic(b, w, "branch3x3dbl_2", bd, 64, 96, k: 3, pad: 1)
        bd = basic(b, w, "branch3x3dbl_3", bd, 96, 96, k: 3, pad: 1)
        var bp = b.avgPool("avg_pool2d", x, kernel: 3, stride: 1, padding: 1)
        bp = basic(b, w, "branch_pool", bp, c, poolFeatures, k: 1)
        return b.concat("cat", [b1, b5, bd, bp])
    }

    static func inceptionB(_ b: GraphBuilder, _ w: Widths, _ x: Value, _ c: Int) -> Value {
        let b3 = basic(b, w, "branch3x3", x, c, 384, k: 3, stride: 2)
        var bd = basic(b, w, "branch3x3dbl_1", x, c, 64, k: 1)
        bd = basic(b, w, "branch3x3dbl_2", bd, 64, 96, k: 3, pad: 1)
        bd = basic(b, w, "branch3x3dbl_3", bd, 96, 96, k: 3, stride: 2)
        let bp = b.maxPool("max_pool2d", x, kernel: 3, stride: 2)
        return b.concat("cat", [b3, bd, bp])
    }

    static func inceptionC(_ b: GraphBuilder, _ w: Widths, _ x: Value, _ c: Int, c7: Int) -> Value {
        let b1 = basic(b, w, "branch1x1", x, c, 192, k: 1)
        var b7 = basic(b, w, "branch7x7_1", x, c, c7, k: 1)
        b7 = basic(b, w, "branch7x7_2", b7, c7, c7, kernel: (1, 7), padding: (0, 3))
        b7 = basic(b, w, "branch7x7_3", b7, c7, 192, kernel: (7, 1), padding: (3, 0))
        var bd = basic(b, w, "branch7x7dbl_1", x, c, c7, k: 1)
        bd = basic(b, w, "branch7x7dbl_2", bd, c7, c7, kernel: (7, 1), padding: (3, 0))
        bd = basic(b, w, "branch7x7dbl_3", bd, c7, c7, kernel: (1, 7), padding: (0, 3))
        bd = basic(b, w, "branch7x7dbl_4", bd, c7, c7, kernel: (7, 1), padding: (3, 0))
        bd = basic(b, w, "branch7x7dbl_5", bd, c7, 192, kernel: (1, 7), padding: (0, 3))
        var bp = b.avgPool("avg_pool2d", x, kernel: 3, stride: 1, padding: 1)
        bp = basic(b, w, "branch_pool", bp, c, 192, k: 1)
        return b.concat("cat", [b1, b7, bd, bp])
    }

    static func inceptionD(_ b: GraphBuilder, _ w: Widths, _ x: Value, _ c: Int) -> Value {
        var b3 = basic(b, w, "branch3x3_1", x, c, 192, k: 1)
        b3 = basic(b, w, "branch3x3_2", b3, 192, 320, k: 3, stride: 2)
        var b7 = basic(b, w, "branch7x7x3_1", x, c, 192, k: 1)
        b7 = basic(b, w, "branch7x7x3_2", b7, 192, 192, kernel: (1, 7), padding: (0, 3))
        b7 = basic(b, w, "branch7x7x3_3", b7, 192, 192, kernel: (7, 1), padding: (3, 0))
        b7 = basic(b, w, "branch7x7x3_4", b7, 192, 192, k: 3, stride: 2)
        let bp = b.maxPool("max_pool2d", x, kernel: 3, stride: 2)
        return b.concat("cat", [b3, b7, bp])
    }

    static func inceptionE(_ b: GraphBuilder, _ w: Widths, _ x: Value, _ c: Int) -> Value {
        let b1 = basic(b, w, "branch1x1", x, c, 320, k: 1)
        let b3 = basic(b, w, "branch3x3_1", x, c, 384, k: 1)
        let b3a = basic(b, w, "branch3x3_2a", b3, 384, 384, kernel: (1, 3), padding: (0, 1))
        let b3b = basic(b, w, "branch3x3_2b", b3, 384, 384, kernel: (3, 1), padding: (1, 0))
        let b3cat = b.concat("cat", [b3a, b3b])
        var bd = basic(b, w, "branch3x3dbl_1", x, c, 448, k: 1)
        bd = basic(b, w, "branch3x3dbl_2", bd, 448, 384, k: 3, pad: 1)
        let bda = basic(b, w, "branch3x3dbl_3a", bd, 384, 384, kernel: (1, 3), padding: (0, 1))
        let bdb = basic(b, w, "branch3x3dbl_3b", bd, 384, 384, kernel: (3, 1), padding: (1, 0))
        let bdcat = b.concat("cat_1", [bda, bdb])
        var bp = b.avgPool("avg_pool2d", x, kernel: 3, stride: 1, padding: 1)
        bp = basic(b, w, "branch_pool", bp, c, 192, k: 1)
        return b.concat("cat_2", [b1, b3cat, bdcat, bp])
    }

    public static func build(_ config: InceptionV3Config) throws -> Graph {
        guard config.widthDivisor >= 1, 16 % config.widthDivisor == 0 else {
            throw QuarryError.invalidArgument("Inception-v3 width divisor \(config.widthDivisor) must divide 16")
        }
        let b = GraphBuilder()
        let w = Widths(divisor: config.widthDivisor)
        var x = imageInput(b, height: config.imageSize, width: config.imageSize)
        x = basic(b, w, "Conv2d_1a_3x3", x, 3, 32, k: 3, stride: 2)
        x = basic(b, w, "Conv2d_2a_3x3", x, 32, 32, k: 3)
        x = basic(b, w, "Conv2d_2b_3x3", x, 32, 64, k: 3, pad: 1)
        x = b.maxPool("maxpool1", x, kernel: 3, stride: 2)
        x = basic(b, w, "Conv2d_3b_1x1", x, 64, 80, k: 1)
        x = basic(b, w, "Conv2d_4a_3x3", x, 80, 192, k: 3)
        x = b.maxPool("maxpool2", x, kernel: 3, stride: 2)
        func mixed(_ name: String, _ body: () -> Value) {
            x = b.identity(name, b.scope(name, body))
        }
        let xin = { x }
        mixed("Mixed_5b") { inceptionA(b, w, xin(), 192, poolFeatures: 32) }
        mixed("Mixed_5c") { inceptionA(b, w, xin(), 256, poolFeatures: 64) }
        mixed("Mixed_5d") { inceptionA(b, w, xin(), 288, poolFeatures: 64) }
        mixed("Mixed_6a") { inceptionB(b, w, xin(), 288) }
        mixed("Mixed_6b") { inceptionC(b, w, xin(), 768, c7: 128) }
        mixed("Mixed_6c") { inceptionC(b, w, xin(), 768, c7: 160) }
        mixed("Mixed_6d") { inceptionC(b, w, xin(), 768, c7: 160) }
        mixed("Mixed_6e") { inceptionC(b, w, xin(), 768, c7: 192) }
        var outputs: [Value] = []
        if config.auxLogits {
            let six = x
            try b.scope("AuxLogits") {
                var a = b.avgPool("avg_pool2d", six, kernel: 5, stride: 3)
                a = basic(b, w, "conv0", a, 768, 128, k: 1)
                a = basic(b, w, "conv1", a, 128, 768, kernel: (5, 5), std: 0.01)
                _ = try b.shapeForOneItem(a)
                a = b.add("adaptive_avg_pool2d", .globalAvgPool, a)
                a = b.add("flatten", .flatten(axis: 1), a)
                a = b.linear("fc", a, in: w(768), out: config.numClasses, initializer: .normal(std: 0.001))
                outputs.append(b.identity("", a))
            }
        }
        mixed("Mixed_7a") { inceptionD(b, w, xin(), 768) }
        mixed("Mixed_7b") { inceptionE(b, w, xin(), 1280) }
        mixed("Mixed_7c") { inceptionE(b, w, xin(), 2048) }
        _ = try b.shapeForOneItem(x)
        x = b.add("avgpool", .globalAvgPool, x)
        x = b.identity("dropout", x)
        x = b.add("flatten", .flatten(axis: 1), x)
        x = b.linear("fc", x, in: w(2048), out: config.numClasses, initializer: .normal(std: 0.1))
        return b.build(outputs: [x] + outputs)
    }

    static func taps(_ config: InceptionV3Config) -> [String] {
        ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
         "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]
            + (config.auxLogits ? ["AuxLogits"] : [])
            + ["Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "flatten", "fc"]
    }
}
