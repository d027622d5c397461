// safetensors: an 8-byte little-endian header length, a JSON header mapping names to dtype, shape
// and [begin, end) offsets into the data that follows, then the data. The file is memory-mapped and
// the header checked in full before any tensor is read: offsets inside the data, sizes equal to
// dtype × shape, no two tensors overlapping, a header length that fits the file.

import Foundation
import Quarry

// @unchecked: immutable after parsing the header; reads copy out of a read-only mapping.
public final class SafeTensorsFile: @unchecked Sendable {
    public struct Info: Sendable, Equatable {
        public var type: ElementType
        public var shape: [Int]
        /// Byte range inside the data section.
        public var range: Range<Int>
    }

    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: Info]
    private let file: MappedFile
    private let dataStart: Int
    /// JSON headers larger than this are refused (the reference implementation's limit).
    static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        func fail(_ m: String) -> QuarryError { .file(path: path, message: m) }
        let r = ByteReader(bytes: file.bytes, path: path)
        guard file.count >= 8 else { throw fail("too short for a safetensors file (\(file.count) bytes)") }
        let n = try r.u64(0)
        guard n <= UInt64(SafeTensorsFile.maxHeaderBytes), Int(n) <= file.count - 8 else {
            throw fail("header length \(n) does not fit the file (\(file.count) bytes)")
        }
        let headerBytes = try file.data(8..<(8 + Int(n)))
        dataStart = 8 + Int(n)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw fail("header is not valid JSON")
        }
        guard let dict = json as? [String: Any] else { throw fail("header is not a JSON object") }
        var metadata: [String: String] = [:]
        var tensors: [String: Info] = [:]
        let dataCount = file.count - dataStart
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__['\(k)'] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any], let dtype = t["dtype"] as? String,
                  let shapeAny = t["shape"] as? [Any], let offsAny = t["data_offsets"] as? [Any] else {
                throw fail("tensor '\(name)': entry needs dtype, shape and data_offsets")
            }
            let type: ElementType
            switch dtype {
            case "F32": type = .float32
            case "F16": type = .float16
            case "BF16": type = .bfloat16
            case "F64": type = .float64
            case "I64": type = .int64
            case "I32": type = .int32
            case "BOOL": type = .bool
            default: throw fail("tensor '\(name)': dtype \(dtype) is not supported (F32, F16, BF16, F64, I64, I32, BOOL are)")
            }
            func integers(_ a: [Any], _ what: String) throws -> [Int] {
                try a.map { v in
                    guard let num = v as? NSNumber, num.doubleValue == num.doubleValue.rounded(),
                          num.doubleValue >= 0, num.doubleValue < 9e18 else {
                        throw fail("tensor '\(name)': \(what) must hold non-negative integers")
                    }
                    return num.intValue
                }
            }
            let shape = try integers(shapeAny, "shape")
            let offs = try integers(offsAny, "data_offsets")
            guard offs.count == 2, offs[0] <= offs[1], offs[1] <= dataCount else {
                throw fail("tensor '\(name)': data_offsets \(offs) lie outside the data (\(dataCount) bytes)")
            }
            guard let count = checkedCount(shape), !count.multipliedReportingOverflow(by: type.byteSize).overflow,
                  count * type.byteSize == offs[1] - offs[0] else {
                throw fail("tensor '\(name)': \(dtype) \(shape) does not take the \(offs[1] - offs[0]) bytes of its data_offsets")
            }
            tensors[name] = Info(type: type, shape: shape, range: offs[0]..<offs[1])
        }
        let sorted = tensors.sorted { ($0.value.range.lowerBound, $0.value.range.upperBound) < ($1.value.range.lowerBound, $1.value.range.upperBound) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.value.range.upperBound > b.value.range.lowerBound {
            throw fail("tensors '\(a.key)' and '\(b.key)' overlap")
        }
        self.metadata = metadata
        self.tensors = tensors
    }

    public var names: [String] { tensors.keys.sorted() }

    /// The tensor converted to float32.
    public func tensor(named name: String) throws -> Tensor {
        guard let info = tensors[name] else {
            throw QuarryError.file(path: path, message: "no tensor named '\(name)'")
        }
        let t = Tensor(uninitializedShape: info.shape)
        if let base = file.bytes.baseAddress, !info.range.isEmpty {
            convertToFloat(base + dataStart + info.range.lowerBound, type: info.type, count: t.count, into: t.pointer)
        }
        return t
    }

    /// Writes float32 tensors (sorted by name) and string metadata to `path`, atomically.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.count * 4]] as [String: Any]
            offset += t.count * 4
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        out.appendLE(UInt64(json.count))
        out.append(json)
        for name in names {
            let t = tensors[name]!
            out.append(Data(bytes: t.pointer, count: t.count * 4))
        }
        try writeAtomically(out, to: path)
    }
}

extension Graph {
    /// Keys that PyTorch modules save beside their parameters but that hold no learned weight:
    /// batch norm's `num_batches_tracked`, the `position_ids` / `token_type_ids` index buffers of
    /// Hugging Face embeddings (saved by transformers before 4.31, so in many sentence-transformers
    /// checkpoints) and GPT-2's causal-mask buffers `attn.bias` / `attn.masked_bias`. Hugging
    /// Face's loader ignores them too; a key the graph has as a parameter is never one of these.
    static func isBuffer(_ key: String) -> Bool {
        key.hasSuffix("num_batches_tracked") || key.hasSuffix("position_ids") || key.hasSuffix("token_type_ids")
            || key.hasSuffix(".attn.bias") || key.hasSuffix(".attn.masked_bias")
    }

    /// Fills this graph's parameters from a checkpoint by name. Every missing key, unexpected key
    /// and shape mismatch is listed in one error; nothing is changed when any is found. Buffers
    /// that hold no weight (see `isBuffer`) are ignored, and so are other extra keys when
    /// `allowUnexpected` is true.
    public mutating func loadParameters(from file: SafeTensorsFile, allowUnexpected: Bool = false) throws {
        var missing: [String] = [], mismatched: [String] = []
        for (name, p) in parameters.sorted(by: { $0.key < $1.key }) {
            guard let info = file.tensors[name] else { missing.append(name); continue }
            if info.shape != p.shape && !(info.shape.isEmpty && p.shape == [1]) {
                mismatched.append("\(name): checkpoint \(info.shape), model \(p.shape)")
            }
        }
        let unexpected = allowUnexpected ? [] : file.names.filter {
            parameters[$0] == nil && !Self.isBuffer($0)
        }
        if !missing.isEmpty || !unexpected.isEmpty || !mismatched.isEmpty {
            func list(_ title: String, _ items: [String]) -> String? {
                guard !items.isEmpty else { return nil }
                let shown = items.prefix(20).joined(separator: ", ")
                return "\(items.count) \(title): \(shown)\(items.count > 20 ? ", …" : "")"
            }
            let parts = [list("missing", missing), list("unexpected", unexpected), list("mis-shaped", mismatched)].compactMap { $0 }
            throw QuarryError.file(path: file.path, message: "checkpoint does not fit the model: " + parts.joined(separator: "; "))
        }
        for name in parameters.keys {
            let t = try file.tensor(named: name)
            parameters[name]!.value = try t.reshaped(parameters[name]!.shape)
        }
    }
}

/// Loads a safetensors checkpoint into a graph by parameter name (see `Graph.loadParameters`).
public func loadParameters(into graph: inout Graph, from file: SafeTensorsFile) throws {
    try graph.loadParameters(from: file)
}
