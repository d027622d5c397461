// `quarry devices`: every device Quarry can run on, with its properties, and with --probe the
// measured fp32 peak and memory bandwidth (the limits `quarry bench` compares layers against).

import ArgumentParser
import Foundation
import Quarry
import QuarryRuntime
import QuarryCPU
import QuarryOpenCL

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the CPU and every OpenCL device, optionally measuring their limits.",
        discussion: """
            Devices are selected elsewhere by the spec shown here: cpu, opencl:N.
            Example:
              quarry devices --probe --json
            """)

    @Flag(name: .long, help: "Measure each device's fp32 peak, memory bandwidth and (CPUs whose bf16 runs on vdpbf16ps) bf16 peak (takes seconds).")
    var probe = false

    @Flag(name: .long, help: "Print one JSON array instead of a table.")
    var json = false

    @Option(name: .long, help: "Threads for the CPU backend (default: every core).")
    var cpuThreads: Int?

    func run() throws {
        var devices: [Device] = [CPUDevice(threads: cpuThreads)]
        var openCLNote: String? = nil
        do { devices += try openCLDevices() } catch { openCLNote = "\(error)" }
        var entries: [[String: JSONValue]] = []
        for d in devices {
            let i = d.info
            var e: [String: JSONValue] = [
                "spec": .string(i.spec), "kind": .string(i.kind.rawValue), "name": .string(i.name),
                "vendor": .string(i.vendor), "driver_version": .string(i.driverVersion),
                "compute_units": .number(Double(i.computeUnits)),
                "global_memory_bytes": .number(Double(i.globalMemoryBytes)),
                "local_memory_bytes": .number(Double(i.localMemoryBytes)),
                "max_allocation_bytes": .number(Double(i.maxAllocationBytes)),
                "fp16": .bool(i.supportsFP16), "fp64": .bool(i.supportsFP64),
            ]
            if d is CPUDevice {
                // The kernel variant chosen at run time (CQuarryKernels), and the host's best.
                e["kernel_variant"] = .string(CPUInstructionSet.active.description)
                e["host_instruction_set"] = .string(CPUInstructionSet.host.description)
                let b = HostBlocking.chosen
                e["gemm_blocking"] = .object(["kc": .number(Double(b.blocking.kc)), "mc": .number(Double(b.blocking.mc)),
                                              "nc": .number(Double(b.blocking.nc))])
                e["gemm_blocking_source"] = .string(b.source)
                e["bf16"] = .bool(CPUGEMMPrecision.bf16Available)
                if let k = CPUGEMMPrecision.bf16Kernel { e["bf16_kernel"] = .string(k) }
            }
            if let cl = d as? OpenCLDevice {
                e["gemm_schedule"] = .string(cl.gemmVariant.key)
                e["gemm_schedule_source"] = .string(cl.gemmScheduleSource)
            }
            if probe {
                do {
                    let limits = try measureLimits(d)
                    e["peak_gflops"] = .number(limits.peakGFLOPS)
                    e["bandwidth_gbps"] = .number(limits.bandwidthGBps)
                    if let bf16 = limits.bf16PeakGFLOPS { e["bf16_peak_gflops"] = .number(bf16) }
                } catch {
                    e["probe_error"] = .string("\(error)")
                }
            }
            entries.append(e)
            if !json {
                print("\(i.spec)\t\(i.name) (\(i.vendor), \(i.driverVersion))")
                print(String(format: "\tcompute units %d, memory %.1f GiB, local %d KiB, max allocation %.1f GiB, fp16 %@, fp64 %@",
                             i.computeUnits, Double(i.globalMemoryBytes) / 1_073_741_824, i.localMemoryBytes / 1024,
                             Double(i.maxAllocationBytes) / 1_073_741_824, i.supportsFP16 ? "yes" : "no", i.supportsFP64 ? "yes" : "no"))
                if case .string(let v)? = e["kernel_variant"], case .string(let h)? = e["host_instruction_set"] {
                    print("\tkernel variant \(v)" + (v == h ? " (the host's best)" : " (the host has \(h); QUARRY_CPU_ISA chose \(v))")
                          + (CPUGEMMPrecision.bf16Kernel.map { ", bf16 available (--precision bf16, \($0) kernel)" } ?? ", no bf16"))
                    let b = HostBlocking.chosen
                    print("\tGEMM blocking \(b.blocking): \(b.source)")
                }
                if case .string(let s)? = e["gemm_schedule"], case .string(let src)? = e["gemm_schedule_source"] {
                    print("\tGEMM schedule \(s): \(src)")
                }
                if let p = e["peak_gflops"]?.number, let b = e["bandwidth_gbps"]?.number {
                    let bf16 = e["bf16_peak_gflops"]?.number.map {
                        String(format: ", bf16 (vdpbf16ps) peak %.1f GFLOP/s-equivalent (%.2fx fp32)", $0, $0 / p)
                    } ?? ""
                    print(String(format: "\tmeasured: fp32 peak %.1f GFLOP/s", p) + bf16 + String(format: ", memory bandwidth %.1f GB/s", b))
                }
                if case .string(let err)? = e["probe_error"] { print("\tprobe failed: \(err)") }
            }
        }
        if json {
            print(try jsonLine(entries.map { JSONValue.object($0) }))
        } else if let openCLNote {
            print("no OpenCL devices: \(openCLNote)")
        }
    }
}
