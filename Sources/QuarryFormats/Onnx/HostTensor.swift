// Values known while importing: initializers, Constant nodes and everything computed from them
// (shape subgraphs). Float data stays float32; integer and boolean data is kept as Int64 so that
// shapes and indices stay exact. The runtime only ever sees float32 parameters.

import Foundation
import Quarry

struct HostTensor {
    enum Kind { case float, int, bool }
    var shape: [Int]
    var kind: Kind
    /// Float data (kind == .float).
    var floats: [Float]
    /// Integer or boolean data (kind == .int / .bool).
    var ints: [Int64]

    /// Folded constants larger than this are refused: a hostile file could ask for terabytes.
    static let maxFoldedElements = 1 << 24

    init(floats: [Float], shape: [Int]) {
        self.shape = shape; kind = .float; self.floats = floats; ints = []
    }
    init(ints: [Int64], shape: [Int], kind: Kind = .int) {
        self.shape = shape; self.kind = kind; floats = []; self.ints = ints
    }
    init(scalar: Int64) { self.init(ints: [scalar], shape: []) }

    var count: Int { kind == .float ? floats.count : ints.count }
    var isInteger: Bool { kind != .float }

    func double(_ i: Int) -> Double { kind == .float ? Double(floats[i]) : Double(ints[i]) }
    var doubles: [Double] { (0..<count).map(double) }
    /// Integer values clamped for use as sizes, indices and axes (see `clampInt`).
    var sizes: [Int] { int64s.map(clampInt) }
    var int64s: [Int64] { kind == .float ? floats.map { Int64(exactly: $0.rounded(.towardZero)) ?? 0 } : ints }

    /// A tensor of `kind` from doubles (used by the folding arithmetic).
    init(doubles: [Double], shape: [Int], kind: Kind) {
        switch kind {
        case .float: self.init(floats: doubles.map { Float($0) }, shape: shape)
        case .int: self.init(ints: doubles.map { $0.isFinite ? Int64(max(min($0, 9.2e18), -9.2e18)) : 0 }, shape: shape)
        case .bool: self.init(ints: doubles.map { $0 != 0 ? 1 : 0 }, shape: shape, kind: .bool)
        }
    }

    func converted(to k: Kind) -> HostTensor {
        if k == kind { return self }
        return HostTensor(doubles: doubles, shape: shape, kind: k)
    }

    func reshaped(_ s: [Int]) -> HostTensor { var t = self; t.shape = s; return t }

    /// The float32 tensor handed to the runtime as a parameter.
    func tensor() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        if kind == .float {
            floats.withUnsafeBufferPointer { if let b = $0.baseAddress, count > 0 { t.pointer.update(from: b, count: count) } }
        } else {
            for i in 0..<count { t.pointer[i] = Float(ints[i]) }
        }
        return t
    }

    /// Gathers elements by flat source index (used by the folding of layout ops).
    func gathered(_ indices: [Int], shape: [Int]) -> HostTensor {
        var t = self
        t.shape = shape
        if kind == .float { t.floats = indices.map { floats[$0] } } else { t.ints = indices.map { ints[$0] } }
        return t
    }
}

func strides(of shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
    return s
}

/// Flat indices of every element of `shape`, as multi-indices mapped through `map`.
func forEachIndex(_ shape: [Int], _ body: ([Int]) -> Void) {
    let n = shape.reduce(1, *)
    if n == 0 { return }
    var idx = [Int](repeating: 0, count: shape.count)
    for _ in 0..<n {
        body(idx)
        var d = shape.count - 1
        while d >= 0 {
            idx[d] += 1
            if idx[d] < shape[d] { break }
            idx[d] = 0; d -= 1
        }
    }
}

extension HostTensor {
    /// Numpy-broadcast elementwise combination.
    static func broadcast(_ a: HostTensor, _ b: HostTensor, kind: Kind, _ f: (Double, Double) -> Double) throws -> HostTensor {
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw QuarryError.invalidArgument("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let n = shape.reduce(1, *)
        guard n <= maxFoldedElements else { throw QuarryError.invalidArgument("constant of \(n) elements is too large to fold") }
        let sa = strides(of: a.shape), sb = strides(of: b.shape)
        let r = shape.count
        var out: [Double] = []
        out.reserveCapacity(n)
        let ad = a.doubles, bd = b.doubles
        forEachIndex(shape) { idx in
            var ia = 0, ib = 0
            for d in 0..<r {
                let da = d - (r - a.shape.count), db = d - (r - b.shape.count)
                if da >= 0, a.shape[da] != 1 { ia += idx[d] * sa[da] }
                if db >= 0, b.shape[db] != 1 { ib += idx[d] * sb[db] }
            }
            out.append(f(ad[ia], bd[ib]))
        }
        return HostTensor(doubles: out, shape: shape, kind: kind)
    }

    func transposed(_ perm: [Int]) -> HostTensor {
        if perm == [1, 0], kind == .float {
            // The common case (Linear weights): a plain loop, fast even in debug builds.
            let r = shape[0], c = shape[1]
            let out = [Float](unsafeUninitializedCapacity: count) { buf, n in
                floats.withUnsafeBufferPointer { src in
                    for i in 0..<r { for j in 0..<c { buf[j * r + i] = src[i * c + j] } }
                }
                n = count
            }
            return HostTensor(floats: out, shape: [c, r])
        }
        let s = strides(of: shape)
        let outShape = perm.map { shape[$0] }
        var src: [Int] = []
        src.reserveCapacity(count)
        forEachIndex(outShape) { idx in
            var o = 0
            for (d, p) in perm.enumerated() { o += idx[d] * s[p] }
            src.append(o)
        }
        return gathered(src, shape: outShape)
    }

    /// Elements along `axis` at positions `positions` (Gather and Slice share it).
    func taking(_ positions: [Int], axis: Int) -> HostTensor {
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *), dim = shape[axis]
        var src: [Int] = []
        src.reserveCapacity(outer * positions.count * inner)
        for o in 0..<outer { for p in positions { for i in 0..<inner { src.append((o * dim + p) * inner + i) } } }
        var s = shape; s[axis] = positions.count
        return gathered(src, shape: s)
    }

    static func concat(_ parts: [HostTensor], axis: Int) -> HostTensor {
        let first = parts[0]
        let outer = first.shape[..<axis].reduce(1, *)
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        let kind = parts.contains { $0.kind == .float } ? Kind.float : first.kind
        let ps = parts.map { $0.converted(to: kind) }
        var out = HostTensor(ints: [], shape: shape, kind: kind)
        for o in 0..<outer {
            for p in ps {
                let chunk = p.shape[axis...].reduce(1, *)
                if kind == .float { out.floats += p.floats[(o * chunk)..<((o + 1) * chunk)] } else { out.ints += p.ints[(o * chunk)..<((o + 1) * chunk)] }
            }
        }
        return out
    }
}
