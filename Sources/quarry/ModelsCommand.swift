// `quarry models`: the zoo, one model a line, or a JSON array with --json.

import ArgumentParser
import Foundation
import Quarry
import QuarryRuntime
import QuarryModels

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the model zoo: name, family, input shape, parameters, MACs per item, taps.")

    @Flag(name: .long, help: "Print one JSON array of objects (name, family, input_shape, parameters, macs_per_item, taps, …).")
    var json = false

    @Argument(help: "Only these models (by name); all when none are given.")
    var names: [String] = []

    /// One model as `--json` prints it. Symbolic dimensions are strings ("N"), fixed ones numbers.
    struct Row: Encodable {
        enum DimValue: Encodable {
            case fixed(Int), symbol(String)
            func encode(to encoder: Encoder) throws {
                var c = encoder.singleValueContainer()
                switch self {
                case .fixed(let n): try c.encode(n)
                case .symbol(let s): try c.encode(s)
                }
            }
        }
        struct Input: Encodable { let name: String; let shape: [DimValue] }
        let name: String
        let family: String
        let reference: String
        let input_shape: [DimValue]
        let inputs: [Input]
        let parameters: Int
        let macs_per_item: Int
        let taps: [String]
        let default_tap: String
        let default_pooling: String
        let preprocessing: ModelPreprocessing?
    }

    static func dims(_ shape: [Dim]) -> [Row.DimValue] {
        shape.map {
            switch $0 {
            case .fixed(let n): return .fixed(n)
            case .symbol(let s): return .symbol(s)
            }
        }
    }

    func run() throws {
        let entries = try names.isEmpty ? ModelZoo.all : names.map { try ModelZoo.entry(named: $0) }
        var rows: [Row] = []
        for e in entries {
            let g = try e.build()
            rows.append(Row(
                name: e.name, family: e.family.rawValue, reference: e.reference,
                input_shape: Self.dims(e.inputShape),
                inputs: e.inputs.map { .init(name: $0.name, shape: Self.dims($0.shape)) },
                parameters: g.parameterCount,
                macs_per_item: try g.totalMACs(inputShapes: e.defaultInputShapes()),
                taps: e.taps, default_tap: e.defaultTap, default_pooling: e.defaultPooling.rawValue,
                preprocessing: e.preprocessing))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(rows)
            FileHandle.standardOutput.write(data)
            FileHandle.standardOutput.write(Data("\n".utf8))
            return
        }
        let header = ["name", "family", "input", "parameters", "MACs/item", "taps"]
        let table = rows.map { r in
            [r.name, r.family,
             r.inputs.map { "\($0.name)[\($0.shape.map(Self.text).joined(separator: ","))]" }.joined(separator: " "),
             Self.grouped(r.parameters), Self.scaled(r.macs_per_item),
             r.taps.count <= 4 ? r.taps.joined(separator: " ") : "\(r.taps.prefix(2).joined(separator: " ")) … \(r.taps.last ?? "") (\(r.taps.count))"]
        }
        let widths = header.indices.map { i in ([header[i]] + table.map { $0[i] }).map(\.count).max() ?? 0 }
        for row in [header] + table {
            print(row.enumerated().map { i, s in
                i == row.count - 1 ? s : s.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }

    static func text(_ d: Row.DimValue) -> String {
        switch d {
        case .fixed(let n): return "\(n)"
        case .symbol(let s): return s
        }
    }

    static func grouped(_ n: Int) -> String {
        var s = String(n), out = ""
        while s.count > 3 { out = "," + s.suffix(3) + out; s = String(s.dropLast(3)) }
        return s + out
    }

    static func scaled(_ n: Int) -> String {
        let v = Double(n)
        if v >= 1e12 { return String(format: "%.2f T", v / 1e12) }
        if v >= 1e9 { return String(format: "%.2f G", v / 1e9) }
        if v >= 1e6 { return String(format: "%.2f M", v / 1e6) }
        return "\(n)"
    }
}
