// ONNX operators built from Quarry's existing graph ops (reshape, transpose, slice, concat,
// matmul, reduce, elementwise), so that every backend runs them with no kernels of their own:
//
//   Tile                  one broadcast add against zeros per repeated axis, on a rank-3 view
//   DepthToSpace          reshape → transpose → reshape (DCR and CRD), and SpaceToDepth likewise
//   Einsum                per operand diagonals (strided slices) and sums, then pairwise
//                         transpose / reshape / matmul (or a broadcast multiply when nothing
//                         is contracted), then a transpose
//   RMSNormalization      x / sqrt(mean(x², axes ≥ axis) + ε) · scale
//   RotaryEmbedding       slices of the head, multiplied by the cos / sin caches (gathered by
//                         position_ids through the embedding op, or on the host when constant)
//                         and concatenated back
//
// Constant inputs of the layout ops fold on the host; everything else becomes graph nodes.

import Foundation
import Quarry

extension OnnxImporter {
    // MARK: Tile

    static func tile(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let repeats = try c.requireConstant(1, "repeats").sizes
        guard repeats.count == x.count, repeats.allSatisfy({ $0 >= 0 }) else {
            throw QuarryError.invalidArgument("repeats \(repeats) must hold one nonnegative count per dimension of \(x)")
        }
        let out = zip(x, repeats).map { $0 * $1 }
        guard let n = checkedCount(out), n <= OnnxImporter.maxRuntimeElements else { throw QuarryError.invalidArgument("Tile of \(x) by \(repeats) is too large") }
        if let t = try c.constant(0) {
            // Output element at index i reads the input at i mod x, dimension by dimension.
            let xs = strides(of: x)
            var src: [Int] = []
            src.reserveCapacity(n)
            forEachIndex(out) { idx in
                var o = 0
                for d in 0..<x.count { o += (idx[d] % x[d]) * xs[d] }
                src.append(o)
            }
            try c.setConstant(0, t.gathered(src, shape: out))
            return
        }
        let integer = try c.isInteger(0)
        let axes = (0..<x.count).filter { repeats[$0] != 1 }
        if axes.isEmpty { try c.alias(try c.value(0), integer: integer); return }
        guard n > 0 else { throw c.unsupported("Tile of a run-time value to the empty shape \(out)") }
        // Repeating axis a copies the whole block x[i_0, …, i_{a-1}, :, …] r times: viewed as
        // [outer, 1, inner] and added to zeros [1, r, 1] it broadcasts to [outer, r, inner], which
        // is the tiled tensor in row-major order. The add is exact (x + 0 = x, NaN and ±inf kept)
        // and keeps every intermediate at rank 3, within any backend's rank limit.
        var cur = try c.value(0), shape = x
        for (k, a) in axes.enumerated() {
            let r = repeats[a]
            let outer = shape[..<a].reduce(1, *), inner = shape[a...].reduce(1, *)
            let view = try c.emitInternal(.reshape(shape: [outer, 1, inner]), [cur], "axis\(a)_view")
            let zeros = c.parameter(HostTensor(floats: [Float](repeating: 0, count: r), shape: [1, r, 1]), key: "zeros:[1, \(r), 1]")
            let rep = try c.emitInternal(.binary(.add, activation: nil), [view.name, zeros], "axis\(a)_repeat")
            shape[a] *= r
            if k == axes.count - 1 {
                try c.emit(.reshape(shape: shape), [rep.name], integer: integer)
            } else {
                cur = try c.emitInternal(.reshape(shape: shape), [rep.name], "axis\(a)_tiled").name
            }
        }
    }

    // MARK: DepthToSpace / SpaceToDepth

    /// Input 0 viewed as `view`, permuted by `perm` and viewed as `out`: folded for a constant.
    static func shuffle(_ c: inout NodeContext, view: [Int], perm: [Int], out: [Int]) throws {
        if let t = try c.constant(0) {
            try c.setConstant(0, t.reshaped(view).transposed(perm).reshaped(out))
            return
        }
        let v = try c.emitInternal(.reshape(shape: view), [try c.value(0)], "blocks")
        let p = try c.emitInternal(.transpose(perm: perm), [v.name], "moved")
        try c.emit(.reshape(shape: out), [p.name], integer: try c.isInteger(0))
    }

    static func depthToSpace(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let b = c.int("blocksize", 0)
        let mode = c.string("mode", "DCR")
        guard x.count == 4 else { throw QuarryError.invalidArgument("input \(x) must be 4-D [N, C, H, W]") }
        guard b > 0, x[1] % (b * b) == 0 else { throw QuarryError.invalidArgument("blocksize \(b) must be positive and its square divide the \(x[1]) channels") }
        let (n, ch, h, w) = (x[0], x[1] / (b * b), x[2], x[3])
        let out = [n, ch, h * b, w * b]
        switch mode {
        // DCR: channel = (bh · b + bw) · C' + c; CRD: channel = c · b² + bh · b + bw. Either way the
        // output is [N, C', H, bh, W, bw] flattened.
        case "DCR": try shuffle(&c, view: [n, b, b, ch, h, w], perm: [0, 3, 4, 1, 5, 2], out: out)
        case "CRD": try shuffle(&c, view: [n, ch, b, b, h, w], perm: [0, 1, 4, 2, 5, 3], out: out)
        default: throw c.unsupported("mode '\(mode)' (DCR and CRD are defined)")
        }
    }

    static func spaceToDepth(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let b = c.int("blocksize", 0)
        // mode (SpaceToDepth-28; read at any opset) picks the channel order, as DepthToSpace's does.
        let mode = c.string("mode", "DCR")
        guard x.count == 4 else { throw QuarryError.invalidArgument("input \(x) must be 4-D [N, C, H, W]") }
        guard b > 0, x[2] % b == 0, x[3] % b == 0 else { throw QuarryError.invalidArgument("blocksize \(b) must be positive and divide the height \(x[2]) and width \(x[3])") }
        let (n, ch, h, w) = (x[0], x[1], x[2] / b, x[3] / b)
        let view = [n, ch, h, b, w, b], out = [n, ch * b * b, h, w]
        switch mode {
        // The inverses of DepthToSpace's: channel (bh · b + bw) · C + c (DCR) or c · b² + bh · b + bw (CRD).
        case "DCR": try shuffle(&c, view: view, perm: [0, 3, 5, 1, 2, 4], out: out)
        case "CRD": try shuffle(&c, view: view, perm: [0, 1, 3, 5, 2, 4], out: out)
        default: throw c.unsupported("mode '\(mode)' (DCR and CRD are defined)")
        }
    }

    // MARK: RMSNormalization

    static func rmsNormalization(_ c: inout NodeContext) throws {
        // stash_type names the statistics' precision; Quarry computes them in float32 (the default, 1).
        c.ignore("stash_type")
        let x = try c.shape(0)
        let axis = try c.normAxis(c.int("axis", -1), rank: x.count)
        let eps = c.float("epsilon", 1e-5)
        let axes = Array(axis..<x.count)
        let v = try c.value(0)
        let sq = try c.emitInternal(.binary(.mul, activation: nil), [v, v], "squared")
        let ms = try c.emitInternal(.reduce(.mean, axes: axes, keepDims: true), [sq.name], "mean_square")
        let e = c.scalarParameter(eps)
        let mse = try c.emitInternal(.binary(.add, activation: nil), [ms.name, e], "mean_square_eps")
        let rms = try c.emitInternal(.activation(.sqrt), [mse.name], "rms")
        let normed = try c.emitInternal(.binary(.div, activation: nil), [v, rms.name], "normalised")
        // The scale broadcasts against the trailing (normalised) dimensions, numpy style.
        try c.emit(.binary(.mul, activation: nil), [normed.name, try c.value(1)])
    }

    // MARK: RotaryEmbedding

    static func rotaryEmbedding(_ c: inout NodeContext) throws {
        let x = try c.shape(0)
        let interleaved = c.int("interleaved", 0) != 0
        var rot = c.int("rotary_embedding_dim", 0)
        let heads = c.int("num_heads", 0)
        // Work on a 4-D view with the head size last: 4-D input [B, H, S, D] as it is, 3-D input
        // [B, S, H·D] as [B, S, H, D]. The caches, [B, S, D/2], broadcast over the heads axis.
        var view: [Int], cacheView: [Int]
        switch x.count {
        case 4:
            view = x
            cacheView = [x[0], 1, x[2], -1]
        case 3:
            guard heads > 0, x[2] % heads == 0 else { throw QuarryError.invalidArgument("3-D input \(x) needs num_heads dividing its hidden size, got \(heads)") }
            view = [x[0], x[1], heads, x[2] / heads]
            cacheView = [x[0], x[1], 1, -1]
        default:
            throw QuarryError.invalidArgument("input \(x) must be 3-D [B, S, H·D] or 4-D [B, H, S, D]")
        }
        let (batch, seq, head) = (x[0], x.count == 4 ? x[2] : x[1], view[3])
        if rot == 0 { rot = head }
        guard rot > 0, rot <= head, rot % 2 == 0 else { throw QuarryError.invalidArgument("rotary_embedding_dim \(rot) must be even and at most the head size \(head)") }
        let half = rot / 2
        cacheView[3] = half

        /// The cos (input 1) or sin (input 2) cache as [B, S, D/2] viewed for broadcasting.
        func cache(_ i: Int, _ tag: String) throws -> String {
            let s = try c.shape(i)
            guard s.last == half else { throw QuarryError.invalidArgument("\(tag)_cache \(s) must end in rotary_embedding_dim / 2 = \(half)") }
            var shape = cacheView
            let table: String
            if c.hasInput(3) {
                // cache[position_ids]: rows of a [max_position, D/2] table, looked up by the
                // embedding op, or taken once on the host when ids and cache are both constant.
                let ids = try c.shape(3)
                guard s.count == 2, ids == [batch, seq] else {
                    throw QuarryError.invalidArgument("with position_ids \(ids) (expected [\(batch), \(seq)]) the \(tag)_cache \(s) must be 2-D [max_position, \(half)]")
                }
                let p = try c.constant(3)
                if let p, let bad = p.int64s.first(where: { $0 < 0 || Int($0) >= s[0] }) {
                    throw QuarryError.invalidArgument("position id \(bad) is outside the \(s[0]) cached positions")
                }
                if let p, let t = try c.constant(i) {
                    return c.parameter(t.taking(p.int64s.map { Int($0) }, axis: 0).reshaped(shape), key: "\(c.inputName(i))[\(c.inputName(3))]")
                }
                table = try c.emitInternal(.embedding, [try c.value(3), try c.value(i)], "\(tag)_rows").name
            } else {
                guard s.count == 3, s[0] == batch || s[0] == 1, s[1] == seq else {
                    throw QuarryError.invalidArgument("without position_ids the \(tag)_cache \(s) must be [\(batch), \(seq), \(half)]")
                }
                shape[0] = s[0]
                table = try c.value(i)
            }
            return try c.emitInternal(.reshape(shape: shape), [table], "\(tag)_view").name
        }
        let cos = try cache(1, "cos"), sin = try cache(2, "sin")

        var xv = try c.value(0)
        if x.count == 3 { xv = try c.emitInternal(.reshape(shape: view), [xv], "heads").name }
        func slice(_ start: Int, _ end: Int, _ step: Int, _ tag: String) throws -> String {
            try c.emitInternal(.slice(starts: [start], ends: [end], axes: [3], steps: [step]), [xv], tag).name
        }
        // The rotated pairs: (x[j], x[j + D/2]) halves, or (x[2j], x[2j + 1]) interleaved.
        let x1 = interleaved ? try slice(0, rot, 2, "x1") : try slice(0, half, 1, "x1")
        let x2 = interleaved ? try slice(1, rot, 2, "x2") : try slice(half, rot, 1, "x2")
        func mul(_ a: String, _ b: String, _ tag: String) throws -> String {
            try c.emitInternal(.binary(.mul, activation: nil), [a, b], tag).name
        }
        let real = try c.emitInternal(.binary(.sub, activation: nil), [try mul(cos, x1, "cos_x1"), try mul(sin, x2, "sin_x2")], "real").name
        let imag = try c.emitInternal(.binary(.add, activation: nil), [try mul(sin, x1, "sin_x1"), try mul(cos, x2, "cos_x2")], "imag").name
        var rotated: String
        var pairShape = view
        pairShape[3] = half
        if interleaved {
            // real and imag side by side as [.., D/2, 2], read back as [.., D]: real at even positions.
            let r5 = try c.emitInternal(.reshape(shape: pairShape + [1]), [real], "real_pairs")
            let i5 = try c.emitInternal(.reshape(shape: pairShape + [1]), [imag], "imag_pairs")
            let both = try c.emitInternal(.concat(axis: 4), [r5.name, i5.name], "pairs")
            pairShape[3] = rot
            rotated = try c.emitInternal(.reshape(shape: pairShape), [both.name], "rotated").name
        } else {
            rotated = try c.emitInternal(.concat(axis: 3), [real, imag], "rotated").name
        }
        if rot < head { rotated = try c.emitInternal(.concat(axis: 3), [rotated, try slice(rot, head, 1, "pass")], "joined").name }
        if x.count == 3 { try c.emit(.reshape(shape: x), [rotated]) } else { try c.alias(rotated) }
    }

    // MARK: Einsum

    /// An Einsum operand (or partial product) while it is lowered: its Quarry value, and the
    /// label and size of each of its dimensions.
    struct EinsumTerm {
        var value: String
        var labels: [Int]
        var shape: [Int]
        func size(_ l: Int) -> Int { shape[labels.firstIndex(of: l)!] }
    }

    /// Einsum of any number of operands: indices found in one operand only and not in the output
    /// are summed first, then the operands are multiplied in left to right, each product a batched
    /// matmul [batch, M, K] · [batch, K, N] (or a broadcast multiply when nothing is contracted),
    /// keeping the indices the output or a later operand still needs; the result is transposed
    /// to the output's order. Ellipsis dimensions broadcast from the right, as numpy's do. An
    /// index repeated within one operand (a diagonal or trace) is first taken as the diagonal.
    static func einsum(_ c: inout NodeContext) throws {
        let equation = c.string("equation", "")
        let eq = equation.filter { !$0.isWhitespace }
        func invalid(_ why: String) -> QuarryError { .invalidArgument("equation '\(equation)': \(why)") }
        let sides = eq.components(separatedBy: "->")
        guard sides.count <= 2 else { throw invalid("more than one '->'") }
        let terms = sides[0].components(separatedBy: ",")
        guard terms.count == c.inputCount, (0..<c.inputCount).allSatisfy({ c.hasInput($0) }) else {
            throw invalid("\(terms.count) operand(s) for \(c.inputCount) input(s)")
        }
        /// A term's letters before and after its ellipsis (nil: no ellipsis), as character codes.
        func parse(_ t: String) throws -> (pre: [Int], post: [Int]?) {
            let parts = t.components(separatedBy: "...")
            guard parts.count <= 2 else { throw invalid("more than one ellipsis in '\(t)'") }
            let codes = try parts.map { p in
                try p.unicodeScalars.map { u -> Int in
                    guard u.isASCII, CharacterSet.letters.contains(u) else { throw invalid("'\(u)' is not an index letter") }
                    return Int(u.value)
                }
            }
            return (codes[0], parts.count == 2 ? codes[1] : nil)
        }
        let shapes = try (0..<terms.count).map { try c.shape($0) }
        let parsed = try terms.map(parse)
        // The dimensions an ellipsis stands for get labels −E … −1, right-aligned across the
        // operands (numpy's broadcasting) and sorting before every letter.
        var ellipsisRank = 0
        for (i, p) in parsed.enumerated() {
            let explicit = p.pre.count + (p.post?.count ?? 0)
            guard p.post == nil ? shapes[i].count == explicit : shapes[i].count >= explicit else {
                throw invalid("operand \(i) '\(terms[i])' does not fit its shape \(shapes[i])")
            }
            ellipsisRank = Swift.max(ellipsisRank, shapes[i].count - explicit)
        }
        /// The diagonal of `t` along index `l`, which it holds k > 1 times (a diagonal or trace):
        /// those axes moved last and merged into one of n^k elements, of which every
        /// (1 + n + … + n^(k−1))-th is on the diagonal: a strided slice picks the n of them.
        func diagonal(_ t: EinsumTerm, _ l: Int, _ tag: String) throws -> EinsumTerm {
            let at = t.labels.indices.filter { t.labels[$0] == l }, rest = t.labels.indices.filter { t.labels[$0] != l }
            let n = t.shape[at[0]]
            guard at.allSatisfy({ t.shape[$0] == n }) else {
                throw invalid("index '\(Character(Unicode.Scalar(UInt8(l))))' has sizes \(at.map { t.shape[$0] }) within one operand")
            }
            var v = t.value
            if rest + at != Array(t.labels.indices) { v = try c.emitInternal(.transpose(perm: rest + at), [v], "\(tag)_last").name }
            let lead = rest.map { t.shape[$0] }
            let whole = at.reduce(1) { p, _ in p * n }, step = at.reduce(0) { s, _ in s * n + 1 }
            let flat = try c.emitInternal(.reshape(shape: lead + [whole]), [v], "\(tag)_flat")
            let d = try c.emitInternal(.slice(starts: [0], ends: [whole], axes: [lead.count], steps: [step]), [flat.name], tag)
            return EinsumTerm(value: d.name, labels: rest.map { t.labels[$0] } + [l], shape: d.shape)
        }
        var ops: [EinsumTerm] = []
        var sizes: [Int: Int] = [:]
        var allLabels: [Int] = []  // every operand's labels as written (repeats counted)
        for (i, p) in parsed.enumerated() {
            var labels = p.pre
            if let post = p.post {
                let e = shapes[i].count - p.pre.count - post.count
                labels += (-e..<0).map { $0 }
                labels += post
            }
            for (l, d) in zip(labels, shapes[i]) {
                if let s = sizes[l], s != d {
                    guard s == 1 || d == 1 else { throw invalid("index sizes \(s) and \(d) do not broadcast") }
                    sizes[l] = Swift.max(s, d)
                } else {
                    sizes[l] = d
                }
            }
            allLabels += labels
            var term = EinsumTerm(value: try c.value(i), labels: labels, shape: shapes[i])
            while let l = term.labels.first(where: { x in term.labels.filter { $0 == x }.count > 1 }) {
                term = try diagonal(term, l, "operand\(i)_diagonal\(l)")
            }
            ops.append(term)
        }
        let ellipsis = Array(-ellipsisRank..<0)
        var out: [Int]
        if sides.count == 2 {
            let p = try parse(sides[1])
            guard p.post != nil || ellipsisRank == 0 else { throw invalid("the output needs '...' for the operands' ellipsis dimensions") }
            out = p.pre + (p.post == nil ? [] : ellipsis) + (p.post ?? [])
            guard Set(out).count == out.count else { throw invalid("an output index repeats") }
            if let l = out.first(where: { sizes[$0] == nil }) { throw invalid("output index '\(Character(Unicode.Scalar(UInt8(l))))' is in no operand") }
        } else {
            // Implicit output: the ellipsis dimensions, then the letters used once, in alphabetical order.
            let counts = allLabels.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            out = ellipsis + counts.filter { $0.key > 0 && $0.value == 1 }.keys.sorted()
        }
        let outSet = Set(out)
        let integer = try (0..<c.inputCount).allSatisfy { try c.isInteger($0) }

        func reshape(_ t: EinsumTerm, _ shape: [Int], _ tag: String) throws -> String {
            t.shape == shape ? t.value : try c.emitInternal(.reshape(shape: shape), [t.value], tag).name
        }
        /// `t` summed over its indices outside `keep`.
        func sum(_ t: EinsumTerm, keeping keep: Set<Int>, _ tag: String) throws -> EinsumTerm {
            let axes = t.labels.indices.filter { !keep.contains(t.labels[$0]) }
            if axes.isEmpty { return t }
            let r = try c.emitInternal(.reduce(.sum, axes: axes, keepDims: false), [t.value], tag)
            return EinsumTerm(value: r.name, labels: t.labels.filter { keep.contains($0) }, shape: r.shape)
        }
        /// `t` with its indices in `order`.
        func permute(_ t: EinsumTerm, _ order: [Int], _ tag: String) throws -> EinsumTerm {
            if t.labels == order { return t }
            let perm = order.map { t.labels.firstIndex(of: $0)! }
            let r = try c.emitInternal(.transpose(perm: perm), [t.value], tag)
            return EinsumTerm(value: r.name, labels: order, shape: r.shape)
        }
        func product(_ ls: [Int], _ t: EinsumTerm) -> Int { ls.reduce(1) { $0 * t.size($1) } }

        var cur = try sum(ops[0], keeping: outSet.union(ops.dropFirst().flatMap(\.labels)), "sum0")
        for k in ops.indices.dropFirst() {
            let keep = outSet.union(ops[(k + 1)...].flatMap(\.labels))
            var a = try sum(cur, keeping: keep.union(ops[k].labels), "sum_a\(k)")
            var b = try sum(ops[k], keeping: keep.union(a.labels), "sum\(k)")
            // A contracted index of size 1 on one side broadcasts: Σ_j a·b_j = a · Σ_j b_j, so
            // each side sums it on its own.
            let uneven = Set(a.labels.filter { b.labels.contains($0) && !keep.contains($0) && a.size($0) != b.size($0) })
            if !uneven.isEmpty {
                a = try sum(a, keeping: Set(a.labels).subtracting(uneven), "broadcast_a\(k)")
                b = try sum(b, keeping: Set(b.labels).subtracting(uneven), "broadcast\(k)")
            }
            let batch = a.labels.filter { b.labels.contains($0) && keep.contains($0) }
            let contracted = a.labels.filter { b.labels.contains($0) && !keep.contains($0) }
            let m = a.labels.filter { !b.labels.contains($0) }, n = b.labels.filter { !a.labels.contains($0) }
            // The matmul reads either operand transposed, so an operand already laid out as
            // [batch, K, M] (A) or [batch, N, K] (B) needs no transpose: "bhid,bhjd->bhij" (keys
            // as they are) and "bid,hd->bih" (a Linear weight) run as one matmul.
            let transA = !contracted.isEmpty && a.labels == batch + contracted + m && !m.isEmpty
            let transB = !contracted.isEmpty && b.labels == batch + n + contracted && !n.isEmpty
            if !transA { a = try permute(a, batch + m + contracted, "order_a\(k)") }
            if !transB { b = try permute(b, batch + contracted + n, "order\(k)") }
            // Batch indices merge into one dimension unless one side broadcasts (size 1) along
            // some of them; then they stay apart and the matmul / multiply broadcasts them.
            let batchA = batch.map(a.size), batchB = batch.map(b.size)
            let (lead, leadB) = batchA == batchB ? ([batchA.reduce(1, *)], [batchB.reduce(1, *)]) : (batchA, batchB)
            let mSize = product(m, a), nSize = product(n, b), kSize = product(contracted, a)
            let y: String
            if contracted.isEmpty {
                let av = try reshape(a, lead + [mSize, 1], "a\(k)"), bv = try reshape(b, leadB + [1, nSize], "b\(k)")
                y = try c.emitInternal(.binary(.mul, activation: nil), [av, bv], "outer\(k)").name
            } else {
                let av = try reshape(a, lead + (transA ? [kSize, mSize] : [mSize, kSize]), "a\(k)")
                let bv = try reshape(b, leadB + (transB ? [nSize, kSize] : [kSize, nSize]), "b\(k)")
                y = try c.emitInternal(.matmul(transposeA: transA, transposeB: transB), [av, bv], "matmul\(k)").name
            }
            let labels = batch + m + n
            let shape = zip(batchA, batchB).map { Swift.max($0, $1) } + m.map(a.size) + n.map(b.size)
            let yShape = (batchA == batchB ? [batchA.reduce(1, *)] : shape.prefix(batch.count).map { $0 }) + [mSize, nSize]
            let t = EinsumTerm(value: y, labels: labels, shape: yShape)
            cur = EinsumTerm(value: try reshape(t, shape, "product\(k)"), labels: labels, shape: shape)
        }
        cur = try sum(cur, keeping: outSet, "sum_out")
        if cur.labels == out {
            try c.alias(cur.value, integer: integer)
        } else {
            try c.emit(.transpose(perm: out.map { cur.labels.firstIndex(of: $0)! }), [cur.value], integer: integer)
        }
    }
}
