// Where a model holds its batch. Most models put it first; an exported sequence-first LSTM
// ([T, B, F], PyTorch's nn.LSTM default) holds it second. The scheduler splits batches into
// micro-batches and stacks their outputs along dimension 0, so a model whose batch is elsewhere
// runs behind BatchLeadingGraph: batch-first tensors outside, the model's own layout inside.

import Foundation
import Quarry

/// Each input's batch dimension. With `explicit` (`--batch-dim`), that dimension of every input
/// (negative counts from the end). Otherwise, per input: the symbolic dimension whose name says
/// batch ("batch", "batch_size", "N", "B", …), else the only symbolic one, else dimension 0.
public func batchAxes(of model: LoadedModel, explicit: Int?) throws -> [String: Int] {
    var axes: [String: Int] = [:]
    for input in model.graph.inputs {
        let rank = input.shape.count
        if let explicit {
            let axis = explicit < 0 ? explicit + rank : explicit
            guard axis >= 0, axis < rank else {
                throw RuntimeError(message: "--batch-dim \(explicit): input '\(input.name)' has \(rank) dimension(s)")
            }
            axes[input.name] = axis
            continue
        }
        let symbolic = input.shape.enumerated().compactMap { i, d -> (Int, String)? in
            if case .symbol(let s) = d { return (i, s) } else { return nil }
        }
        let named = symbolic.filter { looksLikeBatch($0.1) }
        if named.count == 1 { axes[input.name] = named[0].0 }
        else if named.isEmpty, symbolic.count == 1 { axes[input.name] = symbolic[0].0 }
        else { axes[input.name] = 0 }
    }
    return axes
}

/// Symbol names exporters give a batch: torch.onnx's dynamic_axes names ("batch", "batch_size"),
/// Keras / tf2onnx's "N", single letters of einsum-style names.
private func looksLikeBatch(_ symbol: String) -> Bool {
    let s = symbol.lowercased()
    return s.contains("batch") || ["n", "b", "bs", "bsz"].contains(s)
}

/// The shapes of synthetic inputs of `batch` items: the batch on each input's batch dimension,
/// `dims` or the model's defaults for the other symbols. A batch dimension the file fixes must be
/// `batch` (the import's reshapes may depend on it), or the error says how to proceed.
public func syntheticShapes(for model: LoadedModel, batch: Int, dims: [String: Int], batchAxes: [String: Int] = [:]) throws -> [String: [Int]] {
    var shapes: [String: [Int]] = [:]
    for input in model.graph.inputs {
        let batchAxis = batchAxes[input.name] ?? 0
        var shape: [Int] = []
        for (i, d) in input.shape.enumerated() {
            switch d {
            case .fixed(let n):
                if i == batchAxis, !batchAxes.isEmpty, n != batch {
                    throw RuntimeError(message: "input '\(input.name)' fixes its batch dimension \(i) at \(n): give --batch \(n), or name the batch dimension with --batch-dim")
                }
                shape.append(n)
            case .symbol(let s):
                if i == batchAxis { shape.append(batch); continue }
                guard let v = dims[s] ?? model.symbolDefaults[s] else {
                    throw RuntimeError(message: "input '\(input.name)' has a symbolic dimension '\(s)': give its size with --dim \(s)=N")
                }
                shape.append(v)
            }
        }
        shapes[input.name] = shape
    }
    return shapes
}

/// Each output's batch dimension, for inputs whose batch dimensions are `inputAxes`: the one
/// dimension of the output that follows the batch size, found by importing the model at two batch
/// sizes. An output that does not follow the batch (or follows it on several dimensions) cannot
/// be split into micro-batches, and the error names it.
public func outputBatchAxes(of model: LoadedModel, outputs: [String], inputAxes: [String: Int], dims: [String: Int]) throws -> [String: Int] {
    guard let onnx = model.onnx else {
        // Zoo graphs are built batch-first.
        return Dictionary(uniqueKeysWithValues: outputs.map { ($0, 0) })
    }
    func outputShapes(_ batch: Int) throws -> [String: [Int]] {
        let inputs = try syntheticShapes(for: model, batch: batch, dims: dims, batchAxes: inputAxes)
        return try onnx.graph(inputShapes: inputs).inferShapes(inputShapes: inputs)
    }
    // Sizes no other dimension is likely to share.
    let (a, b) = (3, 5)
    let small = try outputShapes(a), large = try outputShapes(b)
    var axes: [String: Int] = [:]
    for name in outputs {
        guard let s = small[name], let l = large[name], s.count == l.count else {
            throw RuntimeError(message: "output '\(name)': no shape to find its batch dimension in")
        }
        let changing = s.indices.filter { s[$0] != l[$0] }
        guard changing.count == 1, s[changing[0]] * b == l[changing[0]] * a else {
            throw RuntimeError(message: "output '\(name)' (\(s) at batch \(a), \(l) at batch \(b)) has no single batch dimension; it cannot be split into micro-batches")
        }
        axes[name] = changing[0]
    }
    return axes
}

/// A compiled graph seen batch-first: inputs arrive with the batch on dimension 0 and are moved
/// to the model's batch dimensions; outputs leave with theirs moved to dimension 0. The moves are
/// host copies of whole inner rows, small beside the models that need them (an LSTM's input).
public final class BatchLeadingGraph: AsynchronousCompiledGraph, @unchecked Sendable {
    // @unchecked: every stored property is immutable; `inner` is itself safe to run concurrently
    // as far as the scheduler uses it (one run at a time per worker).
    public let inner: CompiledGraph
    public let inputAxes: [String: Int]
    public let outputAxes: [String: Int]

    public init(_ inner: CompiledGraph, inputAxes: [String: Int], outputAxes: [String: Int]) {
        self.inner = inner
        self.inputAxes = inputAxes
        self.outputAxes = outputAxes
    }

    public var device: Device { inner.device }
    public var graph: Graph { inner.graph }
    public var outputs: [String] { inner.outputs }

    /// Batch-first inputs (as the scheduler gives them) in the model's layout.
    public func modelInputs(_ leading: [String: Tensor]) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: leading.map { name, t in (name, t.movingFrontAxis(to: inputAxes[name] ?? 0)) })
    }

    /// The model's inputs with their batch moved to dimension 0.
    public func leadingInputs(_ model: [String: Tensor]) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: model.map { name, t in (name, t.movingAxisToFront(inputAxes[name] ?? 0)) })
    }

    private func leadingOutputs(_ model: [String: Tensor]) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: model.map { name, t in (name, t.movingAxisToFront(outputAxes[name] ?? 0)) })
    }

    public func run(_ inputs: [String: Tensor], profiler: Profiler?) throws -> [String: Tensor] {
        leadingOutputs(try inner.run(modelInputs(inputs), profiler: profiler))
    }

    public func submit(_ inputs: [String: Tensor]) throws -> PendingRun {
        guard let overlapping = inner as? AsynchronousCompiledGraph else { return CompletedRun(outputs: try run(inputs, profiler: nil)) }
        return MovedRun(pending: try overlapping.submit(modelInputs(inputs)), move: leadingOutputs)
    }

    public func peakActivationBytes(inputShapes: [String: [Int]]) throws -> Int {
        try inner.peakActivationBytes(inputShapes: modelShapes(inputShapes))
    }

    /// Batch-first input shapes in the model's layout.
    public func modelShapes(_ leading: [String: [Int]]) -> [String: [Int]] {
        var model: [String: [Int]] = [:]
        for (name, shape) in leading {
            var s = Array(shape.dropFirst())
            if let batch = shape.first { s.insert(batch, at: inputAxes[name] ?? 0) }
            model[name] = s
        }
        return model
    }
}

/// A pending run whose outputs are rearranged when they arrive.
private struct MovedRun: PendingRun {
    let pending: PendingRun
    let move: ([String: Tensor]) -> [String: Tensor]
    func wait() throws -> [String: Tensor] { move(try pending.wait()) }
}
