import Quarry

// The zoo's registry: every model by a lower-case name, with what a caller needs before building it
// (inputs, preprocessing, taps) and what `quarry models` lists (parameters, MACs per item).

public enum ModelFamily: String, Sendable, CaseIterable, Codable {
    case plainCNN = "plain_cnn", vgg, resnet, inception, densenet, mobilenet, unet, yolo, lstm, bert, gpt
    case autoencoder
}

/// How images are prepared for a model, as its reference evaluates it: resize the shorter side to
/// `resize`, centre-crop to `crop`, scale to [0, 1], subtract `mean` and divide by `std` per channel.
public struct ModelPreprocessing: Sendable, Equatable, Codable {
    public var resize: Int
    public var crop: Int
    public var mean: [Float]
    public var std: [Float]
    public init(resize: Int, crop: Int, mean: [Float], std: [Float]) {
        self.resize = resize; self.crop = crop; self.mean = mean; self.std = std
    }
    static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    static let imageNetStd: [Float] = [0.229, 0.224, 0.225]
    /// torchvision's ImageNet evaluation transform (resize 256, crop 224) at another crop size.
    public static func imageNet(crop: Int = 224, resize: Int? = nil) -> ModelPreprocessing {
        ModelPreprocessing(resize: resize ?? crop * 256 / 224, crop: crop, mean: imageNetMean, std: imageNetStd)
    }
    /// Scale to [0, 1] only (darknet, U-Net, the autoencoder, the plain CNN).
    public static func unitRange(_ size: Int) -> ModelPreprocessing {
        ModelPreprocessing(resize: size, crop: size, mean: [0, 0, 0], std: [1, 1, 1])
    }
}

/// Build-time choices that change the input size; nil keeps the model's default.
public struct BuildOptions: Sendable {
    public var imageSize: Int?
    public var sequenceLength: Int?
    public init(imageSize: Int? = nil, sequenceLength: Int? = nil) {
        self.imageSize = imageSize; self.sequenceLength = sequenceLength
    }
}

public struct ModelEntry: Sendable {
    public let name: String
    public let family: ModelFamily
    /// The paper (and reference implementation) the builder follows.
    public let reference: String
    /// The graph inputs at the default size; the batch dimension is the symbol N. Where the graph
    /// leaves another dimension symbolic (the LSTM's sequence length T), this fixes its default.
    public let inputs: [GraphInput]
    public let preprocessing: ModelPreprocessing?
    /// Value names a caller can ask for, in graph order; the last is the model's usual feature.
    public let taps: [String]
    /// The pooling that turns `defaultTap` into one vector per item.
    public let defaultTap: String
    public let defaultPooling: FeaturePooling
    let builder: @Sendable (BuildOptions) throws -> Graph
    /// For text models: the longest sequence the position embeddings cover.
    public var maxSequenceLength: Int? = nil

    /// The first input's shape (the image or the token ids).
    public var inputShape: [Dim] { inputs.first?.shape ?? [] }

    public func build(_ options: BuildOptions = BuildOptions()) throws -> Graph {
        try builder(options)
    }

    /// Learned parameters (buffers excluded); builds the graph without allocating any weight.
    public var parameters: Int {
        get throws { try build().parameterCount }
    }

    /// Concrete shapes of `inputs` with the batch dimension N set to `batch`.
    public func defaultInputShapes(batch: Int = 1) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for input in inputs {
            out[input.name] = input.shape.map {
                switch $0 {
                case .fixed(let n): return n
                case .symbol: return batch
                }
            }
        }
        return out
    }

    /// Multiply-accumulates for one item at the default input size.
    public var macsPerItem: Int {
        get throws { try build().totalMACs(inputShapes: defaultInputShapes()) }
    }
}

public enum ModelZoo {
    public static func entry(named name: String) throws -> ModelEntry {
        guard let e = all.first(where: { $0.name == name.lowercased() }) else {
            throw QuarryError.invalidArgument("no model named '\(name)' in the zoo; known: \(all.map(\.name).joined(separator: ", "))")
        }
        return e
    }

    public static var all: [ModelEntry] {
        var entries: [ModelEntry] = []

        let plain = PlainCNNConfig()
        entries.append(image("plain_cnn", .plainCNN, "LeCun et al. 1998; Simonyan & Zisserman 2015 (conv-BN-ReLU-pool stack)",
                             size: plain.imageSize, preprocessing: .unitRange(plain.imageSize),
                             taps: PlainCNN.taps(plain), tap: "flatten") { o in
            var c = plain; c.imageSize = o.imageSize ?? c.imageSize; return try PlainCNN.build(c)
        })

        entries.append(image("vgg16", .vgg, "Simonyan & Zisserman, ICLR 2015 (arXiv:1409.1556); torchvision vgg16",
                             size: 224, preprocessing: .imageNet(), taps: VGG.taps(.vgg16), tap: "classifier.4", pooling: .none) { o in
            var c = VGGConfig.vgg16; c.imageSize = o.imageSize ?? 224; return try VGG.build(c)
        })

        for depth in [18, 34, 50, 101, 152] {
            // Depths are the fixed list above, so the configuration always exists.
            guard let cfg = try? ResNetConfig.depth(depth) else { continue }
            entries.append(image("resnet\(depth)", .resnet, "He et al., CVPR 2016 (arXiv:1512.03385); torchvision resnet\(depth) (v1.5)",
                                 size: 224, preprocessing: .imageNet(), taps: ResNet.taps(cfg), tap: "flatten") { o in
                var c = cfg; c.imageSize = o.imageSize ?? 224; return try ResNet.build(c)
            })
        }

        let inception = InceptionV3Config()
        entries.append(image("inception_v3", .inception, "Szegedy et al., CVPR 2016 (arXiv:1512.00567); torchvision inception_v3",
                             size: 299,
                             preprocessing: ModelPreprocessing(resize: 342, crop: 299, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]),
                             taps: InceptionV3.taps(inception), tap: "flatten") { o in
            var c = inception; c.imageSize = o.imageSize ?? 299
            c.auxLogits = c.imageSize >= 299
            return try InceptionV3.build(c)
        })

        entries.append(image("densenet121", .densenet, "Huang et al., CVPR 2017 (arXiv:1608.06993); torchvision densenet121",
                             size: 224, preprocessing: .imageNet(), taps: DenseNet.taps(.densenet121), tap: "flatten") { o in
            var c = DenseNetConfig.densenet121; c.imageSize = o.imageSize ?? 224; return try DenseNet.build(c)
        })

        entries.append(image("mobilenet_v2", .mobilenet, "Sandler et al., CVPR 2018 (arXiv:1801.04381); torchvision mobilenet_v2",
                             size: 224, preprocessing: .imageNet(), taps: MobileNetV2.taps(), tap: "flatten") { o in
            try MobileNetV2.build(MobileNetV2Config(imageSize: o.imageSize ?? 224))
        })

        entries.append(image("unet", .unet, "Ronneberger et al., MICCAI 2015 (arXiv:1505.04597); milesial/Pytorch-UNet, bilinear=False",
                             size: 256, preprocessing: .unitRange(256), taps: UNet.taps, tap: "down4") { o in
            try UNet.build(UNetConfig(imageSize: o.imageSize ?? 256))
        })

        entries.append(image("yolov4", .yolo, "Bochkovskiy et al. 2020 (arXiv:2004.10934); Tianxiaomo/pytorch-YOLOv4, darknet yolov4.cfg",
                             size: 608, preprocessing: .unitRange(608), taps: YOLOv4.taps, tap: "down5") { o in
            try YOLOv4.build(YOLOv4Config(imageSize: o.imageSize ?? 608))
        })

        let lstm = LSTMNetworkConfig()
        entries.append(ModelEntry(
            name: "lstm", family: .lstm,
            reference: "Hochreiter & Schmidhuber 1997; Graves & Schmidhuber 2005 (bidirectional); PyTorch nn.LSTM",
            // The graph takes any sequence length T; 64 steps is the size listed and benchmarked.
            inputs: [GraphInput(name: "input", shape: [batchDim, 64, .fixed(lstm.inputSize)])],
            preprocessing: nil, taps: LSTMNetwork.taps(lstm), defaultTap: "lstm", defaultPooling: .lastToken
        ) { _ in try LSTMNetwork.build(lstm) })

        for (name, cfg, ref) in [
            ("bert_base", BERTConfig.base, "Devlin et al., NAACL 2019 (arXiv:1810.04805); Hugging Face bert-base-uncased"),
            ("minilm_l6_h384", BERTConfig.miniLML6H384,
             "Wang et al., NeurIPS 2020 (arXiv:2002.10957); Hugging Face nreimers/MiniLM-L6-H384-uncased"),
        ] {
            entries.append(ModelEntry(
                name: name, family: .bert, reference: ref,
                inputs: [GraphInput(name: "input_ids", shape: [batchDim, .fixed(cfg.sequenceLength)]),
                         GraphInput(name: "attention_mask", shape: [batchDim, .fixed(cfg.sequenceLength)])],
                preprocessing: nil, taps: BERT.taps(cfg), defaultTap: "last_hidden_state", defaultPooling: .maskedMean,
                builder: { o in
                    var c = cfg; c.sequenceLength = o.sequenceLength ?? c.sequenceLength; return try BERT.build(c)
                }, maxSequenceLength: cfg.maxPositions))
        }

        var gpts: [(String, GPTConfig, String)] = [
            ("gpt2", .gpt2, "Radford et al. 2019 (GPT-2); Hugging Face gpt2"),
        ]
        for row in GPTConfig.gpt3Table {
            gpts.append((row.name, .gpt3(layers: row.layers, dModel: row.dModel, heads: row.heads),
                         "Brown et al., NeurIPS 2020 (arXiv:2005.14165), Table 2.1; GPT-2 layout"))
        }
        for (name, cfg, ref) in gpts {
            entries.append(ModelEntry(
                name: name, family: .gpt, reference: ref,
                inputs: [GraphInput(name: "input_ids", shape: [batchDim, .fixed(cfg.sequenceLength)])],
                preprocessing: nil, taps: GPT.taps(cfg), defaultTap: "ln_f", defaultPooling: .lastToken,
                builder: { o in
                    var c = cfg; c.sequenceLength = o.sequenceLength ?? c.sequenceLength; return try GPT.build(c)
                }, maxSequenceLength: cfg.contextLength))
        }

        let ae = ConvAutoencoderConfig()
        entries.append(image("conv_autoencoder", .autoencoder, "Masci et al., ICANN 2011 (stacked convolutional auto-encoders)",
                             size: ae.imageSize, preprocessing: .unitRange(ae.imageSize), taps: ConvAutoencoder.taps,
                             tap: "encoder", pooling: .none) { o in
            var c = ae; c.imageSize = o.imageSize ?? c.imageSize; return try ConvAutoencoder.build(c)
        })
        return entries
    }

    static func image(
        _ name: String, _ family: ModelFamily, _ reference: String, size: Int, preprocessing: ModelPreprocessing,
        taps: [String], tap: String, pooling: FeaturePooling = .globalAverage,
        build: @escaping @Sendable (BuildOptions) throws -> Graph
    ) -> ModelEntry {
        ModelEntry(
            name: name, family: family, reference: reference,
            inputs: [GraphInput(name: "input", shape: [batchDim, 3, .fixed(size), .fixed(size)])],
            preprocessing: preprocessing, taps: taps, defaultTap: tap,
            defaultPooling: tap == "flatten" ? .none : pooling, builder: build)
    }
}
