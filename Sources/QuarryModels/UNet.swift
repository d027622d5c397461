import Quarry

// U-Net: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
// Segmentation", MICCAI 2015 (arXiv:1505.04597), in the common variant of milesial/Pytorch-UNet
// (`unet/unet_parts.py`, bilinear=False): "same"-padded 3x3 convs with BatchNorm (so the output has
// the input's size, unlike the paper's valid convs), 2x2 transposed convs to upsample, 64…1024
// channels. Names are that repository's: `inc.double_conv.0`, `down1.maxpool_conv.1.double_conv.3`,
// `up1.up`, `up1.conv.double_conv.0`, `outc.conv`. With 3 input channels and 2 classes it has
// 31,037,698 parameters (the count of `UNet(n_channels=3, n_classes=2)` in that repository).
// The input size must be a multiple of 16 so that the skip connections line up without padding.

public struct UNetConfig: Sendable {
    public var inputChannels: Int
    public var numClasses: Int
    /// Channels of the first level; each level down doubles them (64 → 1024).
    public var baseWidth: Int
    public var imageSize: Int
    public init(inputChannels: Int = 3, numClasses: Int = 2, baseWidth: Int = 64, imageSize: Int = 256) {
        self.inputChannels = inputChannels; self.numClasses = numClasses; self.baseWidth = baseWidth
        self.imageSize = imageSize
    }
}

public enum UNet {
    static func doubleConv(_ b: GraphBuilder, _ x: Value, in i: Int, out o: Int) -> Value {
        b.scope("double_conv") {
            var y = b.conv2d("0", x, in: i, out: o, kernel: 3, padding: 1)
            y = b.batchNorm("1", y, channels: o)
            y = b.activation("2", .relu, y)
            y = b.conv2d("3", y, in: o, out: o, kernel: 3, padding: 1)
            y = b.batchNorm("4", y, channels: o)
            return b.activation("5", .relu, y)
        }
    }

    public static func build(_ config: UNetConfig) throws -> Graph {
        guard config.imageSize % 16 == 0, config.imageSize >= 16 else {
            throw QuarryError.invalidArgument("U-Net input size \(config.imageSize) must be a positive multiple of 16")
        }
        let b = GraphBuilder()
        let w = config.baseWidth
        var x = imageInput(b, channels: config.inputChannels, height: config.imageSize, width: config.imageSize)
        x = b.identity("inc", b.scope("inc") { doubleConv(b, x, in: config.inputChannels, out: w) })
        var skips = [x]
        for level in 1...4 {
            let (i, o) = (w << (level - 1), w << level)
            let name = "down\(level)"
            let y = b.scope(name) {
                b.scope("maxpool_conv") {
                    let p = b.maxPool("0", x, kernel: 2, stride: 2)
                    return b.scope("1") { doubleConv(b, p, in: i, out: o) }
                }
            }
            x = b.identity(name, y)
            skips.append(x)
        }
        for level in 1...4 {
            let (i, o) = (w << (5 - level), w << (4 - level))
            let name = "up\(level)"
            let skip = skips[4 - level]
            let y = b.scope(name) {
                let u = b.convTranspose2d("up", x, in: i, out: i / 2, kernel: 2, stride: 2)
                let c = b.concat("cat", [skip, u])
                return b.scope("conv") { doubleConv(b, c, in: i, out: o) }
            }
            x = b.identity(name, y)
        }
        x = b.scope("outc") { b.conv2d("conv", x, in: w, out: config.numClasses, kernel: 1, bias: true) }
        x = b.identity("outc", x)
        return b.build(outputs: [x])
    }

    static let taps = ["inc", "down1", "down2", "down3", "down4", "up1", "up2", "up3", "up4", "outc"]
}
