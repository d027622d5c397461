/// Every error a user can cause names the node, tensor or file it concerns.
public enum QuarryError: Error, CustomStringConvertible, Equatable {
    /// Shape inference or attribute validation failed at a node.
    case shapeMismatch(node: String, message: String)
    case invalidArgument(String)
    case unknownValue(String)
    case unsupported(String)
    case device(String)
    case file(path: String, message: String)

    public var description: String {
        switch self {
        case .shapeMismatch(let node, let message): return "node '\(node)': \(message)"
        case .invalidArgument(let m): return m
        case .unknownValue(let name): return "no tensor named '\(name)' in the graph"
        case .unsupported(let m): return "unsupported: \(m)"
        case .device(let m): return "device error: \(m)"
        case .file(let path, let message): return "\(path): \(message)"
        }
    }
}
