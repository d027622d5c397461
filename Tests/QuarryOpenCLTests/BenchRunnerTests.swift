import Foundation
import Quarry
import QuarryModels
@testable import QuarryOpenCL
import XCTest

/// Benchmarks driven by bench/opencl_vs_clblast.sh through environment variables; skipped in a
/// normal test run. Each prints one JSON line per measurement.
final class BenchRunnerTests: XCTestCase {
    /// QUARRY_BENCH_GEMM="M,N,K;M,N,K" and QUARRY_BENCH_CONV="N,C,H,W,O,K,stride,pad;…".
    func testBenchKernels() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["QUARRY_BENCH_GEMM"] != nil || env["QUARRY_BENCH_CONV"] != nil else {
            throw XCTSkip("set QUARRY_BENCH_GEMM / QUARRY_BENCH_CONV (bench/opencl_vs_clblast.sh)")
        }
        let device = try testDevice()
        let repeats = Int(env["QUARRY_BENCH_REPEATS"] ?? "") ?? 5
        for spec in (env["QUARRY_BENCH_GEMM"] ?? "").split(separator: ";") {
            let d = spec.split(separator: ",").compactMap { Int($0) }
            let r = try device.benchmarkGEMM(m: d[0], n: d[1], k: d[2], repeats: repeats)
            print(#"{"impl":"quarry","op":"gemm","m":\#(d[0]),"n":\#(d[1]),"k":\#(d[2]),"best_s":\#(r.seconds),"median_s":\#(r.medianSeconds),"gflops":\#(r.gflops),"median_gflops":\#(r.medianGFLOPS)}"#)
        }
        for spec in (env["QUARRY_BENCH_CONV"] ?? "").split(separator: ";") {
            let d = spec.split(separator: ",").compactMap { Int($0) }
            let r = try device.benchmarkConv2D(batch: d[0], inChannels: d[1], height: d[2], width: d[3], outChannels: d[4],
                                               kernel: d[5], stride: d[6], padding: d[7], repeats: repeats)
            print(#"{"impl":"quarry","op":"conv","shape":"\#(spec)","best_s":\#(r.seconds),"median_s":\#(r.medianSeconds),"gflops":\#(r.gflops),"median_gflops":\#(r.medianGFLOPS)}"#)
        }
    }

    /// QUARRY_BENCH_RESNET50=1: time to make the ResNet-50 plan (every program it needs built,
    /// or loaded from the disk cache named by QUARRY_CACHE_DIR). Run twice: cold, then warm.
    func testResNet50ProgramStart() throws {
        guard ProcessInfo.processInfo.environment["QUARRY_BENCH_RESNET50"] != nil else {
            throw XCTSkip("set QUARRY_BENCH_RESNET50=1 (bench/opencl_vs_clblast.sh)")
        }
        let device = try testDevice()
        var graph = try ModelZoo.entry(named: "resnet50").build()
        graph.materializeParameters()
        let t0 = DispatchTime.now().uptimeNanoseconds
        let compiled = try device.compile(graph, outputs: graph.outputs) as! OpenCLCompiledGraph
        let t1 = DispatchTime.now().uptimeNanoseconds
        let names = try compiled.kernelNames(inputShapes: ["image": [1, 3, 224, 224]].filter { k, _ in graph.inputs.contains { $0.name == k } }
            .merging(Dictionary(uniqueKeysWithValues: graph.inputs.map { ($0.name, [1, 3, 224, 224]) }), uniquingKeysWith: { a, _ in a }))
        let t2 = DispatchTime.now().uptimeNanoseconds
        let s = device.programs.statistics
        let launches = names.values.reduce(0) { $0 + $1.count }
        print(#"{"impl":"quarry","op":"resnet50_start","compile_s":\#(Double(t1 - t0) / 1e9),"plan_s":\#(Double(t2 - t1) / 1e9),"built_from_source":\#(s.builtFromSource),"loaded_from_disk":\#(s.loadedFromDisk),"launches":\#(launches),"fallbacks":\#(compiled.fallbacks.count)}"#)
    }
}
