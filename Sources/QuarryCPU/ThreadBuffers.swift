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
    /// The GEMM's packed A and B blocks.
    private let pack = ReusedPair<Float>()
    /// Their bf16 copies (GEMM in bf16 mode only).
    private let bf16 = ReusedPair<UInt16>()
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCount = 0
    private var scratchInUse = false

    deinit { scratch?.deallocate() }

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
        pack.with(GEMMBlocking.mc * GEMMBlocking.kc, GEMMBlocking.kc * GEMMBlocking.nc, body)
    }

    /// Runs `body` with this thread's bf16 packing buffers (A: MC x (KC + 32), B: (KC + 32) x NC
    /// halves: KC rounded up to pairs, or to the AMX kernel's 32-k chunks); a nested call on the same thread gets temporary ones.
    func withBF16Buffers<R>(_ body: (UnsafeMutablePointer<UInt16>, UnsafeMutablePointer<UInt16>) -> R) -> R {
        bf16.with(GEMMBlocking.mc * (GEMMBlocking.kc + 32), (GEMMBlocking.kc + 32) * GEMMBlocking.nc, body)
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

/// Two buffers kept for reuse by one thread, 64-byte aligned, grown when a call needs more (the
/// tuner's larger blockings); a nested call gets temporary ones. A class: a nested call reaches
/// it again while the outer call is still in `with`.
private final class ReusedPair<Element> {
    private var a: UnsafeMutablePointer<Element>?
    private var b: UnsafeMutablePointer<Element>?
    private var capacity = (a: 0, b: 0)
    private var inUse = false

    deinit { a?.deallocate(); b?.deallocate() }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Element> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * MemoryLayout<Element>.stride, alignment: 64)
            .bindMemory(to: Element.self, capacity: max(n, 1))
    }

    func with<R>(_ aCount: Int, _ bCount: Int,
                 _ body: (UnsafeMutablePointer<Element>, UnsafeMutablePointer<Element>) -> R) -> R {
        if inUse {
            let ta = Self.allocate(aCount), tb = Self.allocate(bCount)
            defer { ta.deallocate(); tb.deallocate() }
            return body(ta, tb)
        }
        inUse = true
        defer { inUse = false }
        if a == nil || capacity.a < aCount || capacity.b < bCount {
            a?.deallocate(); b?.deallocate()
            a = Self.allocate(aCount); b = Self.allocate(bCount)
            capacity = (aCount, bCount)
        }
        return body(a!, b!)
    }
}
