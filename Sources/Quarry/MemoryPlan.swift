// The memory plan: every intermediate value gets an offset in one arena, and values whose lives do
// not overlap share bytes. Layout-only ops (reshape, flatten, identity) alias their input instead
// of copying. Requested outputs live to the end of the run. Offsets are in floats, 64-byte aligned.

public struct MemoryPlan: Sendable {
    /// Where a value's elements live during a run.
    public enum Location: Hashable, Sendable {
        /// In the arena, at this float offset.
        case arena(Int)
        /// The bytes of a graph input or a parameter, by name (an alias of one, through layout ops).
        case external(String)
    }

    public let locations: [String: Location]
    /// Arena size in floats.
    public let arenaCount: Int
    /// Peak bytes of intermediate activations (the arena).
    public var peakBytes: Int { arenaCount * MemoryLayout<Float>.stride }
    /// What the same values would take with no reuse, for reports.
    public let unsharedBytes: Int
    /// Nodes that need no kernel because their output aliases their input.
    public let aliasedNodes: Set<String>
    /// Per value that aliases another through layout ops, the value whose storage it shares.
    private let roots: [String: String]

    /// The value whose storage `value` shares (itself unless a layout op's output).
    public func root(of value: String) -> String { roots[value] ?? value }

    static let alignment = 16

    public init(graph: Graph, shapes: [String: [Int]], keep: Set<String>) {
        let external = Set(graph.inputs.map(\.name)).union(graph.parameters.keys)
        // Each value's root: the value whose storage it shares.
        var root: [String: String] = [:]
        var aliased = Set<String>()
        for node in graph.nodes where node.op.isLayoutOnly {
            let src = node.inputs[0]
            root[node.outputs[0]] = root[src] ?? src
            aliased.insert(node.name)
        }
        func rootOf(_ v: String) -> String { root[v] ?? v }

        var lastUse: [String: Int] = [:]
        let end = graph.nodes.count
        for (i, node) in graph.nodes.enumerated() {
            for v in node.inputs where !v.isEmpty { lastUse[rootOf(v)] = max(lastUse[rootOf(v)] ?? i, i) }
            for v in node.outputs { lastUse[rootOf(v)] = max(lastUse[rootOf(v)] ?? i, i) }
        }
        for v in keep { lastUse[rootOf(v)] = end }

        var locations: [String: Location] = [:]
        // Free blocks as (offset, count), kept sorted by offset and coalesced.
        var free: [(offset: Int, count: Int)] = []
        var top = 0
        var unshared = 0
        func size(_ v: String) -> Int {
            let n = shapes[v]?.reduce(1, *) ?? 0
            return (max(n, 1) + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        func allocate(_ n: Int) -> Int {
            // Best fit among free blocks; else grow the arena (extending a free block at the top).
            var best = -1
            for (i, b) in free.enumerated() where b.count >= n && (best < 0 || b.count < free[best].count) { best = i }
            if best >= 0 {
                let off = free[best].offset
                if free[best].count == n { free.remove(at: best) } else { free[best].offset += n; free[best].count -= n }
                return off
            }
            if let last = free.last, last.offset + last.count == top {
                free.removeLast()
                top = last.offset + n
                return last.offset
            }
            top += n
            return top - n
        }
        func release(_ off: Int, _ n: Int) {
            var i = 0
            while i < free.count && free[i].offset < off { i += 1 }
            free.insert((off, n), at: i)
            if i + 1 < free.count, free[i].offset + free[i].count == free[i + 1].offset {
                free[i].count += free[i + 1].count; free.remove(at: i + 1)
            }
            if i > 0, free[i - 1].offset + free[i - 1].count == free[i].offset {
                free[i - 1].count += free[i].count; free.remove(at: i)
            }
        }

        for v in external { locations[v] = .external(v) }
        for (i, node) in graph.nodes.enumerated() {
            if aliased.contains(node.name) {
                let r = rootOf(node.outputs[0])
                locations[node.outputs[0]] = locations[r]
                continue
            }
            for v in node.outputs {
                let n = size(v)
                unshared += n
                locations[v] = .arena(allocate(n))
            }
            // Release every root whose last use is this node (its outputs included when unused).
            var dying = Set<String>()
            for v in node.inputs + node.outputs where !v.isEmpty {
                let r = rootOf(v)
                if lastUse[r] == i, !external.contains(r) { dying.insert(r) }
            }
            for r in dying.sorted() { if case .arena(let off)? = locations[r] { release(off, size(r)) } }
        }
        // Aliases created after their root was placed point at the root's final location.
        for (v, r) in root { locations[v] = locations[rootOf(r)] }
        self.locations = locations
        arenaCount = top
        unsharedBytes = unshared * MemoryLayout<Float>.stride
        aliasedNodes = aliased
        roots = root
    }
}
