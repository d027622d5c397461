import Quarry

// YOLOv4: A. Bochkovskiy, C.-Y. Wang, H.-Y. M. Liao, "YOLOv4: Optimal Speed and Accuracy of Object
// Detection", 2020 (arXiv:2004.10934): CSPDarknet53 backbone with Mish, SPP (5/9/13 max-pools),
// PANet neck with leaky ReLU (0.1), three YOLOv3 heads (strides 8, 16, 32; 3 anchors x (4 + 1 +
// classes) channels), 608x608 input. Layout and names are those of the PyTorch port
// Tianxiaomo/pytorch-YOLOv4 (`models.py`, whose `yolov4.pth` is converted from darknet's
// yolov4.weights): `down1`…`down5` (`down2.conv1.conv.0` conv, `.conv.1` BN, `.conv.2` activation;
// `down3.resblock.module_list.K.0`), `neek` (sic) and `head`. The SPP concatenation is
// [max13, max9, max5, x] as in darknet's `route -1,-3,-5,-6`. With 80 classes the learned parameters
// number 64,363,101 — darknet's count, as reported by Keras ports ("Trainable params: 64,363,101",
// the BN running statistics being non-trainable) — and the tests check it. The heads output raw
// maps; box decoding (the YoloLayer) is post-processing outside the graph.

public struct YOLOv4Config: Sendable {
    public var numClasses: Int
    /// A multiple of 32 (608 in the paper's main results).
    public var imageSize: Int
    /// Divides every internal width (1 = the paper's); larger values give cheap variants of the
    /// same structure for tests. Must divide 32.
    public var widthDivisor: Int
    public init(numClasses: Int = 80, imageSize: Int = 608, widthDivisor: Int = 1) {
        self.numClasses = numClasses; self.imageSize = imageSize; self.widthDivisor = widthDivisor
    }
}

public enum YOLOv4 {
    static let leaky = Activation.leakyRelu(alpha: 0.1)

    /// Conv_Bn_Activation: conv (bias only when there is no BN), BN, activation. The module's
    /// output takes the module's name; `activation` nil is the heads' linear 1x1 conv.
    static func cba(_ b: GraphBuilder, _ name: String, _ x: Value, _ i: Int, _ o: Int, _ k: Int, _ s: Int,
                    _ act: Activation?) -> Value {
        let y = b.scope(name) {
            b.scope("conv") {
                let c = b.conv2d("0", x, in: i, out: o, kernel: k, stride: s, padding: (k - 1) / 2, bias: act == nil)
                return act == nil ? c : b.batchNorm("1", c, channels: o)
            }
        }
        if let act { return b.activation(name, act, y) }
        return b.identity(name, y)
    }

    /// DownSample1: the stem conv, then a CSP stage whose halves are 64 channels wide.
    static func down1(_ b: GraphBuilder, _ input: Value, _ w: Widths) -> Value {
        let x1 = cba(b, "conv1", input, 3, w(32), 3, 1, .mish)
        let x2 = cba(b, "conv2", x1, w(32), w(64), 3, 2, .mish)
        let x3 = cba(b, "conv3", x2, w(64), w(64), 1, 1, .mish)
        let x4 = cba(b, "conv4", x2, w(64), w(64), 1, 1, .mish)
        let x5 = cba(b, "conv5", x4, w(64), w(32), 1, 1, .mish)
        let x6 = cba(b, "conv6", x5, w(32), w(64), 3, 1, .mish)
        let s = b.sum("add", x6, x4)
        let x7 = cba(b, "conv7", s, w(64), w(64), 1, 1, .mish)
        let c = b.concat("cat", [x7, x3])
        return cba(b, "conv8", c, w(128), w(64), 1, 1, .mish)
    }

    /// DownSample2…5: a stride-2 conv to `out` channels, two 1x1 halves, `blocks` residual blocks
    /// on one half, then the halves concatenated and mixed.
    static func downCSP(_ b: GraphBuilder, _ input: Value, in i: Int, out o: Int, blocks: Int, _ w: Widths) -> Value {
        let (i, o) = (w(i), w(o))
        let h = o / 2
        let x1 = cba(b, "conv1", input, i, o, 3, 2, .mish)
        let x2 = cba(b, "conv2", x1, o, h, 1, 1, .mish)
        var r = cba(b, "conv3", x1, o, h, 1, 1, .mish)
        b.scope("resblock") {
            b.scope("module_list") {
                for k in 0..<blocks {
                    let y = b.scope("\(k)") {
                        let a = cba(b, "0", r, h, h, 1, 1, .mish)
                        return cba(b, "1", a, h, h, 3, 1, .mish)
                    }
                    r = b.sum(k == 0 ? "add" : "add_\(k)", r, y)
                }
            }
        }
        let x4 = cba(b, "conv4", r, h, h, 1, 1, .mish)
        let c = b.concat("cat", [x4, x2])
        return cba(b, "conv5", c, o, o, 1, 1, .mish)
    }

    /// Neck: SPP on the stride-32 map, then PANet's top-down path; returns (x20, x13, x6).
    static func neck(_ b: GraphBuilder, _ d5: Value, _ d4: Value, _ d3: Value, _ w: Widths) -> (Value, Value, Value) {
        let x1 = cba(b, "conv1", d5, w(1024), w(512), 1, 1, leaky)
        let x2 = cba(b, "conv2", x1, w(512), w(1024), 3, 1, leaky)
        let x3 = cba(b, "conv3", x2, w(1024), w(512), 1, 1, leaky)
        let m1 = b.maxPool("maxpool1", x3, kernel: 5, stride: 1, padding: 2)
        let m2 = b.maxPool("maxpool2", x3, kernel: 9, stride: 1, padding: 4)
        let m3 = b.maxPool("maxpool3", x3, kernel: 13, stride: 1, padding: 6)
        let spp = b.concat("cat", [m3, m2, m1, x3])
        let x4 = cba(b, "conv4", spp, w(2048), w(512), 1, 1, leaky)
        let x5 = cba(b, "conv5", x4, w(512), w(1024), 3, 1, leaky)
        let x6 = cba(b, "conv6", x5, w(1024), w(512), 1, 1, leaky)
        let x7 = cba(b, "conv7", x6, w(512), w(256), 1, 1, leaky)
        let up1 = b.add("upsample1", .upsample(mode: .nearest, scaleH: 2, scaleW: 2, size: nil), x7)
        let x8 = cba(b, "conv8", d4, w(512), w(256), 1, 1, leaky)
        var x = b.concat("cat_1", [x8, up1])
        x = cba(b, "conv9", x, w(512), w(256), 1, 1, leaky)
        x = cba(b, "conv10", x, w(256), w(512), 3, 1, leaky)
        x = cba(b, "conv11", x, w(512), w(256), 1, 1, leaky)
        x = cba(b, "conv12", x, w(256), w(512), 3, 1, leaky)
        let x13 = cba(b, "conv13", x, w(512), w(256), 1, 1, leaky)
        let x14 = cba(b, "conv14", x13, w(256), w(128), 1, 1, leaky)
        let up2 = b.add("upsample2", .upsample(mode: .nearest, scaleH: 2, scaleW: 2, size: nil), x14)
        let x15 = cba(b, "conv15", d3, w(256), w(128), 1, 1, leaky)
        x = b.concat("cat_2", [x15, up2])
        x = cba(b, "conv16", x, w(256), w(128), 1, 1, leaky)
        x = cba(b, "conv17", x, w(128), w(256), 3, 1, leaky)
        x = cba(b, "conv18", x, w(256), w(128), 1, 1, leaky)
        x = cba(b, "conv19", x, w(128), w(256), 3, 1, leaky)
        let x20 = cba(b, "conv20", x, w(256), w(128), 1, 1, leaky)
        return (x20, x13, x6)
    }

    /// Head: PANet's bottom-up path and the three output convs (strides 8, 16, 32).
    static func head(_ b: GraphBuilder, _ i1: Value, _ i2: Value, _ i3: Value, outputs o: Int, _ w: Widths) -> [Value] {
        let x1 = cba(b, "conv1", i1, w(128), w(256), 3, 1, leaky)
        let y1 = cba(b, "conv2", x1, w(256), o, 1, 1, nil)
        var x = cba(b, "conv3", i1, w(128), w(256), 3, 2, leaky)
        x = b.concat("cat", [x, i2])
        x = cba(b, "conv4", x, w(512), w(256), 1, 1, leaky)
        x = cba(b, "conv5", x, w(256), w(512), 3, 1, leaky)
        x = cba(b, "conv6", x, w(512), w(256), 1, 1, leaky)
        x = cba(b, "conv7", x, w(256), w(512), 3, 1, leaky)
        let x8 = cba(b, "conv8", x, w(512), w(256), 1, 1, leaky)
        x = cba(b, "conv9", x8, w(256), w(512), 3, 1, leaky)
        let y2 = cba(b, "conv10", x, w(512), o, 1, 1, nil)
        x = cba(b, "conv11", x8, w(256), w(512), 3, 2, leaky)
        x = b.concat("cat_1", [x, i3])
        x = cba(b, "conv12", x, w(1024), w(512), 1, 1, leaky)
        x = cba(b, "conv13", x, w(512), w(1024), 3, 1, leaky)
        x = cba(b, "conv14", x, w(1024), w(512), 1, 1, leaky)
        x = cba(b, "conv15", x, w(512), w(1024), 3, 1, leaky)
        x = cba(b, "conv16", x, w(1024), w(512), 1, 1, leaky)
        x = cba(b, "conv17", x, w(512), w(1024), 3, 1, leaky)
        let y3 = cba(b, "conv18", x, w(1024), o, 1, 1, nil)
        return [y1, y2, y3]
    }

    public static func build(_ config: YOLOv4Config) throws -> Graph {
        guard config.widthDivisor >= 1, 32 % config.widthDivisor == 0 else {
            throw QuarryError.invalidArgument("YOLOv4 width divisor \(config.widthDivisor) must divide 32")
        }
        guard config.imageSize % 32 == 0, config.imageSize >= 32 else {
            throw QuarryError.invalidArgument("YOLOv4 input size \(config.imageSize) must be a positive multiple of 32")
        }
        let b = GraphBuilder()
        let input = imageInput(b, height: config.imageSize, width: config.imageSize)
        let w = Widths(divisor: config.widthDivisor)
        let d1 = b.identity("down1", b.scope("down1") { down1(b, input, w) })
        let d2 = b.identity("down2", b.scope("down2") { downCSP(b, d1, in: 64, out: 128, blocks: 2, w) })
        let d3 = b.identity("down3", b.scope("down3") { downCSP(b, d2, in: 128, out: 256, blocks: 8, w) })
        let d4 = b.identity("down4", b.scope("down4") { downCSP(b, d3, in: 256, out: 512, blocks: 8, w) })
        let d5 = b.identity("down5", b.scope("down5") { downCSP(b, d4, in: 512, out: 1024, blocks: 4, w) })
        let (x20, x13, x6) = b.scope("neek") { neck(b, d5, d4, d3, w) }
        let outs = b.scope("head") { head(b, x20, x13, x6, outputs: 3 * (5 + config.numClasses), w) }
        return b.build(outputs: outs)
    }

    static let taps = ["down1", "down2", "down3", "down4", "down5", "neek.conv20", "neek.conv13", "neek.conv6",
                       "head.conv2", "head.conv10", "head.conv18"]
}
