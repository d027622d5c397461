// Seeded parameters filled in parallel stretches against one generator drawn in order: the same
// bits, or every seeded model's features would change with the core count.
import XCTest

@testable import Quarry

final class SeededParameterTests: XCTestCase {
    func testParallelFillEqualsOneSequentialPass() {
        // Sizes around the 2^18-value stretches, every initializer, names out of insertion order,
        // and one parameter that already has a value (skipped, drawing nothing).
        let given = try! Tensor(shape: [3], scalars: [1, 2, 3])
        let parameters: [String: Parameter] = [
            "b.weight": Parameter(shape: [700, 1000], initializer: .he(fanIn: 9)),
            "a.bias": Parameter(shape: [262_145], initializer: .constant(0.25)),
            "c.embed": Parameter(shape: [262_143], initializer: .normal(std: 0.02)),
            "d.dense": Parameter(shape: [3, 200_001], initializer: .xavier(fanIn: 7, fanOut: 11)),
            "e.small": Parameter(shape: [5], initializer: .he(fanIn: 1)),
            "f.given": Parameter(shape: [3], initializer: .normal(std: 1), value: given),
        ]
        var graph = Graph(inputs: [], nodes: [], parameters: parameters, outputs: [])
        let seed = UInt64.random(in: 0...UInt64.max)
        graph.materializeParameters(seed: seed)
        XCTAssertTrue(graph.untrained)

        var rng = SeededGenerator(seed: seed)
        for name in parameters.keys.sorted() where parameters[name]!.value == nil {
            let got = graph.parameters[name]!.value!
            var mismatches = 0
            for i in 0..<got.count {
                let want: Float
                switch parameters[name]!.initializer {
                case .constant(let v): want = v
                case .he(let fanIn): want = (2 / Float(fanIn)).squareRoot() * Graph.gaussian(&rng)
                case .normal(let std): want = std * Graph.gaussian(&rng)
                case .xavier(let fanIn, let fanOut):
                    let a = (6 / Float(fanIn + fanOut)).squareRoot()
                    want = Float.random(in: -a..<a, using: &rng)
                }
                if got.pointer[i].bitPattern != want.bitPattern { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "\(name), seed \(seed)")
        }
        XCTAssertEqual((0..<3).map { graph.parameters["f.given"]!.value!.pointer[$0] }, [1, 2, 3])
    }
}
