// The C ABI of include/quarry.h, built as libquarry.so: each function converts C arguments, calls
// QuarryRuntime (what the command-line tool calls), and converts back. Every error becomes a
// status and a per-thread message; nothing here exits. The Python package loads this library.

import CQuarryABI
import Foundation
import Quarry
import QuarryCPU
import QuarryFormats
import QuarryModels
import QuarryRuntime

// MARK: - Errors

/// This thread's latest error message, a malloc'd C string freed when replaced or at thread exit.
private let errorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

private func setLastError(_ message: String) {
    if let old = pthread_getspecific(errorKey) { free(old) }
    pthread_setspecific(errorKey, strdup(message))
}

private let emptyString: UnsafeMutablePointer<CChar> = strdup("")
private let versionString: UnsafeMutablePointer<CChar> = strdup("0.1.0")

/// Runs `body`, turning any error into QUARRY_ERROR and this thread's message.
private func guarded(_ body: () throws -> quarry_status) -> quarry_status {
    do { return try body() } catch {
        setLastError("\(error)")
        return QUARRY_ERROR
    }
}

private struct ABIError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

@_cdecl("quarry_last_error")
public func cLastError() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(errorKey) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return UnsafePointer(emptyString)
}

@_cdecl("quarry_version")
public func cVersion() -> UnsafePointer<CChar> { UnsafePointer(versionString) }

private func string(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }

/// A malloc'd copy of `s`, freed by whoever keeps it.
private func cString(_ s: String) -> UnsafeMutablePointer<CChar> { strdup(s)! }

// MARK: - Devices

/// The devices with their strings as C strings, found once (OpenCL discovery takes time).
private final class DeviceTable: @unchecked Sendable {
    struct Entry {
        var info: DeviceInfo
        var strings: [UnsafeMutablePointer<CChar>]  // spec, kind, name, vendor, driver version
    }
    let entries: [Entry]
    static let shared = DeviceTable()
    private init() {
        let devices: [Device] = [CPUDevice(threads: nil)] + ((try? openCLDevices()) ?? [])
        entries = devices.map { d in
            let i = d.info
            return Entry(info: i, strings: [i.spec, i.kind.rawValue, i.name, i.vendor, i.driverVersion].map(cString))
        }
    }
}

@_cdecl("quarry_device_count")
public func cDeviceCount() -> Int32 { Int32(DeviceTable.shared.entries.count) }

@_cdecl("quarry_device_get")
public func cDeviceGet(_ index: Int32, _ out: UnsafeMutablePointer<quarry_device_info>?) -> quarry_status {
    guarded {
        let entries = DeviceTable.shared.entries
        guard let out else { throw ABIError("quarry_device_get: out is NULL") }
        guard index >= 0, Int(index) < entries.count else {
            throw ABIError("no device \(index): there are \(entries.count) (0 to \(entries.count - 1))")
        }
        let e = entries[Int(index)]
        let s = e.strings.map { UnsafePointer($0) }
        out.pointee = quarry_device_info(
            spec: s[0], kind: s[1], name: s[2], vendor: s[3], driver_version: s[4],
            compute_units: Int64(e.info.computeUnits), global_memory_bytes: Int64(e.info.globalMemoryBytes),
            local_memory_bytes: Int64(e.info.localMemoryBytes), max_allocation_bytes: Int64(e.info.maxAllocationBytes),
            fp16: e.info.supportsFP16 ? 1 : 0, fp64: e.info.supportsFP64 ? 1 : 0)
        return QUARRY_OK
    }
}

// MARK: - Engines

/// An Engine with C copies of what the header hands out (names, input shapes), kept for its life.
final class CEngine {
    let engine: Engine
    let name: UnsafeMutablePointer<CChar>
    let taps: [UnsafeMutablePointer<CChar>]
    let outputs: [UnsafeMutablePointer<CChar>]
    struct Input {
        var name: UnsafeMutablePointer<CChar>
        var dims: UnsafeMutableBufferPointer<Int64>
        var symbols: UnsafeMutableBufferPointer<UnsafePointer<CChar>?>
    }
    let inputs: [Input]
    static let dtype: UnsafeMutablePointer<CChar> = strdup("float32")

    init(_ engine: Engine) {
        self.engine = engine
        name = strdup(engine.model.name)
        taps = engine.taps.map(cString)
        outputs = engine.model.graph.outputs.map(cString)
        inputs = engine.inputs.map { input in
            let dims = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(input.shape.count, 1))
            let symbols = UnsafeMutableBufferPointer<UnsafePointer<CChar>?>.allocate(capacity: max(input.shape.count, 1))
            for (i, d) in input.shape.enumerated() {
                switch d {
                case .fixed(let n): dims[i] = Int64(n); symbols[i] = nil
                case .symbol(let s): dims[i] = -1; symbols[i] = UnsafePointer(strdup(s))
                }
            }
            return Input(name: strdup(input.name), dims: dims, symbols: symbols)
        }
    }

    deinit {
        free(name)
        for p in taps + outputs { free(p) }
        for i in inputs {
            free(i.name)
            for s in i.symbols.prefix(Int(i.dims.count)) { if let s { free(UnsafeMutablePointer(mutating: s)) } }
            i.dims.deallocate()
            i.symbols.deallocate()
        }
    }
}

private func engineObject(_ p: OpaquePointer?) throws -> CEngine {
    guard let p else { throw ABIError("the engine is NULL") }
    return Unmanaged<CEngine>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

@_cdecl("quarry_engine_open")
public func cEngineOpen(_ model: UnsafePointer<CChar>?, _ weights: UnsafePointer<CChar>?, _ device: UnsafePointer<CChar>?,
                        _ cpuThreads: Int32, _ precision: UnsafePointer<CChar>?,
                        _ out: UnsafeMutablePointer<OpaquePointer?>?) -> quarry_status {
    guarded {
        guard let out else { throw ABIError("quarry_engine_open: out is NULL") }
        out.pointee = nil
        guard let model = string(model), !model.isEmpty else { throw ABIError("no model given: a zoo name or an .onnx file") }
        guard cpuThreads >= 0 else { throw ABIError("cpu_threads must be 0 (every core) or more, got \(cpuThreads)") }
        // The runtime refuses a precision no kernel of the device computes in (its message says why).
        let engine = try Engine(model: model, weights: string(weights), device: string(device) ?? "cpu",
                                cpuThreads: cpuThreads == 0 ? nil : Int(cpuThreads), precision: string(precision) ?? "fp32")
        out.pointee = OpaquePointer(Unmanaged.passRetained(CEngine(engine)).toOpaque())
        return QUARRY_OK
    }
}

@_cdecl("quarry_engine_free")
public func cEngineFree(_ engine: OpaquePointer?) {
    guard let engine else { return }
    Unmanaged<CEngine>.fromOpaque(UnsafeRawPointer(engine)).release()
}

@_cdecl("quarry_engine_name")
public func cEngineName(_ engine: OpaquePointer?) -> UnsafePointer<CChar> {
    (try? engineObject(engine)).map { UnsafePointer($0.name) } ?? UnsafePointer(emptyString)
}

@_cdecl("quarry_engine_untrained")
public func cEngineUntrained(_ engine: OpaquePointer?) -> Int32 {
    ((try? engineObject(engine))?.engine.untrained ?? false) ? 1 : 0
}

@_cdecl("quarry_engine_input_count")
public func cEngineInputCount(_ engine: OpaquePointer?) -> Int32 {
    Int32((try? engineObject(engine))?.inputs.count ?? 0)
}

@_cdecl("quarry_engine_input")
public func cEngineInput(_ engine: OpaquePointer?, _ index: Int32, _ out: UnsafeMutablePointer<quarry_input_info>?) -> quarry_status {
    guarded {
        let e = try engineObject(engine)
        guard let out else { throw ABIError("quarry_engine_input: out is NULL") }
        guard index >= 0, Int(index) < e.inputs.count else {
            throw ABIError("no input \(index): '\(e.engine.model.name)' has \(e.inputs.count)")
        }
        let i = e.inputs[Int(index)]
        let rank = e.engine.inputs[Int(index)].shape.count
        out.pointee = quarry_input_info(
            name: UnsafePointer(i.name), dtype: UnsafePointer(CEngine.dtype), rank: Int32(rank),
            dims: UnsafePointer(i.dims.baseAddress), symbols: UnsafePointer(i.symbols.baseAddress))
        return QUARRY_OK
    }
}

@_cdecl("quarry_engine_output_count")
public func cEngineOutputCount(_ engine: OpaquePointer?) -> Int32 {
    Int32((try? engineObject(engine))?.outputs.count ?? 0)
}

@_cdecl("quarry_engine_output")
public func cEngineOutput(_ engine: OpaquePointer?, _ index: Int32) -> UnsafePointer<CChar>? {
    guard let e = try? engineObject(engine), index >= 0, Int(index) < e.outputs.count else { return nil }
    return UnsafePointer(e.outputs[Int(index)])
}

@_cdecl("quarry_engine_tap_count")
public func cEngineTapCount(_ engine: OpaquePointer?) -> Int32 {
    Int32((try? engineObject(engine))?.taps.count ?? 0)
}

@_cdecl("quarry_engine_tap")
public func cEngineTap(_ engine: OpaquePointer?, _ index: Int32) -> UnsafePointer<CChar>? {
    guard let e = try? engineObject(engine), index >= 0, Int(index) < e.taps.count else { return nil }
    return UnsafePointer(e.taps[Int(index)])
}

/// A caller's tensor as a Tensor over its memory (no copy), after checking what C cannot.
private func borrowedTensor(_ t: quarry_tensor, what: String) throws -> Tensor {
    guard t.rank >= 0, t.rank <= 64 else { throw ABIError("\(what) has rank \(t.rank)") }
    guard t.rank == 0 || t.shape != nil else { throw ABIError("\(what) has no shape array") }
    let shape = (0..<Int(t.rank)).map { Int(t.shape![$0]) }
    guard shape.allSatisfy({ $0 > 0 }) else { throw ABIError("\(what) has shape \(shape): every dimension must be at least 1") }
    guard let data = t.data else { throw ABIError("\(what) has no data (NULL)") }
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, storage: TensorStorage(borrowing: UnsafeMutablePointer(mutating: data), count: count))
}

private func borrowedInputs(_ inputs: UnsafePointer<quarry_tensor>?, _ count: Int32) throws -> [String: Tensor] {
    guard count >= 0 else { throw ABIError("input_count is \(count)") }
    guard count == 0 || inputs != nil else { throw ABIError("inputs is NULL with input_count \(count)") }
    var result: [String: Tensor] = [:]
    for i in 0..<Int(count) {
        let t = inputs![i]
        guard let name = string(t.name) else { throw ABIError("input \(i) has no name") }
        guard result[name] == nil else { throw ABIError("input '\(name)' is given twice") }
        result[name] = try borrowedTensor(t, what: "input '\(name)'")
    }
    return result
}

private func names(_ list: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int32) throws -> [String]? {
    guard count > 0 else {
        guard count == 0 else { throw ABIError("output_count is \(count)") }
        return nil
    }
    guard let list else { throw ABIError("outputs is NULL with output_count \(count)") }
    return try (0..<Int(count)).map { i in
        guard let n = string(list[i]) else { throw ABIError("output name \(i) is NULL") }
        return n
    }
}

// MARK: - Results

/// Named tensors handed to C: the tensors (library-owned memory) and C copies of names and shapes.
final class CResult {
    let tensors: [Tensor]
    let names: [UnsafeMutablePointer<CChar>]
    let shapes: [UnsafeMutableBufferPointer<Int64>]

    init(_ named: [(String, Tensor)]) {
        tensors = named.map(\.1)
        names = named.map { cString($0.0) }
        shapes = named.map { _, t in
            let b = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(t.rank, 1))
            for (i, n) in t.shape.enumerated() { b[i] = Int64(n) }
            return b
        }
    }

    deinit {
        for n in names { free(n) }
        for s in shapes { s.deallocate() }
    }

    func handOut(_ out: UnsafeMutablePointer<OpaquePointer?>) {
        out.pointee = OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }
}

private func resultObject(_ p: OpaquePointer?) throws -> CResult {
    guard let p else { throw ABIError("the result is NULL") }
    return Unmanaged<CResult>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

@_cdecl("quarry_result_count")
public func cResultCount(_ result: OpaquePointer?) -> Int32 {
    Int32((try? resultObject(result))?.tensors.count ?? 0)
}

@_cdecl("quarry_result_get")
public func cResultGet(_ result: OpaquePointer?, _ index: Int32, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                       _ data: UnsafeMutablePointer<UnsafePointer<Float>?>?, _ rank: UnsafeMutablePointer<Int32>?,
                       _ shape: UnsafeMutablePointer<UnsafePointer<Int64>?>?) -> quarry_status {
    guarded {
        let r = try resultObject(result)
        guard index >= 0, Int(index) < r.tensors.count else { throw ABIError("no result \(index): the result holds \(r.tensors.count)") }
        let i = Int(index)
        name?.pointee = UnsafePointer(r.names[i])
        data?.pointee = UnsafePointer(r.tensors[i].pointer)
        rank?.pointee = Int32(r.tensors[i].rank)
        shape?.pointee = UnsafePointer(r.shapes[i].baseAddress)
        return QUARRY_OK
    }
}

@_cdecl("quarry_result_free")
public func cResultFree(_ result: OpaquePointer?) {
    guard let result else { return }
    Unmanaged<CResult>.fromOpaque(UnsafeRawPointer(result)).release()
}

// MARK: - Runs

/// Runs the engine and returns the outputs in the order asked (default: the model's outputs).
private func runNamed(_ e: CEngine, _ inputs: UnsafePointer<quarry_tensor>?, _ inputCount: Int32,
                      _ requested: [String]?) throws -> [(String, Tensor)] {
    let feed = try borrowedInputs(inputs, inputCount)
    let results = try e.engine.run(feed, outputs: requested)
    // `results` holds every requested name (Engine.run checks); the default outputs are the
    // model's, in its order, then any other it returned.
    let order = requested ?? (e.engine.model.graph.outputs.filter { results[$0] != nil }
        + results.keys.filter { !e.engine.model.graph.outputs.contains($0) }.sorted())
    return order.map { ($0, results[$0]!) }
}

@_cdecl("quarry_engine_run")
public func cEngineRun(_ engine: OpaquePointer?, _ inputs: UnsafePointer<quarry_tensor>?, _ inputCount: Int32,
                       _ outputs: UnsafePointer<UnsafePointer<CChar>?>?, _ outputCount: Int32,
                       _ out: UnsafeMutablePointer<OpaquePointer?>?) -> quarry_status {
    guarded {
        guard let out else { throw ABIError("quarry_engine_run: out is NULL") }
        out.pointee = nil
        let e = try engineObject(engine)
        CResult(try runNamed(e, inputs, inputCount, try names(outputs, outputCount))).handOut(out)
        return QUARRY_OK
    }
}

@_cdecl("quarry_engine_run_into")
public func cEngineRunInto(_ engine: OpaquePointer?, _ inputs: UnsafePointer<quarry_tensor>?, _ inputCount: Int32,
                           _ outputs: UnsafeMutablePointer<quarry_output>?, _ outputCount: Int32) -> quarry_status {
    guarded {
        let e = try engineObject(engine)
        guard outputCount > 0, let outputs else { throw ABIError("quarry_engine_run_into needs at least one output") }
        let requested = try (0..<Int(outputCount)).map { i in
            guard let n = string(outputs[i].name) else { throw ABIError("output \(i) has no name") }
            return n
        }
        let results = try runNamed(e, inputs, inputCount, requested)
        // Every buffer is checked before any is written.
        for (i, (name, t)) in results.enumerated() {
            guard t.rank <= Int(QUARRY_MAX_RANK) else { throw ABIError("output '\(name)' has rank \(t.rank), over QUARRY_MAX_RANK") }
            guard outputs[i].data != nil, outputs[i].capacity >= Int64(t.count) else {
                throw ABIError("output '\(name)' of shape \(t.shape) needs \(t.count) floats; its buffer holds \(outputs[i].capacity)")
            }
        }
        for (i, (_, t)) in results.enumerated() {
            outputs[i].data!.update(from: t.pointer, count: t.count)
            outputs[i].rank = Int32(t.rank)
            withUnsafeMutableBytes(of: &outputs[i].shape) { raw in
                let dims = raw.bindMemory(to: Int64.self)
                for (d, n) in t.shape.enumerated() { dims[d] = Int64(n) }
            }
        }
        return QUARRY_OK
    }
}

@_cdecl("quarry_engine_features")
public func cEngineFeatures(_ engine: OpaquePointer?, _ input: UnsafePointer<quarry_tensor>?, _ layer: UnsafePointer<CChar>?,
                            _ pool: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> quarry_status {
    guarded {
        guard let out else { throw ABIError("quarry_engine_features: out is NULL") }
        out.pointee = nil
        let e = try engineObject(engine)
        guard let input else { throw ABIError("quarry_engine_features: input is NULL") }
        let model = e.engine.model
        let layerName: String
        if let l = string(layer) { layerName = l } else {
            guard model.featureLayers.count == 1 else {
                throw ABIError("'\(model.name)' has \(model.featureLayers.count) feature layers \(model.featureLayers): name one")
            }
            layerName = model.featureLayers[0]
        }
        let pooling: FeaturePooling
        if let p = string(pool) {
            guard let parsed = FeaturePooling(rawValue: p) else {
                throw ABIError("unknown pooling '\(p)': use \(FeaturePooling.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            pooling = parsed
        } else {
            pooling = layer == nil ? model.defaultPooling : .none
        }
        // As `quarry extract`: one data input, and any mask inputs made from it (0 is padding).
        let dataInputs = e.engine.inputs.filter { !model.maskInputs.contains($0.name) }
        guard dataInputs.count == 1 else {
            throw ABIError("features feed models with one data input; \(model.name) takes \(e.engine.inputs.map(\.name)) (use run)")
        }
        let batch = try borrowedTensor(input.pointee, what: "input '\(dataInputs[0].name)'")
        var feed = [dataInputs[0].name: batch]
        var mask: Tensor? = nil
        for m in e.engine.inputs where model.maskInputs.contains(m.name) {
            let t = mask ?? {
                let t = Tensor(uninitializedShape: batch.shape)
                for i in 0..<t.count { t[flat: i] = batch[flat: i] == 0 ? 0 : 1 }
                return t
            }()
            mask = t
            feed[m.name] = t
        }
        let outputs = try e.engine.run(feed, outputs: [layerName])
        let pooled = try poolFeatures(outputs[layerName]!, pool: pooling, l2: false, layer: layerName, mask: mask)
        CResult([(layerName, pooled)]).handOut(out)
        return QUARRY_OK
    }
}

@_cdecl("quarry_engine_preprocess_image")
public func cEnginePreprocessImage(_ engine: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ bytes: UnsafePointer<UInt8>?,
                                   _ size: Int, _ name: UnsafePointer<CChar>?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> quarry_status {
    guarded {
        guard let out else { throw ABIError("quarry_engine_preprocess_image: out is NULL") }
        out.pointee = nil
        let e = try engineObject(engine)
        let image: DecodedImage
        if let path = string(path) {
            image = try decodeImage(at: path)
        } else {
            guard let bytes, size > 0 else { throw ABIError("\(string(name) ?? "image"): no bytes to decode") }
            image = try decodeImage(Array(UnsafeBufferPointer(start: bytes, count: size)), name: string(name) ?? "image bytes")
        }
        CResult([("image", try e.engine.model.preprocessing.apply(to: image))]).handOut(out)
        return QUARRY_OK
    }
}

// MARK: - Extraction

@_cdecl("quarry_extract")
public func cExtract(_ paths: UnsafePointer<UnsafePointer<CChar>?>?, _ pathCount: Int32, _ model: UnsafePointer<CChar>?,
                     _ weights: UnsafePointer<CChar>?, _ layers: UnsafePointer<CChar>?, _ pool: UnsafePointer<CChar>?,
                     _ batchSize: Int32, _ device: UnsafePointer<CChar>?, _ cpuThreads: Int32,
                     _ output: UnsafePointer<CChar>?) -> quarry_status {
    guarded {
        guard let model = string(model) else { throw ABIError("no model given") }
        guard let output = string(output) else { throw ABIError("no output file given") }
        guard let inputs = try names(paths, pathCount) else { throw ABIError("no input paths given") }
        guard batchSize >= 0, cpuThreads >= 0 else { throw ABIError("batch_size and cpu_threads must not be negative") }
        var x = Extraction(model: model, input: inputs, output: output)
        x.weights = string(weights)
        x.layer = string(layers).map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        if let p = string(pool) {
            guard let parsed = FeaturePooling(rawValue: p) else {
                throw ABIError("unknown pooling '\(p)': use \(FeaturePooling.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            x.pool = parsed
        }
        if batchSize > 0 { x.batch = Int(batchSize) }
        x.device = string(device) ?? "cpu"
        x.cpuThreads = cpuThreads == 0 ? nil : Int(cpuThreads)
        x.quiet = true
        switch try x.run() {
        case .partial:
            setLastError("some inputs could not be read: see the manifest's failed list")
            return QUARRY_PARTIAL
        default:
            return QUARRY_OK
        }
    }
}
