// The model half of `quarry bench`: timed batches through the scheduler on every chosen device,
// latency percentiles, throughput, GFLOP/s against the measured peak, and a per-layer roofline.

import Foundation
import Quarry
import QuarryCPU
import QuarryRuntime

/// A benchmark run with its options: the timing loop shared by `bench model` and `bench conv`.
struct ModelBench {
    var options: BenchOptions
    /// Model tensors to stop at (comma list); nil: the graph's outputs.
    var outputs: String?
    /// Sizes of symbolic dimensions other than the batch.
    var dims: [String: Int] = [:]
    /// `--batch-dim`: every input's batch dimension; nil: found from the inputs' symbols.
    var batchDim: Int? = nil

    var deviceOptions: DeviceOptions { options.deviceOptions }
    var warmup: Int { options.warmup }
    var seconds: Double { options.seconds }
    var minIterations: Int { options.minIterations }
    var noProfile: Bool { options.noProfile }

    init(options: BenchOptions, outputs: String?) {
        self.options = options
        self.outputs = outputs
    }

    func benchModel(_ target: String, weights: String?, batches: [Int]) throws -> [String: JSONValue] {
        let model = try loadModel(target, weights: weights)
        var graph = model.graph
        if graph.parameters.values.contains(where: { $0.value == nil }) { graph.materializeParameters(seed: 0) }
        let dims = self.dims
        let inputAxes = try batchAxes(of: model, explicit: batchDim)
        // A model whose batch is not its leading dimension runs batch-first behind
        // BatchLeadingGraph, since the scheduler splits and stacks along dimension 0.
        let outputAxes = inputAxes.values.contains { $0 != 0 }
            ? try outputBatchAxes(of: model, outputs: outputs.map { $0.split(separator: ",").map(String.init) } ?? graph.outputs,
                                  inputAxes: inputAxes, dims: dims)
            : nil
        // An ONNX import depends on the input shapes (reshapes fold the batch size), so the model
        // compiles through `LoadedModel.compile`, once per batch size.
        return try benchGraph(graph, label: model.name, batches: batches, fixedBatch: false,
                              makeInputs: { b in
                                  var inputs = try syntheticInputs(for: model, batch: b, dims: dims, batchAxes: inputAxes)
                                  for (name, axis) in inputAxes where axis != 0 { inputs[name] = inputs[name]!.movingAxisToFront(axis) }
                                  return inputs
                              },
                              compile: { device, outputs in
                                  var m = model
                                  m.graph = graph
                                  let compiled = try m.compile(on: device, outputs: outputs)
                                  guard let outputAxes else { return compiled }
                                  return BatchLeadingGraph(compiled, inputAxes: inputAxes, outputAxes: outputAxes)
                              })
    }

    /// Times `graph` at each batch size. `fixedBatch` graphs take their inputs' declared shapes.
    func benchGraph(
        _ graph: Graph, label: String, batches: [Int], fixedBatch: Bool,
        makeInputs: ((Int) throws -> [String: Tensor])? = nil,
        compile: ((Device, [String]) throws -> CompiledGraph)? = nil
    ) throws -> [String: JSONValue] {
        let devices = try deviceOptions.devices()
        let outputs = outputs.map { $0.split(separator: ",").map(String.init) } ?? graph.outputs
        let workers = try devices.map { d in try compile?(d, outputs) ?? d.compile(graph, outputs: outputs) }
        // Read against the peak of the arithmetic in use (bf16's where the CPU runs it on vdpbf16ps).
        let precision = Precision(rawValue: deviceOptions.precision.lowercased()) ?? .fp32
        let limits = try devices.map { try measureLimits($0, bf16: precision == .bf16).reading(precision) }
        let peak = limits.reduce(0) { $0 + $1.peakGFLOPS }
        let peakLabel = precision == .bf16 && limits.contains(where: { $0.bf16PeakGFLOPS != nil }) ? "bf16" : "fp32"
        let compiled = workers[0]
        var runs: [JSONValue] = []
        var last: [String: JSONValue] = [:]

        for b in batches {
            let inputs: [String: Tensor]
            if let makeInputs { inputs = try makeInputs(b) } else {
                var rng = SeededGenerator(seed: 1)
                inputs = Dictionary(uniqueKeysWithValues: graph.inputs.map { input in
                    (input.name, Tensor.random(shape: input.shape.map { if case .fixed(let n) = $0 { return n } else { return b } }, using: &rng))
                })
            }
            // The scheduler's inputs are batch-first; a BatchLeadingGraph's model sees its own layout.
            let leading = compiled as? BatchLeadingGraph
            let inputShapes = leading?.modelShapes(inputs.mapValues(\.shape)) ?? inputs.mapValues(\.shape)
            let rows = fixedBatch ? (inputs.values.first?.shape.first ?? 1) : b
            // On one device "batch B" means the model runs on B items at once, as a peer runtime
            // given a batch of B does; across devices the scheduler splits it adaptively.
            let scheduler = Scheduler(workers: workers, options: SchedulerOptions(microBatch: deviceOptions.microBatch ?? (workers.count == 1 ? rows : nil)))

            for _ in 0..<max(warmup, 1) { _ = try scheduler.runBatch(inputs) }
            // A shape-specialised graph holds the graph of the shapes it ran last: a micro-batch's,
            // not the whole batch's, when --micro-batch splits it.
            let batchGraph = try ((leading?.inner ?? compiled) as? ShapeSpecializedGraph)?.graph(for: inputShapes) ?? compiled.graph
            let shapes = try batchGraph.inferShapes(inputShapes: inputShapes)
            let flopsPerBatch = 2 * Double(batchGraph.nodes.reduce(0) { $0 + macs(of: $1, shapes: shapes) })
            // On one device, batch after batch, each timed alone (what a peer runtime's latency
            // means). Across devices, one stream of identical batches, as an extraction runs
            // them: the devices move on to the next batch while one is finished (a micro-batch
            // may span two), so a batch's time is the interval between consecutive completions.
            var latencies: [Double] = []
            var shares: [String: (items: Int, busy: Double, microBatches: Int)] = [:]
            let start = now()
            var lastDone = start
            func record(_ run: [DeviceShare]) {
                for d in run {
                    shares[d.device, default: (0, 0, 0)].items += d.items
                    shares[d.device, default: (0, 0, 0)].busy += d.busySeconds
                    shares[d.device, default: (0, 0, 0)].microBatches += d.microBatches
                }
            }
            if workers.count == 1 {
                while latencies.count < minIterations || now() - start < seconds {
                    let t0 = now()
                    record(try scheduler.run(batch: inputs).shares)
                    lastDone = now()
                    latencies.append(lastDone - t0)
                    if latencies.count >= 10_000 { break }
                }
            } else {
                var issued = 0
                let stream = AnyIterator<[String: Tensor]> {
                    guard issued < 10_000, issued < minIterations || now() - start < seconds else { return nil }
                    issued += 1
                    return inputs
                }
                record(try scheduler.run(batches: stream) { _, _ in
                    let t = now()
                    latencies.append(t - lastDone)
                    lastDone = t
                })
            }
            let total = lastDone - start
            latencies.sort()
            func pct(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count - 1) * p + 0.5))] }
            let median = pct(0.5)
            let itemsPerSecond = Double(rows * latencies.count) / total
            let gflops = flopsPerBatch / median / 1e9
            print(String(format: "%@ batch %d on %@: median %.2f ms (p90 %.2f, p99 %.2f), %.1f items/s, %.1f GFLOP/s = %.0f%% of the measured %.0f GFLOP/s %@ peak",
                         label, rows, devices.map(\.info.spec).joined(separator: ","), median * 1e3, pct(0.9) * 1e3, pct(0.99) * 1e3,
                         itemsPerSecond, gflops, 100 * gflops / peak, peak, peakLabel))
            var shareJSON: [JSONValue] = []
            let totalItems = max(1, shares.values.reduce(0) { $0 + $1.items })
            for d in devices {
                let s = shares[d.info.spec] ?? (0, 0, 0)
                if devices.count > 1 {
                    print(String(format: "  %@: %.1f%% of the items in %d micro-batches, busy %.2f s", d.info.spec,
                                 100 * Double(s.items) / Double(totalItems), s.microBatches, s.busy))
                }
                shareJSON.append(.object(["device": .string(d.info.spec), "items": .number(Double(s.items)),
                                          "share": .number(Double(s.items) / Double(totalItems)), "busy_seconds": .number(s.busy),
                                          "micro_batches": .number(Double(s.microBatches))]))
            }
            last = [
                "target": .string(label), "device": .string(devices.map(\.info.spec).joined(separator: ",")),
                "batch": .number(Double(rows)), "iterations": .number(Double(latencies.count)),
                "median_ms": .number(median * 1e3), "p50_ms": .number(median * 1e3), "p90_ms": .number(pct(0.9) * 1e3),
                "p99_ms": .number(pct(0.99) * 1e3), "items_per_second": .number(itemsPerSecond),
                "gflops": .number(gflops), "peak_gflops": .number(peak), "fraction_of_peak": .number(gflops / peak),
                "flops_per_item": .number(flopsPerBatch / Double(rows)), "device_shares": .array(shareJSON),
            ]
            if !noProfile {
                last["layers"] = .array(try profileLayers(compiled, inputs: inputs, shapes: shapes, limits: limits[0]))
            }
            runs.append(.object(last))
        }
        if batches.count > 1 { last["runs"] = .array(runs) }
        return last
    }

    /// Runs with a profiler on the first device (at least 3 times, up to 25 or half a second)
    /// and prints each layer's median time, share of the time, GFLOP/s and fraction of the
    /// roofline at its arithmetic intensity. One run alone was noisy: a 0.1 ms layer read 0.12
    /// to 0.29 ms from one bench to the next.
    func profileLayers(_ compiled: CompiledGraph, inputs: [String: Tensor], shapes: [String: [Int]], limits: DeviceLimits) throws -> [JSONValue] {
        var runs: [[Profiler.Record]] = []
        let start = now()
        while runs.count < 3 || (runs.count < 25 && now() - start < 0.5) {
            let profiler = Profiler()
            _ = try compiled.run(inputs, profiler: profiler)
            runs.append(profiler.records)
        }
        // Per node, in the order of the first run, its median over the runs.
        var times: [String: [Double]] = [:]
        for run in runs { for r in run { times[r.node, default: []].append(r.seconds) } }
        let records = runs[0].map { r -> (node: String, op: String, seconds: Double) in
            let t = times[r.node]!.sorted()
            return (r.node, r.op, t[t.count / 2])
        }
        let nodes = Dictionary(compiled.graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let total = records.reduce(0) { $0 + $1.seconds }
        var rows: [(String, String, Double, Double, Double, Double)] = []
        var result: [JSONValue] = []
        for r in records {
            // A node the plan fused from several ("a+b+c") has their work; its own moves less.
            let parts = nodes[r.node].map { [$0] } ?? r.node.split(separator: "+").compactMap { nodes[String($0)] }
            guard !parts.isEmpty else { continue }
            let flops = 2 * Double(parts.reduce(0) { $0 + macs(of: $1, shapes: shapes) })
            let bytes = parts.count == 1 ? Double(bytesMoved(of: parts[0], shapes: shapes))
                : Double(fusedBytesMoved(parts, shapes: shapes))
            let gflops = flops / max(r.seconds, 1e-9) / 1e9
            let intensity = bytes > 0 ? flops / bytes : 0
            let attainable = min(limits.peakGFLOPS, intensity * limits.bandwidthGBps)
            let achievedBandwidth = bytes / max(r.seconds, 1e-9) / 1e9
            // Layers with no arithmetic are bound by memory: their roofline is the bandwidth.
            let fraction = flops > 0 ? gflops / max(attainable, 1e-9) : achievedBandwidth / limits.bandwidthGBps
            rows.append((r.node, r.op, r.seconds, gflops, intensity, fraction))
            result.append(.object([
                "node": .string(r.node), "op": .string(r.op), "ms": .number(r.seconds * 1e3),
                "gflops": .number(gflops), "intensity": .number(intensity), "fraction_of_roofline": .number(fraction),
            ]))
        }
        print(String(format: "per-layer profile on %@ (peak %.0f GFLOP/s, bandwidth %.1f GB/s, %d layers, %.2f ms), slowest first:",
                     compiled.device.info.spec, limits.peakGFLOPS, limits.bandwidthGBps, rows.count, total * 1e3))
        print("  " + "layer".padding(toLength: 36, withPad: " ", startingAt: 0) + "op".padding(toLength: 18, withPad: " ", startingAt: 0)
              + "    ms   share  GFLOP/s  flop/B  roofline")
        for r in rows.sorted(by: { $0.2 > $1.2 }).prefix(20) {
            print("  " + String(r.0.prefix(35)).padding(toLength: 36, withPad: " ", startingAt: 0)
                  + String(r.1.prefix(17)).padding(toLength: 18, withPad: " ", startingAt: 0)
                  + String(format: "%6.2f  %5.1f%%  %7.1f  %6.1f  %7.0f%%", r.2 * 1e3, 100 * r.2 / max(total, 1e-12), r.3, r.4, 100 * r.5))
        }
        return result
    }
}

/// Bytes a fused chain of nodes reads and writes: the operands that no node of the chain makes,
/// and the last node's outputs.
func fusedBytesMoved(_ nodes: [Node], shapes: [String: [Int]]) -> Int {
    let made = Set(nodes.flatMap(\.outputs))
    var elements = 0
    for n in nodes { for v in n.inputs where !v.isEmpty && !made.contains(v) { elements += shapes[v]?.reduce(1, *) ?? 0 } }
    for v in nodes.last?.outputs ?? [] { elements += shapes[v]?.reduce(1, *) ?? 0 }
    return elements * MemoryLayout<Float>.size
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
