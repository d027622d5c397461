// Tensor: a dense, row-major float32 array with a shape. Images are NCHW, sequences
// [batch, sequence, features]. Storage is 64-byte aligned so SIMD loads never straddle cache lines.

import Foundation

/// Owned, aligned float storage. A class so that tensors share it cheaply; copy-on-write is not
/// implemented because kernels write into buffers the executor owns, never into a user's tensor.
// @unchecked: the memory is owned for the storage's life; which thread writes which elements is
// the executor's discipline (a kernel writes buffers nothing else reads during the run), beyond
// what the compiler can check.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// Set for memory owned elsewhere (a device's host-mapped buffer); runs instead of freeing.
    private let release: (@Sendable () -> Void)?

    public init(count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = LargeBufferCache.shared.take(bytes) ?? allocateBuffer(bytes: bytes)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        release = nil
    }

    /// `count` floats at `pointer` that someone else owns; `release` runs when the storage goes
    /// (after the last tensor and the last pending copy holding it).
    public init(external pointer: UnsafeMutablePointer<Float>, count: Int, release: @escaping @Sendable () -> Void) {
        self.pointer = pointer
        self.count = count
        self.release = release
    }

    /// Storage over a caller's memory (a NumPy array passed through the C ABI), so a run reads its
    /// inputs where they are instead of copying them. The caller keeps `count` floats alive and
    /// unchanged for the storage's lifetime; it is not freed or cached here, and it need not be
    /// 64-byte aligned (kernels load graph inputs unaligned: batch lanes read them at row offsets).
    public convenience init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int) {
        self.init(external: pointer, count: count, release: {})
    }

    deinit {
        if let release { return release() }
        let raw = UnsafeMutableRawPointer(pointer)
        if !LargeBufferCache.shared.keep(raw, bytes: max(count, 1) * MemoryLayout<Float>.stride) { raw.deallocate() }
    }
}

/// Memory for tensors, arenas, packed weights and scratch: 64-byte aligned, and from 2 MiB on,
/// aligned to 2 MiB and marked for transparent huge pages (where the kernel's setting is
/// `madvise`, the common default, nothing is backed by huge pages unless asked). A layer's GEMM
/// touches dozens of planes kilobytes apart at once (one 4 KiB page each, beyond the L1 TLB);
/// a chain of six ResNet-50 1x1 layers at 56x56, batch 8 on two threads ran 17.5-18.0 ms with
/// huge pages against 18.6-18.8 without. Freed with `deallocate()` like any other.
public func allocateBuffer(bytes: Int) -> UnsafeMutableRawPointer {
    let huge = 2 << 20
    guard bytes >= huge else { return UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64) }
    let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: huge)
    #if os(Linux)
    // A hint: where THP is off (or `never`) the call fails or does nothing, and the memory
    // stays in ordinary pages.
    _ = madvise(raw, bytes / huge * huge, 14 /* MADV_HUGEPAGE */)
    #endif
    return raw
}

/// The last few large buffers freed, kept for the next storage of the same size. A run returns
/// its outputs in new tensors; malloc serves blocks over 32 MiB from fresh mappings and unmaps
/// them on free, so every batch of a large feature map paid a page fault per 4 KiB and the
/// kernel's zeroing of every page: a 1x1 layer whose batch-8 output is 38 MiB ran in 17 ms, of
/// which the convolution was 4. Buffers of 1 MiB and more, at most 8 of them and 256 MiB in all;
/// the oldest go first.
// @unchecked: `buffers` and `total` change only under `lock`.
final class LargeBufferCache: @unchecked Sendable {
    static let shared = LargeBufferCache()
    static let minimumBytes = 1 << 20, maximumCount = 8, maximumBytes = 256 << 20
    private var buffers: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    private var total = 0
    private let lock = NSLock()

    func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= Self.minimumBytes else { return nil }
        lock.lock(); defer { lock.unlock() }
        guard let i = buffers.lastIndex(where: { $0.bytes == bytes }) else { return nil }
        total -= bytes
        return buffers.remove(at: i).pointer
    }

    /// Whether `pointer` was kept (otherwise the caller frees it).
    func keep(_ pointer: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard bytes >= Self.minimumBytes, bytes <= Self.maximumBytes else { return false }
        lock.lock(); defer { lock.unlock() }
        while !buffers.isEmpty && (buffers.count >= Self.maximumCount || total + bytes > Self.maximumBytes) {
            let oldest = buffers.removeFirst()
            total -= oldest.bytes
            oldest.pointer.deallocate()
        }
        buffers.append((pointer, bytes))
        total += bytes
        return true
    }
}

public enum DType: String, Sendable, Codable {
    case float32
}

// @unchecked: a shape and a TensorStorage (see there).
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let storage: TensorStorage
    public var dtype: DType { .float32 }

    /// A tensor with uninitialised contents (the caller writes every element).
    public init(uninitializedShape shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(shape: [Int], repeating value: Float = 0) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    /// Fails when the element count does not match the shape.
    public init(shape: [Int], scalars: [Float]) throws {
        let n = shape.reduce(1, *)
        guard n == scalars.count else {
            throw QuarryError.invalidArgument(
                "tensor of shape \(shape) needs \(n) values, got \(scalars.count)")
        }
        self.init(uninitializedShape: shape)
        scalars.withUnsafeBufferPointer { src in
            if n > 0 { storage.pointer.update(from: src.baseAddress!, count: n) }
        }
    }

    /// Shares storage with a new shape of the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.reduce(1, *) == count else {
            throw QuarryError.invalidArgument("cannot reshape \(shape) to \(newShape)")
        }
        return Tensor(shape: newShape, storage: storage)
    }

    /// A tensor over `storage` (which must hold at least the shape's element count).
    public init(shape: [Int], storage: TensorStorage) {
        precondition(shape.reduce(1, *) <= storage.count, "storage of \(storage.count) floats is too small for shape \(shape)")
        self.shape = shape
        self.storage = storage
    }

    /// A tensor over existing storage (such as `TensorStorage(external:count:release:)`); fails
    /// unless the storage holds at least the shape's element count.
    public init(shape: [Int], sharing storage: TensorStorage) throws {
        guard shape.reduce(1, *) <= storage.count else {
            throw QuarryError.invalidArgument("a tensor of shape \(shape) needs \(shape.reduce(1, *)) floats; the storage has \(storage.count)")
        }
        self.init(shape: shape, storage: storage)
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

    public subscript(flat index: Int) -> Float {
        get { storage.pointer[index] }
        nonmutating set { storage.pointer[index] = newValue }
    }

    /// A deep copy: new storage with the same values.
    public func copy() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.storage.pointer.update(from: storage.pointer, count: count)
        return t
    }

    public var description: String {
        let head = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", …" : "")])"
    }
}

/// A deterministic generator (SplitMix64) for seeded initialisation and test data, so that runs
/// and tests are reproducible on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    /// Where the generator would be after `draws` calls of next(): SplitMix64's state moves by a
    /// constant step a draw.
    public mutating func advance(by draws: UInt64) { state = state &+ draws &* 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Tensor {
    /// Uniform values in [low, high), reproducible from the generator's seed. Inlinable, so that a
    /// caller in another module with a concrete generator gets it specialised: through witness
    /// tables, filling `bench gemm`'s three 2048 x 2048 operands took longer than the timed GEMMs.
    @inlinable
    public static func random<G: RandomNumberGenerator>(
        shape: [Int], in range: ClosedRange<Float> = -1...1, using rng: inout G
    ) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        let p = t.storage.pointer
        for i in 0..<t.count { p[i] = Float.random(in: range, using: &rng) }
        return t
    }
}

extension Tensor {
    /// Rows `range` of the leading (batch) dimension, copied.
    public func rows(_ range: Range<Int>) -> Tensor {
        let rowCount = shape.isEmpty ? 1 : count / max(shape[0], 1)
        var s = shape
        s[0] = range.count
        let t = Tensor(uninitializedShape: s)
        t.pointer.update(from: pointer + range.lowerBound * rowCount, count: range.count * rowCount)
        return t
    }

    /// Concatenation along the leading dimension of tensors whose other dimensions agree.
    public static func stacking(rowsOf parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first else { throw QuarryError.invalidArgument("nothing to concatenate") }
        let tail = Array(first.shape.dropFirst())
        for p in parts where Array(p.shape.dropFirst()) != tail {
            throw QuarryError.invalidArgument("cannot stack rows of \(p.shape) onto \(first.shape)")
        }
        let t = Tensor(uninitializedShape: [parts.reduce(0) { $0 + $1.shape[0] }] + tail)
        var offset = 0
        for p in parts {
            (t.pointer + offset).update(from: p.pointer, count: p.count)
            offset += p.count
        }
        return t
    }
}

extension Tensor {
    /// A copy (self for axis 0) with dimension `axis` moved to the front ([a, b, B, c] -> [B, a, b, c] for axis 2),
    /// the other dimensions in order. A model whose batch is not its leading dimension (a
    /// sequence-first LSTM's [T, B, F]) runs batch-first this way under the scheduler, which
    /// splits and stacks along dimension 0.
    public func movingAxisToFront(_ axis: Int) -> Tensor {
        precondition(axis >= 0 && axis < shape.count, "axis \(axis) of a rank-\(shape.count) tensor")
        if axis == 0 { return self }
        var s = shape
        let moved = s.remove(at: axis)
        let t = Tensor(uninitializedShape: [moved] + s)
        swapOuterAxes(outer: shape[..<axis].reduce(1, *), middle: moved, inner: shape[(axis + 1)...].reduce(1, *), into: t)
        return t
    }

    /// The inverse of `movingAxisToFront`: dimension 0 moved to position `axis`.
    public func movingFrontAxis(to axis: Int) -> Tensor {
        precondition(axis >= 0 && axis < shape.count, "axis \(axis) of a rank-\(shape.count) tensor")
        if axis == 0 { return self }
        var s = Array(shape.dropFirst())
        s.insert(shape[0], at: axis)
        let t = Tensor(uninitializedShape: s)
        swapOuterAxes(outer: shape[0], middle: shape[1...axis].reduce(1, *), inner: shape[(axis + 1)...].reduce(1, *), into: t)
        return t
    }

    /// Viewing self as [outer, middle, inner], writes [middle, outer, inner] into `t`: runs of
    /// `inner` contiguous values, so the copy moves whole rows, not single elements.
    private func swapOuterAxes(outer: Int, middle: Int, inner: Int, into t: Tensor) {
        let src = pointer, dst = t.pointer
        for o in 0..<outer {
            for m in 0..<middle {
                (dst + (m * outer + o) * inner).update(from: src + (o * middle + m) * inner, count: inner)
            }
        }
    }
}
