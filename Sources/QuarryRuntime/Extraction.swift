// Extraction, the main job: list inputs, decode and preprocess them in parallel, run batches
// through the scheduler on every chosen device, pool features, and keep every batch as a chunk
// file until the end (so a killed run resumes), then write the output and manifest atomically.
// `quarry extract` is a thin command over it; the C ABI and the Python package reach it too.

import Dispatch
import Foundation
import Quarry
import QuarryFormats
import QuarryModels
import QuarryOpenCL

/// One input to extract: where it came from and how to load it as a model input row.
public struct ExtractItem {
    public var source: String
    public var load: () throws -> Tensor
    /// The row's shape when it is known before decoding (images with a centre crop); with `write`,
    /// the decode pipeline writes the row straight into its batch tensor instead of calling `load`.
    public var rowShape: [Int]?
    /// Writes the row (`rowShape`'s element count) at the given address.
    public var write: ((UnsafeMutablePointer<Float>) throws -> Void)?
    public init(source: String, load: @escaping () throws -> Tensor, rowShape: [Int]? = nil,
                write: ((UnsafeMutablePointer<Float>) throws -> Void)? = nil) {
        self.source = source
        self.load = load
        self.rowShape = rowShape
        self.write = write
    }
}

/// One extraction: what to run, on what, into which file. The fields mirror `quarry extract`'s
/// options (README documents their meaning).
public struct Extraction {
    /// A zoo model name or an .onnx file.
    public var model: String
    /// Image files, folders, .npy arrays or text files listing paths.
    public var input: [String]
    /// The output file: .npy (one layer) or .safetensors (one tensor per layer).
    public var output: String
    /// Tensor names to extract; empty: the model's feature layer.
    public var layer: [String] = []
    public var batch: Int = 16
    /// A device spec (see `resolveDevices`).
    public var device: String = "cpu"
    public var cpuThreads: Int? = nil
    public var microBatch: Int? = nil
    /// fp32, tf32, bf16 or fp16: checked against every device before any work.
    public var precision: String = "fp32"
    /// Safetensors weights for a zoo model.
    public var weights: String? = nil
    /// Preprocessing overrides: shorter side (0: none), crop "N" or "HxW" (0: none), mean, std.
    public var resize: Int? = nil
    /// Decode every JPEG at full size (torchvision's pixels) instead of at the smallest DCT scale
    /// (1/2, 1/4, 1/8) whose shorter side still covers the resize target.
    public var exactDecode = false
    /// Decode worker threads; nil: every core the compute devices leave, or every core at a lower
    /// priority when the CPU computes too.
    public var decodeWorkers: Int? = nil
    /// Batches decoded ahead of the devices, at most.
    public var decodeDepth: Int = 3
    /// Decode batches into host-mapped OpenCL buffers (CL_MEM_ALLOC_HOST_PTR), so the upload is a
    /// DMA; nil: when every device is an OpenCL GPU.
    public var hostMappedInput: Bool? = nil
    public var crop: String? = nil
    public var mean: String? = nil
    public var std: String? = nil
    /// Pooling of each feature; nil: the model's own for its feature layer, else none.
    public var pool: FeaturePooling? = nil
    public var l2Normalize = false
    /// Stop at the first input that cannot be read.
    public var strict = false
    /// Continue an interrupted run of the same extraction.
    public var resume = false
    /// Texts (for a model whose input is token ids): the tokenizer file or folder (default: the
    /// one beside --weights), the longest token sequence (default: sentence-transformers'
    /// max_seq_length in the checkpoint folder, else the model's positions) and the field of a
    /// .jsonl line that holds the text.
    public var tokenizer: String? = nil
    public var maxLength: Int? = nil
    public var textField: String = "text"
    /// No progress lines or notes on stderr.
    public var quiet = false
    /// Stop after what is in flight on SIGINT / SIGTERM (a command-line run); off for a library caller.
    public var stopsOnSignals = false

    public init(model: String, input: [String], output: String) {
        self.model = model
        self.input = input
        self.output = output
    }

    /// Runs the extraction: `.success`, or `.partial` when some inputs could not be read (they are
    /// named on stderr and in the manifest). Throws a RuntimeError for bad arguments and on interrupt.
    public func run() throws -> ExitStatus {
        let loaded = try loadModel(model, weights: weights)
        // Texts for a text model: tokenized first (a missing tokenizer is named before any weight
        // is drawn), run sorted by length, written back in input order.
        let texts = try loaded.text.flatMap { try textInputs(for: $0) }
        var graph = loaded.graph
        // Drawn below, once the decode workers have started on the first batches.
        let seededWeights = graph.parameters.values.contains(where: { $0.value == nil })
        if seededWeights, !quiet {
            printError("note: \(loaded.name) has no weights given: features come from untrained, seeded random weights")
        }
        let layers = layer.isEmpty ? loaded.featureLayers : layer
        _ = try graph.pruned(to: layers)  // names every unknown layer before any work
        if (output as NSString).pathExtension.lowercased() == "npy" && layers.count != 1 {
            throw RuntimeError(message: "a .npy output holds one layer; use a .safetensors output for \(layers.count) layers")
        }
        // One data input; any others must be attention masks, made from the ids (0 is padding, as
        // in BERT's vocabulary) so that padded tokens are masked and `--pool mean` skips them.
        let dataInputs = graph.inputs.filter { !loaded.maskInputs.contains($0.name) }
        guard dataInputs.count == 1, let inputName = dataInputs.first?.name else {
            throw RuntimeError(message: "extract feeds models with one data input; \(loaded.name) takes \(graph.inputs.map(\.name)) (use `quarry run`)")
        }
        let maskNames = graph.inputs.map(\.name).filter { loaded.maskInputs.contains($0) }
        let pooling = pool ?? (layer.isEmpty ? loaded.text?.pooling ?? loaded.defaultPooling : .none)
        let preprocessing = try makePreprocessing(defaults: loaded.preprocessing)
        let items = try texts?.items ?? listExtractItems(input, preprocessing: preprocessing, exactDecode: exactDecode)
        guard !items.isEmpty else { throw RuntimeError(message: "no inputs found in \(input.joined(separator: ", "))") }

        var signature = RunSignature(model: model, weights: weights, layers: layers, pool: pooling.rawValue, l2: l2Normalize,
                                     preprocessing: "\(preprocessing)\(exactDecode ? " exact-decode" : "")",
                                     sources: items.map(\.source))
        if let texts { signature.tokenizer = texts.tokenizer; signature.maxLength = texts.maxLength; signature.preprocessing = "text" }
        let partial = PartialRun(output: output)
        var progressState = try resume ? partial.resume(signature) : partial.start(signature)

        let devices = try resolveDevices(device, cpuThreads: cpuThreads)
        _ = try resolvePrecision(precision, on: devices)

        // Chunks are read (decoded, checked) ahead of the devices by the scheduler's iterator and
        // written in order as their batches come back; the devices stream from one batch to the
        // next. A chunk whose inputs all failed has no batch and is written when its turn comes.
        struct ReadChunk {
            var range: Range<Int>
            var sources: [String]
            var failed: [FailedInput]
            var mask: Tensor?
            var hasBatch: Bool
        }
        var written = progressState.processed
        var queue: [ReadChunk] = []
        var stopError: Error? = nil
        // Decoding runs ahead of the devices on worker threads (DecodePipeline.swift).
        // The CPU backend, and OpenCL devices that are the CPU (PoCL), need the host's cores.
        let computesOnHost = devices.contains { ($0 as? OpenCLDevice)?.typeName != "GPU" }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        // Pinned memory is pinned for the whole driver, so the first device's pool serves all.
        let mappedPool: HostMappedPool? = (hostMappedInput ?? !computesOnHost)
            ? (devices.first as? OpenCLDevice).map(HostMappedPool.init(device:)) : nil
        // Texts are tokenized already and skip the pipeline (their rows differ in length).
        let pipeline = texts != nil ? nil : DecodePipeline(
            items: items, range: progressState.processed..<items.count, batch: batch,
            workers: decodeWorkers ?? cores, depth: decodeDepth, yieldToCompute: computesOnHost && decodeWorkers == nil,
            makeTensor: mappedPool.map { pool in { try pool.tensor(shape: $0) } })
        var readUpTo = progressState.processed
        defer { pipeline?.cancel() }

        // While the workers decode the first batches: the seeded weights (ResNet-50's 25M values)
        // and each device's compiled copy (an ONNX model once per distinct
        // batch shape, so its micro-batches keep a fixed size). One device runs each batch whole.
        if seededWeights { graph.materializeParameters(seed: 0) }
        var compileable = loaded
        compileable.graph = graph
        let workers = try devices.map { try compileable.compile(on: $0, outputs: layers) }
        let fixed: Int? = microBatch
            ?? (devices.count == 1 ? batch : (loaded.onnx != nil ? max(1, batch / devices.count) : nil))
        let scheduler = Scheduler(workers: workers, options: SchedulerOptions(microBatch: fixed))
        let interrupt = InterruptWatch(scheduler: scheduler, watching: stopsOnSignals)
        let progress = Progress(total: items.count, label: "extract \(loaded.name)", quiet: quiet)
        progress.advance(by: progressState.processed, failed: progressState.failed.count)
        /// The next chunk's feed, or nil at the end, on an interrupt or on a --strict failure.
        func readNext() throws -> [String: Tensor]? {
            while true {
                if interrupt.fired { return nil }
                if let texts {
                    // Token rows need no decoding: read here, padded to the batch's longest (rounded
                    // up to a few lengths so that few graphs compile), with the attention mask.
                    guard readUpTo < items.count else { return nil }
                    let range = readUpTo..<min(items.count, readUpTo + batch)
                    readUpTo = range.upperBound
                    var rows: [Tensor] = [], good: [Int] = [], failed: [FailedInput] = []
                    for i in range {
                        do { rows.append(try items[i].load()); good.append(i) } catch {
                            failed.append(FailedInput(source: items[i].source, error: "\(error)"))
                        }
                    }
                    for f in failed {
                        printError("cannot read \(f.source): \(f.error)")
                        if strict { throw RuntimeError(message: "stopped at the first unreadable input (--strict): \(f.source)") }
                    }
                    var chunk = ReadChunk(range: range, sources: good.map { items[$0].source }, failed: failed,
                                          mask: nil, hasBatch: !rows.isEmpty)
                    guard !rows.isEmpty else { queue.append(chunk); continue }
                    let (ids, mask) = texts.pad(rows)
                    var feed = [inputName: ids]
                    for name in maskNames { feed[name] = mask }
                    chunk.mask = mask
                    queue.append(chunk)
                    return feed
                }
                guard let decoded = pipeline?.next() else { return nil }
                let failed = decoded.failed.map { FailedInput(source: items[$0.index].source, error: "\($0.error)") }
                for f in failed {
                    printError("cannot read \(f.source): \(f.error)")
                    if strict { throw RuntimeError(message: "stopped at the first unreadable input (--strict): \(f.source)") }
                }
                var chunk = ReadChunk(range: decoded.range, sources: decoded.good.map { items[$0].source }, failed: failed,
                                      mask: nil, hasBatch: decoded.tensor != nil)
                guard let stacked = decoded.tensor else { queue.append(chunk); continue }
                var feed = [inputName: stacked]
                if !maskNames.isEmpty {
                    let m = Tensor(uninitializedShape: stacked.shape)
                    for i in 0..<m.count { m[flat: i] = stacked[flat: i] == 0 ? 0 : 1 }
                    for name in maskNames { feed[name] = m }
                    chunk.mask = m
                }
                queue.append(chunk)
                return feed
            }
        }
        /// Writes the oldest read chunk, with the features of its batch if it has one.
        func write(_ chunk: ReadChunk, outputs: [String: Tensor]?) throws {
            var features: [String: Tensor] = [:]
            if let outputs {
                for name in layers {
                    features[name] = try poolFeatures(outputs[name]!, pool: pooling, l2: l2Normalize, layer: name, mask: chunk.mask)
                }
            }
            try partial.append(chunk: progressState.chunks, features: features, layers: layers,
                               sources: chunk.sources, failed: chunk.failed, items: chunk.range.count)
            progressState.record(items: chunk.range.count, failed: chunk.failed)
            progress.advance(by: chunk.range.count, failed: chunk.failed.count)
            written = chunk.range.upperBound
        }
        func writeChunksWithoutBatch() throws {
            while let first = queue.first, !first.hasBatch { queue.removeFirst(); try write(first, outputs: nil) }
        }
        let feeds = AnyIterator<[String: Tensor]> {
            guard stopError == nil else { return nil }
            do { return try readNext() } catch { stopError = error; return nil }
        }
        do {
            try scheduler.run(batches: feeds) { _, outputs in
                try writeChunksWithoutBatch()
                try write(queue.removeFirst(), outputs: outputs)
            }
            if stopError == nil { try writeChunksWithoutBatch() }
        } catch SchedulerError.cancelled {
            // Interrupted: what was written stays, for --resume.
        }
        pipeline?.cancel()
        if let stopError { throw stopError }
        let start = written
        if interrupt.fired || start < items.count {
            progress.finish()
            throw RuntimeError(message: "interrupted after \(start) of \(items.count) inputs; run the same command with --resume to continue", status: .interrupted)
        }
        progress.finish()
        try partial.finish(layers: layers, modelName: loaded.name, untrained: graph.untrained, state: progressState,
                           inputOrder: texts?.inputOrder)
        if !progressState.failed.isEmpty {
            printError("\(progressState.failed.count) of \(items.count) inputs could not be read (listed in \(PartialRun.manifestPath(output)))")
            return .partial
        }
        return .success
    }

    /// ImageNet-style preprocessing from the model's defaults and the command's overrides.
    func makePreprocessing(defaults: ImagePreprocessing) throws -> ImagePreprocessing {
        var p = defaults
        if let resize { p.resize = resize > 0 ? resize : nil }
        if let crop {
            let parts = crop.lowercased().split(separator: "x").compactMap { Int($0) }
            switch parts.count {
            case 1: p.crop = parts[0] > 0 ? (height: parts[0], width: parts[0]) : nil
            case 2: p.crop = (height: parts[0], width: parts[1])
            default: throw RuntimeError(message: "--crop takes N or HxW, got '\(crop)'")
            }
        }
        func floats(_ s: String, _ flag: String) throws -> [Float] {
            let v = s.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard v.count == 3 || v.count == 1 else { throw RuntimeError(message: "\(flag) takes 1 or 3 comma-separated numbers, got '\(s)'") }
            return v.count == 1 ? [v[0], v[0], v[0]] : v
        }
        if let mean { p.mean = try floats(mean, "--mean") }
        if let std {
            p.std = try floats(std, "--std")
            guard p.std.allSatisfy({ $0 != 0 }) else { throw RuntimeError(message: "--std must not contain 0") }
        }
        return p
    }
}

/// One feature row per input from a layer's output `t` ([N, ...]).
public func poolFeatures(_ t: Tensor, pool: FeaturePooling, l2: Bool, layer: String, mask: Tensor? = nil) throws -> Tensor {
    do {
        // A mask applies to sequence outputs [N, S, D] whose S matches it.
        let useMask = mask.flatMap { m in t.rank == 3 && m.shape == Array(t.shape.prefix(2)) ? m : nil }
        return try pool.apply(to: t, attentionMask: useMask, l2Normalize: l2)
    } catch {
        throw RuntimeError(message: "layer '\(layer)' of shape \(t.shape): \(error)")
    }
}

/// Sets a flag on SIGINT / SIGTERM and asks the scheduler to stop after what is in flight.
final class InterruptWatch {
    private var sources: [DispatchSourceSignal] = []
    private let flag = NSLock()
    private var value = false
    var fired: Bool { flag.lock(); defer { flag.unlock() }; return value }

    init(scheduler: Scheduler, watching: Bool) {
        for sig in [SIGINT, SIGTERM] where watching {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [weak self] in
                self?.flag.lock(); self?.value = true; self?.flag.unlock()
                scheduler.cancel()
            }
            s.resume()
            sources.append(s)
        }
    }
}

/// The items `paths` stand for, each with a loader that gives one model input row. Images (files
/// and tar shards' samples) are decoded at the smallest JPEG scale that covers the resize target,
/// unless `exactDecode`.
public func listExtractItems(_ paths: [String], preprocessing: ImagePreprocessing, exactDecode: Bool = false) throws -> [ExtractItem] {
    var items: [ExtractItem] = []
    let minimumShortSide = exactDecode ? 0 : (preprocessing.resize ?? 0)
    let rowShape = preprocessing.crop.map { [3, $0.height, $0.width] }
    let shards = ShardFiles()
    func imageItem(_ source: String, _ decode: @escaping () throws -> DecodedImage) -> ExtractItem {
        ExtractItem(
            source: source, load: { try preprocessing.apply(to: try decode()) }, rowShape: rowShape,
            write: { try preprocessing.apply(to: try decode(), into: $0) })
    }
    for item in try listInputs(paths) {
        switch item {
        case .image(let path):
            items.append(imageItem(path) { try decodeImage(at: path, minimumShortSide: minimumShortSide) })
        case .tarSample(let sample):
            items.append(imageItem(sample.source) {
                let bytes = try readTarSample(sample, from: try shards.descriptor(sample.shard))
                return try decodeImage(bytes, name: "\(sample.shard):\(sample.member ?? sample.key)", minimumShortSide: minimumShortSide)
            })
        case .array(let path):
            // One item per row of the array's first axis; the array is read once, when listed.
            let array = try NumPy.readTensor(path: path)
            guard array.rank >= 1, array.shape[0] > 0 else {
                throw RuntimeError(message: "\(path): an input array needs at least one row, got shape \(array.shape)")
            }
            for r in 0..<array.shape[0] {
                items.append(ExtractItem(source: "\(path)[\(r)]") {
                    let row = array.rows(r..<(r + 1))
                    return try row.reshaped(Array(row.shape.dropFirst()))
                })
            }
        }
    }
    return items
}

/// Open tar shards, one descriptor each, shared by the decode workers (pread needs no lock);
/// closed when the last item holding them is gone.
// @unchecked: `descriptors` changes only under `lock`.
final class ShardFiles: @unchecked Sendable {
    private let lock = NSLock()
    private var descriptors: [String: Int32] = [:]

    func descriptor(_ path: String) throws -> Int32 {
        lock.lock(); defer { lock.unlock() }
        if let fd = descriptors[path] { return fd }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw RuntimeError(message: "\(path): \(String(cString: strerror(errno)).lowercased())") }
        descriptors[path] = fd
        return fd
    }

    deinit {
        for fd in descriptors.values { close(fd) }
    }
}
