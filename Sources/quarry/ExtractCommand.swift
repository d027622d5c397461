// `quarry extract`: a folder of images (or arrays) in, a feature matrix out. Rows follow the input
// order (file-name order for a folder); a file that cannot be read is named on stderr and in the
// manifest and the rest go on; every batch is saved as a chunk, so an interrupted run continues
// with --resume and no row is repeated or lost; the outputs appear whole or not at all.

import ArgumentParser
import Dispatch
import Foundation
import Quarry
import QuarryFormats
import QuarryModels
import QuarryRuntime

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Extract features of images, arrays or texts with a zoo model or an ONNX file.",
        discussion: """
            Inputs are image files (JPEG, PNG, WebP), folders of them (sorted by file name), .npy
            arrays (one item per row), WebDataset-style tar shards (one item per sample, named
            SHARD:KEY; a pattern such as 'shard-{0000..0099}.tar' is expanded) and text files
            listing paths. For a text model (bert_base, minilm_l6_h384, gpt2, ...) a .txt file
            holds one text a line and a .jsonl file one object a line (--text-field); texts are
            tokenized with --tokenizer or the tokenizer beside --weights, which may be a Hugging
            Face checkpoint folder. Output is .npy (one layer: rows =
            inputs that could be read) or .safetensors (one tensor per --layer). Beside it,
            OUTPUT.manifest.json maps each row to its source and names the inputs that failed.
            Exit status: 0 all inputs extracted; 3 some inputs could not be read (named on stderr
            and in the manifest, the others were extracted); 1 nothing useful was written (bad
            arguments, model or output); 130 interrupted (continue with --resume).
            Example:
              quarry extract resnet50 --input photos/ --output feats.npy --layer avgpool --batch 16
              quarry extract minilm_l6_h384 --weights all-MiniLM-L6-v2/ --input sentences.txt \\
                --pool mean --l2-normalize --output emb.npy
            """)

    @Argument(help: "A zoo model name (see `quarry models`) or an .onnx file.")
    var model: String

    @Option(name: .long, parsing: .upToNextOption, help: "Image files, folders, .npy arrays or text files of paths; for a text model, .txt (a text a line) or .jsonl files.")
    var input: [String]

    @Option(name: .long, help: "Output file: .npy or .safetensors.")
    var output: String

    @Option(name: .long, parsing: .upToNextOption, help: "Layers (tensor names) to extract; default: the model's feature layer.")
    var layer: [String] = []

    @Option(name: .long, help: "Items per batch.")
    var batch: Int = 16

    @OptionGroup var deviceOptions: DeviceOptions

    @Option(name: .long, help: "Weights for a zoo model: .safetensors, or (BERT family) a Hugging Face checkpoint folder with config.json and model.safetensors.")
    var weights: String?

    @Option(name: .long, help: "Tokenizer for texts: tokenizer.json, vocab.txt or vocab.json (+ merges.txt beside it), or their folder (default: beside --weights).")
    var tokenizer: String?

    @Option(name: .long, help: "Cut texts to this many tokens, special tokens included (default: the checkpoint's sentence-transformers max_seq_length, else the model's positions).")
    var maxLength: Int?

    @Option(name: .long, help: "The field of each .jsonl line that holds the text.")
    var textField: String = "text"

    @Option(name: .long, help: "Resize the shorter image side to this (0: no resize).")
    var resize: Int?

    @Flag(name: .long, help: "Decode JPEGs at full size, as torchvision does (default: at the smallest 1/2, 1/4 or 1/8 DCT scale that still covers --resize).")
    var exactDecode = false

    @Option(name: .long, help: "Decode worker threads (default: every core; at a lower priority when the CPU also computes).")
    var decodeWorkers: Int?

    @Option(name: .long, help: "Centre crop: N or HxW (0: no crop).")
    var crop: String?

    @Option(name: .long, help: "Per-channel mean, comma separated.")
    var mean: String?

    @Option(name: .long, help: "Per-channel standard deviation, comma separated.")
    var std: String?

    @Option(name: .long, help: "Pool each feature: none, global_average, cls, mean, last, max (mean and max over the attention mask; default: the checkpoint's sentence-transformers pooling, else the model's own for its feature layer, else none).")
    var pool: String?

    @Flag(name: .long, help: "L2-normalise each feature row.")
    var l2Normalize = false

    @Flag(name: .long, help: "Stop at the first input that cannot be read.")
    var strict = false

    @Flag(name: .long, help: "Continue an interrupted run of the same command.")
    var resume = false

    @Flag(name: .long, help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let decodeWorkers, decodeWorkers < 1 { throw ValidationError("--decode-workers must be at least 1") }
        guard !input.isEmpty else { throw ValidationError("give at least one --input") }
        if let maxLength, maxLength < 1 { throw ValidationError("--max-length must be at least 1") }
        let ext = (output as NSString).pathExtension.lowercased()
        guard ext == "npy" || ext == "safetensors" else { throw ValidationError("--output must end in .npy or .safetensors") }
        if let pool, FeaturePooling(rawValue: pool) == nil {
            throw ValidationError("--pool takes \(FeaturePooling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        try exitingOnError {
            var job = Extraction(model: model, input: input, output: output)
            job.layer = layer
            job.batch = batch
            job.device = deviceOptions.device
            job.cpuThreads = deviceOptions.cpuThreads
            job.microBatch = deviceOptions.microBatch
            job.precision = deviceOptions.precision
            job.weights = weights
            job.tokenizer = tokenizer
            job.maxLength = maxLength
            job.textField = textField
            job.resize = resize
            job.exactDecode = exactDecode
            job.decodeWorkers = decodeWorkers
            job.crop = crop
            job.mean = mean
            job.std = std
            job.pool = pool.flatMap(FeaturePooling.init(rawValue:))
            job.l2Normalize = l2Normalize
            job.strict = strict
            job.resume = resume
            job.quiet = quiet
            job.stopsOnSignals = true
            let status = try job.run()
            if status != .success { throw ExitCode(status.rawValue) }
        }
    }
}
