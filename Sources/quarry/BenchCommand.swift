// `quarry bench`: how fast a model, a GEMM or a convolution runs on the chosen devices, and how
// close each layer gets to the hardware's limit (the roofline of its arithmetic intensity).

import ArgumentParser
import Foundation
import Quarry
import QuarryRuntime
import QuarryCPU

/// `quarry bench`: a group of three subcommands. `model` is the default, so the older spelling
/// `quarry bench MODEL` (and `quarry bench gemm` / `conv`, now subcommands) keeps working.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark a model, a GEMM or a convolution on the chosen devices.",
        discussion: """
            Prints latency percentiles, items/s, achieved GFLOP/s and its fraction of the devices'
            measured peak, and (models) a per-layer profile. With --json the last stdout line is one
            JSON object (items_per_second, median_ms, gflops, peak_gflops, ...).
            Examples:
              quarry bench resnet50 --batch 1 8 --device cpu      (same as: quarry bench model resnet50 ...)
              quarry bench gemm --m 2048 --n 2048 --k 2048 --device cpu --json
              quarry bench conv --input-shape 1x64x56x56 --out-channels 64 --kernel 3 --pad 1
            """,
        subcommands: [BenchModelCommand.self, BenchGEMMCommand.self, BenchConvCommand.self],
        defaultSubcommand: BenchModelCommand.self)
}

/// Options every bench subcommand takes.
struct BenchOptions: ParsableArguments {
    @OptionGroup var deviceOptions: DeviceOptions

    @Flag(name: .long, help: "End with one JSON line holding the figures.")
    var json = false

    @Option(name: .long, help: "A JSON file from an earlier --json run to compare against.")
    var compare: String?

    @Option(name: .long, help: "Seconds of timed runs per batch size (at least --min-iterations runs).")
    var seconds: Double = 3

    @Option(name: .long, help: "Fewest timed runs per batch size.")
    var minIterations: Int = 5

    @Option(name: .long, help: "Untimed runs first (the first run plans memory and packs weights).")
    var warmup: Int = 2

    @Flag(name: .long, help: "Skip the per-layer profile.")
    var noProfile = false

    func validate() throws {
        guard seconds > 0, minIterations >= 1, warmup >= 0 else { throw ValidationError("--seconds, --min-iterations and --warmup must be positive") }
    }

    /// Prints the comparison and the JSON line a subcommand's report asks for.
    func finish(_ report: [String: JSONValue]) throws {
        if let compare { printComparison(report, against: try loadReport(compare)) }
        if json { print(try jsonLine(report)) }
    }
}

struct BenchModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Benchmark a zoo model or an .onnx file (the default: `quarry bench MODEL`).")

    @Argument(help: "A zoo model name or an .onnx file.")
    var target: String

    @Option(name: .long, parsing: .upToNextOption, help: "Batch sizes to measure.")
    var batch: [Int] = [8]

    @OptionGroup var options: BenchOptions

    @Option(name: .long, help: "Model tensors to stop at (comma list); default: the model's outputs.")
    var outputs: String?

    @Option(name: .long, help: "Weights for a zoo model (.safetensors).")
    var weights: String?

    @Option(name: .long, parsing: .upToNextOption,
            help: "Sizes of symbolic input dimensions other than the batch, NAME=VALUE (e.g. sequence=128).")
    var dim: [String] = []

    @Option(name: .customLong("batch-dim"),
            help: "The inputs' batch dimension (e.g. 1 for a sequence-first LSTM); default: the symbolic dimension named like a batch, else the only symbolic one, else 0.")
    var batchDim: Int?

    func validate() throws {
        guard !batch.isEmpty, batch.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batch takes sizes of at least 1") }
    }

    func run() throws {
        try exitingOnError {
            var bench = ModelBench(options: options, outputs: outputs)
            bench.dims = try parseDims(dim)
            bench.batchDim = batchDim
            try options.finish(try bench.benchModel(target, weights: weights, batches: batch))
        }
    }
}

struct BenchGEMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm", abstract: "Benchmark one SGEMM of m x n x k.")

    @Option(name: .long, help: "GEMM rows.") var m: Int = 2048
    @Option(name: .long, help: "GEMM columns.") var n: Int = 2048
    @Option(name: .long, help: "GEMM depth.") var k: Int = 2048
    @OptionGroup var options: BenchOptions

    func run() throws {
        try exitingOnError { try options.finish(try benchGEMM()) }
    }
}

struct BenchConvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "conv", abstract: "Benchmark one convolution layer.")

    @Option(name: .long, help: "Convolution input NxCxHxW.") var inputShape: String = "1x64x56x56"
    @Option(name: .long, help: "Convolution output channels.") var outChannels: Int = 64
    @Option(name: .long, help: "Convolution kernel size.") var kernel: Int = 3
    @Option(name: .long, help: "Convolution stride.") var stride: Int = 1
    @Option(name: .long, help: "Convolution padding (all sides).") var pad: Int = 1
    @Option(name: .long, help: "Convolution groups.") var groups: Int = 1
    @OptionGroup var options: BenchOptions

    func run() throws {
        try exitingOnError { try options.finish(try benchConv()) }
    }
}

// MARK: - GEMM and convolution

extension BenchGEMMCommand {
    func benchGEMM() throws -> [String: JSONValue] {
        let devices = try options.deviceOptions.devices()
        guard devices.count == 1 else { throw RuntimeError(message: "bench gemm takes one device, got \(devices.count)") }
        let device = devices[0]
        guard m > 0, n > 0, k > 0 else { throw RuntimeError(message: "--m, --n and --k must be positive") }
        let figures: (seconds: Double, gflops: Double, peak: Double)
        var peakLabel = "fp32"
        switch device {
        case let cpu as CPUDevice:
            let bf16 = Precision(rawValue: options.deviceOptions.precision.lowercased()) == .bf16
            let bf16Peak = bf16 ? measureBF16PeakGFLOPS(threads: cpu.threads) : nil
            if bf16Peak != nil { peakLabel = "bf16" }
            let peak = bf16Peak ?? measureFP32PeakGFLOPS(threads: cpu.threads)
            let r = QuarryCPU.benchmarkGEMM(m: m, n: n, k: k, threads: cpu.threads.count)
            figures = (r.seconds, r.gflops, peak)
        default:
            figures = try benchmarkOpenCLGEMM(device, m: m, n: n, k: k)
        }
        print(String(format: "gemm %dx%dx%d on %@: %.3f ms, %.1f GFLOP/s, %.0f%% of the measured %.1f GFLOP/s %@ peak",
                     m, n, k, device.info.spec, figures.seconds * 1e3, figures.gflops, 100 * figures.gflops / figures.peak, figures.peak,
                     peakLabel))
        return [
            "target": "gemm", "device": .string(device.info.spec), "device_name": .string(device.info.name),
            "m": .number(Double(m)), "n": .number(Double(n)), "k": .number(Double(k)),
            "median_ms": .number(figures.seconds * 1e3), "items_per_second": .number(1 / figures.seconds),
            "gflops": .number(figures.gflops), "peak_gflops": .number(figures.peak),
            "fraction_of_peak": .number(figures.gflops / figures.peak),
        ]
    }
}

extension BenchConvCommand {
    func benchConv() throws -> [String: JSONValue] {
        let dims = inputShape.lowercased().split(separator: "x").compactMap { Int($0) }
        guard dims.count == 4, dims.allSatisfy({ $0 > 0 }) else {
            throw RuntimeError(message: "--input-shape must be NxCxHxW, got '\(inputShape)'")
        }
        let b = GraphBuilder()
        let x = b.input("x", shape: dims.map { Dim.fixed($0) })
        let attributes = Conv2DAttributes(kernel: (kernel, kernel), stride: (stride, stride), padding: Padding2D(pad), groups: groups)
        guard groups >= 1, dims[1] % groups == 0, outChannels % groups == 0 else {
            throw RuntimeError(message: "--groups \(groups) must divide the input channels \(dims[1]) and --out-channels \(outChannels)")
        }
        let w = b.parameter("conv.weight", shape: [outChannels, dims[1] / groups, kernel, kernel], initializer: .he(fanIn: dims[1] / groups * kernel * kernel))
        let bias = b.parameter("conv.bias", shape: [outChannels], initializer: .constant(0.01))
        let y = b.add("conv", .conv2d(attributes), x, w, bias)
        var graph = b.build(outputs: [y])
        graph.materializeParameters(seed: 1)
        let label = "conv \(inputShape) -> \(outChannels) k\(kernel) s\(stride) p\(pad)" + (groups > 1 ? " g\(groups)" : "")
        return try ModelBench(options: options, outputs: nil).benchGraph(graph, label: label, batches: [dims[0]], fixedBatch: true)
    }
}

/// JSON values for reports, so that a report is both printed and compared.
enum JSONValue: Codable, ExpressibleByStringLiteral {
    case number(Double), string(String), bool(Bool), array([JSONValue]), object([String: JSONValue])
    init(stringLiteral s: String) { self = .string(s) }
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let d): try c.encode(d.isFinite ? d : 0)
        case .string(let s): try c.encode(s)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
    var number: Double? { if case .number(let d) = self { return d } else { return nil } }
}

func loadReport(_ path: String) throws -> [String: JSONValue] {
    guard let data = FileManager.default.contents(atPath: path) else { throw RuntimeError(message: "\(path): cannot read") }
    // A saved --json run may hold the whole stdout: take its last non-empty line.
    let text = String(decoding: data, as: UTF8.self)
    guard let line = text.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
        throw RuntimeError(message: "\(path): empty")
    }
    do {
        return try JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8))
    } catch {
        throw RuntimeError(message: "\(path): not a `quarry bench --json` report (\(error))")
    }
}

func printComparison(_ new: [String: JSONValue], against old: [String: JSONValue]) {
    print("change against the saved run:")
    for key in ["items_per_second", "median_ms", "p90_ms", "p99_ms", "gflops", "fraction_of_peak"] {
        guard let a = old[key]?.number, let b = new[key]?.number, a != 0 else { continue }
        let better = key.hasSuffix("_ms") ? b < a : b > a
        print(String(format: "  %-18@ %12.3f -> %12.3f  (%+.1f%%, %@)", key as NSString, a, b, 100 * (b - a) / a, better ? "better" : "worse"))
    }
}
