// Measured memory bandwidth of the host, for the roofline of `quarry bench` and `quarry devices
// --probe`: a STREAM-style triad over arrays far larger than the caches, on every thread.

import Foundation
import Quarry

/// Best-of-`repeats` triad bandwidth a[i] = b[i] + s * c[i] in GB/s (3 arrays moved per element:
/// two read, one written; write-allocate traffic is not counted, as STREAM does not).
public func measureMemoryBandwidthGBps(threads: CPUThreads, megabytesPerArray: Int = 128, repeats: Int = 5) -> Double {
    let n = megabytesPerArray * 1_048_576 / 4
    let a = TensorStorage(count: n), b = TensorStorage(count: n), c = TensorStorage(count: n)
    let pa = a.pointer, pb = b.pointer, pc = c.pointer
    threads.parallelRanges(n) { r in
        for i in r { pa[i] = 0; pb[i] = 1; pc[i] = 2 }
    }
    var best = Double.infinity
    for _ in 0..<repeats {
        let t0 = DispatchTime.now().uptimeNanoseconds
        threads.parallelRanges(n / 16) { r in
            let s = SIMD16<Float>(repeating: 0.5)
            for j in r {
                let i = j * 16
                let vb = UnsafeRawPointer(pb + i).loadUnaligned(as: SIMD16<Float>.self)
                let vc = UnsafeRawPointer(pc + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(pa + i).storeBytes(of: vb + s * vc, as: SIMD16<Float>.self)
            }
        }
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    return Double(3 * n * 4) / best / 1e9
}
