// Working memory that belongs to a thread, not to a kernel.
//
// Each kernel used to own its packing buffers and scratch (2 MiB of packed B per convolution,
// the gathered planes of stacked images). Between two runs of a layer the rest of the network
// passes through the caches, so every layer wrote its packed panels into memory that had gone
// cold: each store a read from DRAM first. On MobileNetV2's 14x14 and 7x7 layers that was ~20% of
// their time (measured by flushing the caches between runs of one layer). A thread's layers run
// one after another, so buffers kept per thread are reused by the next layer while still in L2.

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// @unchecked Sendable: a thread's buffers are used by that thread alone; they cross threads only
// through `pool`, after their thread has ended.
final class ThreadBuffers: @unchecked Sendable {
    private var packA: UnsafeMutablePointer<Float>?
    private var packB: UnsafeMutablePointer<Float>?
    private var packInUse = false
    private var packCapacity = (a: 0, b: 0)
    /// bf16 copies of the packed blocks (GEMM in bf16 mode only).
    private var bf16A: UnsafeMutablePointer<UInt16>?
    private var bf16B: UnsafeMutablePointer<UInt16>?
    private var bf16InUse = false
    private var bf16Capacity = (a: 0, b: 0)
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCount = 0
    private var scratchInUse = false

    deinit {
        packA?.deallocate(); packB?.deallocate(); scratch?.deallocate(); bf16A?.deallocate(); bf16B?.deallocate()
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            if let pointer { ThreadBuffers.release(Unmanaged<ThreadBuffers>.fromOpaque(pointer).takeRetainedValue()) }
        }
        return key
    }()

    /// Buffers of threads that have ended, for the next new thread. The scheduler runs each batch
    /// on a new thread, and fresh buffers for it would mean page faults in every layer that
    /// needs more scratch than the one before (four of MobileNetV2's, a third of their time).
    private static let pool = Mutex<[ThreadBuffers]>([])

    private static func release(_ buffers: ThreadBuffers) {
        pool.withLock { if $0.count < 64 { $0.append(buffers) } }
    }

    /// The calling thread's buffers: on its first use, those of an ended thread, or new ones.
    static var current: ThreadBuffers {
        if let p = pthread_getspecific(key) { return Unmanaged<ThreadBuffers>.fromOpaque(p).takeUnretainedValue() }
        let buffers = pool.withLock { $0.popLast() } ?? ThreadBuffers()
        pthread_setspecific(key, Unmanaged.passRetained(buffers).toOpaque())
        return buffers
    }

    /// Runs `body` with this thread's GEMM packing buffers (A: MC x KC, B: KC x NC floats); a
    /// nested call on the same thread gets temporary ones.
    func withPackBuffers<R>(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> R) -> R {
        let aFloats = GEMMBlocking.mc * GEMMBlocking.kc, bFloats = GEMMBlocking.kc * GEMMBlocking.nc
        if packInUse {
            let a = allocateFloats(aFloats), b = allocateFloats(bFloats)
            defer { a.deallocate(); b.deallocate() }
            return body(a, b)
        }
        packInUse = true
        defer { packInUse = false }
        // Sized for the blocking in force; the tuner's larger candidates get larger ones.
        if packA == nil || packCapacity.a < aFloats || packCapacity.b < bFloats {
            packA?.deallocate(); packB?.deallocate()
            packA = allocateFloats(aFloats); packB = allocateFloats(bFloats)
            packCapacity = (aFloats, bFloats)
        }
        return body(packA!, packB!)
    }

    /// Runs `body` with this thread's bf16 packing buffers (A: MC x (KC + 1), B: (KC + 1) x NC
    /// halves); a nested call on the same thread gets temporary ones.
    func withBF16Buffers<R>(_ body: (UnsafeMutablePointer<UInt16>, UnsafeMutablePointer<UInt16>) -> R) -> R {
        let aCount = GEMMBlocking.mc * (GEMMBlocking.kc + 1), bCount = (GEMMBlocking.kc + 1) * GEMMBlocking.nc
        if bf16InUse {
            let a = UnsafeMutablePointer<UInt16>.allocate(capacity: aCount)
            let b = UnsafeMutablePointer<UInt16>.allocate(capacity: bCount)
            defer { a.deallocate(); b.deallocate() }
            return body(a, b)
        }
        bf16InUse = true
        defer { bf16InUse = false }
        if bf16A == nil || bf16Capacity.a < aCount || bf16Capacity.b < bCount {
            bf16A?.deallocate(); bf16B?.deallocate()
            bf16A = .allocate(capacity: aCount)
            bf16B = .allocate(capacity: bCount)
            bf16Capacity = (aCount, bCount)
        }
        return body(bf16A!, bf16B!)
    }

    /// Runs `body` with `count` floats of this thread's scratch (grown as needed); a nested call
    /// on the same thread gets a temporary buffer.
    func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        if scratchInUse {
            let temp = allocateFloats(count)
            defer { temp.deallocate() }
            return body(temp)
        }
        scratchInUse = true
        defer { scratchInUse = false }
        if scratchCount < count {
            scratch?.deallocate()
            scratch = allocateFloats(count)
            scratchCount = count
        }
        return body(scratch!)
    }
}
