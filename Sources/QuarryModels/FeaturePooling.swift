import Foundation
import Quarry

// Turning a tap's tensor into one vector per item, as feature-extraction tools do: global average
// over space (CNNs), the CLS token or the mean over the attention mask (BERT-style encoders, the
// latter what sentence-transformers does), the last real token (GPT-style decoders and LSTMs), and
// optional L2 normalisation. These run on the host after the graph; they are a few passes over
// memory next to the model's work.

public enum FeaturePooling: String, Sendable, CaseIterable, Codable {
    /// The tap as it is, flattened per item.
    case none
    /// Mean over every axis after the channel axis: [N, C, H, W] → [N, C]; [N, S, D] → mean over S.
    case globalAverage = "global_average"
    /// The first token: [N, S, D] → [N, D].
    case clsToken = "cls"
    /// Mean over the tokens whose mask is 1: [N, S, D] with mask [N, S] → [N, D].
    case maskedMean = "mean"
    /// The last token whose mask is 1 (the last position without a mask): [N, S, D] → [N, D].
    case lastToken = "last"
    /// Per feature, the largest value over the tokens whose mask is 1 (sentence-transformers'
    /// max pooling): [N, S, D] with mask [N, S] → [N, D].
    case maskedMax = "max"

    /// Pools `features` (batch first) and, with `l2Normalize`, scales each item's vector to unit
    /// length. `attentionMask` [N, S] is used by `maskedMean` and `lastToken`; without it every
    /// token counts.
    public func apply(to features: Tensor, attentionMask: Tensor? = nil, l2Normalize: Bool) throws -> Tensor {
        let pooled = try apply(to: features, attentionMask: attentionMask)
        return l2Normalize ? l2Normalized(pooled) : pooled
    }

    /// Pools `features` (batch first). `attentionMask` [N, S] is used by `maskedMean` and
    /// `lastToken`; without it every token counts.
    public func apply(to features: Tensor, attentionMask: Tensor? = nil) throws -> Tensor {
        let shape = features.shape
        guard let n = shape.first, shape.count >= 2 else {
            throw QuarryError.invalidArgument("feature pooling needs a batch-first tensor, got shape \(shape)")
        }
        let src = features.pointer
        switch self {
        case .none:
            return try features.copy().reshaped([n, shape.dropFirst().reduce(1, *)])

        case .globalAverage:
            if shape.count == 2 { return features.copy() }
            if shape.count == 3 {
                // Sequences [N, S, D]: average the S axis.
                return try Self.tokenPool(features, mask: nil, last: false)
            }
            let c = shape[1], spatial = shape.dropFirst(2).reduce(1, *)
            let out = Tensor(uninitializedShape: [n, c])
            for i in 0..<(n * c) {
                out.pointer[i] = Float(Self.sum(src + i * spatial, count: spatial) / Double(max(spatial, 1)))
            }
            return out

        case .clsToken:
            guard shape.count == 3 else { throw QuarryError.invalidArgument("CLS pooling needs [N, S, D], got \(shape)") }
            let (s, d) = (shape[1], shape[2])
            let out = Tensor(uninitializedShape: [n, d])
            for i in 0..<n { out.pointer.advanced(by: i * d).update(from: src.advanced(by: i * s * d), count: d) }
            return out

        case .maskedMean, .lastToken, .maskedMax:
            guard shape.count == 3 else {
                throw QuarryError.invalidArgument("\(rawValue) pooling needs [N, S, D], got \(shape)")
            }
            if let m = attentionMask, m.shape != [n, shape[1]] {
                throw QuarryError.invalidArgument("attention mask shape \(m.shape) does not match features \(shape)")
            }
            if self == .maskedMax { return try Self.maxPool(features, mask: attentionMask) }
            return try Self.tokenPool(features, mask: attentionMask, last: self == .lastToken)
        }
    }

    /// The sum of `count` floats: 16 float lanes over runs of 1,024 values (64 per lane), the runs
    /// summed in float64. One running float64 sum was a chain of dependent adds (4 cycles each),
    /// and pooling a 224x224 input that way took a twentieth of a decode benchmark's time.
    static func sum(_ p: UnsafePointer<Float>, count: Int) -> Double {
        let raw = UnsafeRawPointer(p)
        var total = 0.0
        var j = 0
        while j + 16 <= count {
            let end = min(count, j + 1024) & ~15
            var lanes = SIMD16<Float>()
            while j < end {
                lanes += raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
                j += 16
            }
            total += Double(lanes.sum())
        }
        while j < count { total += Double(p[j]); j += 1 }
        return total
    }

    static func maxPool(_ x: Tensor, mask: Tensor?) throws -> Tensor {
        let (n, s, d) = (x.shape[0], x.shape[1], x.shape[2])
        let out = Tensor(shape: [n, d], repeating: -.infinity)
        for i in 0..<n {
            var any = false
            for t in 0..<s where mask.map({ $0.pointer[i * s + t] > 0.5 }) ?? true {
                any = true
                let row = x.pointer.advanced(by: (i * s + t) * d)
                for j in 0..<d { out.pointer[i * d + j] = max(out.pointer[i * d + j], row[j]) }
            }
            guard any else { throw QuarryError.invalidArgument("item \(i) has no token with mask 1") }
        }
        return out
    }

    static func tokenPool(_ x: Tensor, mask: Tensor?, last: Bool) throws -> Tensor {
        let (n, s, d) = (x.shape[0], x.shape[1], x.shape[2])
        let out = Tensor(shape: [n, d], repeating: 0)
        for i in 0..<n {
            let keep = (0..<s).map { t in mask.map { $0.pointer[i * s + t] > 0.5 } ?? true }
            if last {
                guard let t = keep.lastIndex(of: true) else {
                    throw QuarryError.invalidArgument("item \(i) has no token with mask 1")
                }
                out.pointer.advanced(by: i * d).update(from: x.pointer.advanced(by: (i * s + t) * d), count: d)
                continue
            }
            let count = keep.filter { $0 }.count
            guard count > 0 else { throw QuarryError.invalidArgument("item \(i) has no token with mask 1") }
            var acc = [Double](repeating: 0, count: d)
            for t in 0..<s where keep[t] {
                let row = x.pointer.advanced(by: (i * s + t) * d)
                for j in 0..<d { acc[j] += Double(row[j]) }
            }
            for j in 0..<d { out.pointer[i * d + j] = Float(acc[j] / Double(count)) }
        }
        return out
    }
}

/// Each item (row of the batch-first tensor, flattened) divided by its L2 norm, as
/// torch.nn.functional.normalize does (the norm floored at 1e-12 so zero rows stay zero).
public func l2Normalized(_ x: Tensor) -> Tensor {
    let out = x.copy()
    guard let n = x.shape.first, n > 0 else { return out }
    let width = x.count / n
    for i in 0..<n {
        let row = out.pointer.advanced(by: i * width)
        var s = 0.0
        for j in 0..<width { s += Double(row[j]) * Double(row[j]) }
        let scale = Float(1 / max(s.squareRoot(), 1e-12))
        for j in 0..<width { row[j] *= scale }
    }
    return out
}
