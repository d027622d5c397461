import Quarry

// A convolutional autoencoder whose bottleneck is the feature: the stacked convolutional
// autoencoder of J. Masci, U. Meier, D. Cireşan, J. Schmidhuber, "Stacked Convolutional
// Auto-Encoders for Hierarchical Feature Extraction", ICANN 2011, in the strided form common in
// PyTorch examples (stride-2 convs down instead of max-pooling, transposed convs up). Encoder:
// `encoder.0/2/4` 3x3 stride-2 convs (32, 64, 128 channels at base width 32) with ReLUs, then
// `encoder.6`, a 1x1 conv to `latentChannels` — the bottleneck, also named `encoder`. Decoder
// mirrors it: `decoder.0` 1x1 conv, three 3x3 stride-2 transposed convs, a sigmoid on the image.

public struct ConvAutoencoderConfig: Sendable {
    public var inputChannels: Int
    public var baseWidth: Int
    public var latentChannels: Int
    public var imageSize: Int
    public init(inputChannels: Int = 3, baseWidth: Int = 32, latentChannels: Int = 16, imageSize: Int = 64) {
        self.inputChannels = inputChannels; self.baseWidth = baseWidth; self.latentChannels = latentChannels
        self.imageSize = imageSize
    }
}

public enum ConvAutoencoder {
    public static func build(_ config: ConvAutoencoderConfig) throws -> Graph {
        guard config.imageSize % 8 == 0, config.imageSize >= 8 else {
            throw QuarryError.invalidArgument("autoencoder input size \(config.imageSize) must be a positive multiple of 8")
        }
        let b = GraphBuilder()
        let w = config.baseWidth
        let widths = [config.inputChannels, w, 2 * w, 4 * w]
        var x = imageInput(b, channels: config.inputChannels, height: config.imageSize, width: config.imageSize)
        b.scope("encoder") {
            for k in 0..<3 {
                x = b.conv2d("\(2 * k)", x, in: widths[k], out: widths[k + 1], kernel: 3, stride: 2, padding: 1, bias: true, fanIn: true)
                x = b.activation("\(2 * k + 1)", .relu, x)
            }
            x = b.conv2d("6", x, in: 4 * w, out: config.latentChannels, kernel: 1, bias: true, fanIn: true)
        }
        x = b.identity("encoder", x)
        b.scope("decoder") {
            x = b.conv2d("0", x, in: config.latentChannels, out: 4 * w, kernel: 1, bias: true, fanIn: true)
            x = b.activation("1", .relu, x)
            for k in 0..<3 {
                x = b.convTranspose2d("\(2 * k + 2)", x, in: widths[3 - k], out: widths[2 - k], kernel: 3, stride: 2,
                                      padding: 1, outputPadding: 1)
                x = b.activation("\(2 * k + 3)", k == 2 ? .sigmoid : .relu, x)
            }
        }
        x = b.identity("decoder", x)
        return b.build(outputs: [x])
    }

    static let taps = ["encoder.1", "encoder.3", "encoder.5", "encoder", "decoder"]
}
