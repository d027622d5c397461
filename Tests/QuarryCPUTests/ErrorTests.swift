// Wrong shapes and attributes are caught by shape inference with an error that names the node
// and says what does not fit, before any kernel is bound.

import Foundation
import Quarry
import QuarryCPU
import XCTest

final class ErrorTests: XCTestCase {
    /// Builds a one-node graph on inputs of the given shapes and expects inference to fail at
    /// `node` with a message containing `phrase`.
    func expectError(
        _ op: Op, inputs: [[Int]?], node: String = "layer1.0.conv1", phrase: String, outputs: Int = 1,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let g = GraphBuilder()
        var values: [Value?] = []
        var shapes: [String: [Int]] = [:]
        for (i, s) in inputs.enumerated() {
            guard let s else { values.append(nil); continue }
            values.append(g.input("x\(i)", shape: s.map { Dim.fixed($0) }))
            shapes["x\(i)"] = s
        }
        let parts = node.split(separator: ".").map(String.init)
        func add(_ rest: ArraySlice<String>) {
            if rest.count == 1 { g.node(rest.first!, op, values, outputs: outputs) } else { g.scope(rest.first!) { add(rest.dropFirst()) } }
        }
        add(parts[...])
        let graph = g.build(outputs: [])
        XCTAssertThrowsError(try graph.inferShapes(inputShapes: shapes), file: file, line: line) { error in
            guard case QuarryError.shapeMismatch(let n, let message) = error else {
                return XCTFail("expected a shape mismatch, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(n, node, file: file, line: line)
            XCTAssertTrue(message.contains(phrase), "message '\(message)' lacks '\(phrase)'", file: file, line: line)
            XCTAssertTrue("\(error)".contains("'\(node)'"), "description '\(error)' does not name the node", file: file, line: line)
        }
    }

    func testConvChannelMismatchNamesNodeAndCounts() {
        expectError(.conv2d(Conv2DAttributes(kernel: (3, 3))), inputs: [[1, 64, 8, 8], [16, 3, 3, 3]],
                    phrase: "input has 64 channels, weight expects 3")
    }

    func testDenseFeatureMismatch() {
        expectError(.dense(activation: nil), inputs: [[2, 10], [5, 12]], node: "classifier.fc", phrase: "input has 10 features, weight expects 12")
    }

    func testPoolingWindowLargerThanInput() {
        expectError(.maxPool2d(Pool2DAttributes(kernel: (5, 5))), inputs: [[1, 3, 3, 3]], node: "maxpool", phrase: "smaller than the pooling window")
    }

    func testPoolingPaddingNotSmallerThanKernel() {
        expectError(.avgPool2d(Pool2DAttributes(kernel: (2, 2), padding: Padding2D(2))), inputs: [[1, 3, 9, 9]], node: "pool", phrase: "padding must be smaller")
    }

    func testBatchNormStatisticsShape() {
        expectError(.batchNorm(epsilon: 1e-5), inputs: [[1, 8, 4, 4], [8], [8], [7], [8]], node: "layer1.0.bn1", phrase: "has shape [7], expected [8]")
    }

    func testLayerNormParameterShape() {
        expectError(.layerNorm(epsilon: 1e-5, normalizedDims: 1), inputs: [[2, 5, 16], [15], [16]], node: "encoder.ln_1", phrase: "does not match normalised shape [16]")
    }

    func testSoftmaxAxisOutOfRange() {
        expectError(.softmax(axis: 3), inputs: [[2, 5, 16]], node: "attn.softmax", phrase: "axis 3 out of range")
    }

    func testAttentionHeadsAndMask() {
        expectError(.attention(heads: 5, causal: false), inputs: [[1, 4, 16], [1, 4, 16], [1, 4, 16]], node: "h.0.attn", phrase: "not divisible by 5 heads")
        expectError(.attention(heads: 2, causal: false), inputs: [[1, 4, 16], [1, 6, 16], [1, 6, 16], [1, 4]], node: "h.0.attn", phrase: "key padding mask shape [1, 4], expected [1, 6]")
    }

    func testLSTMWeightShape() {
        expectError(.lstm(RecurrentAttributes(hiddenSize: 8)), inputs: [[2, 5, 3], [1, 24, 3], [1, 32, 8]], node: "rnn", phrase: "input weight shape [1, 24, 3], expected [1, 32, 3]", outputs: 3)
    }

    func testBinaryShapesDoNotBroadcast() {
        expectError(.binary(.add, activation: nil), inputs: [[2, 3, 4], [5, 4]], node: "layer2.1.add", phrase: "shapes [2, 3, 4] and [5, 4] do not broadcast")
    }

    func testConcatOperandMismatch() {
        expectError(.concat(axis: 1), inputs: [[1, 3, 4, 4], [1, 5, 4, 5]], node: "features.cat", phrase: "operand 1 has shape [1, 5, 4, 5]")
    }

    func testSplitSizesDoNotAddUp() {
        expectError(.split(axis: 1, sizes: [2, 2]), inputs: [[1, 5]], node: "split", phrase: "do not add up to dimension 5", outputs: 2)
    }

    func testSliceStepZeroAndPadCount() {
        expectError(.slice(starts: [0], ends: [2], axes: [0], steps: [0]), inputs: [[4, 4]], node: "slice", phrase: "slice step 0")
        expectError(.pad(pads: [1, 1], mode: .constant, value: 0), inputs: [[4, 4]], node: "pad", phrase: "pad needs 4 values")
        expectError(.pad(pads: [0, 3, 0, 3], mode: .reflect, value: 0), inputs: [[4, 3]], node: "pad", phrase: "reflect padding")
    }

    func testReshapeTransposeReduceAndUpsample() {
        expectError(.reshape(shape: [3, -1]), inputs: [[2, 5]], node: "view", phrase: "cannot reshape [2, 5]")
        expectError(.transpose(perm: [0, 2]), inputs: [[2, 5]], node: "permute", phrase: "permutation [0, 2] does not fit rank 2")
        expectError(.reduce(.mean, axes: [4], keepDims: false), inputs: [[2, 5]], node: "mean", phrase: "reduce axis 4 out of range")
        expectError(.upsample(mode: .nearest, scaleH: 0.1, scaleW: 0.1, size: nil), inputs: [[1, 1, 4, 4]], node: "up", phrase: "give an empty output")
    }

    func testKernelFactoryRejectsNonComputingNode() {
        let node = Node(name: "weights", op: .constant, inputs: [], outputs: ["weights"])
        let ctx = KernelContext(node: node, inputShapes: [], outputShapes: [[1]], constants: [:], threads: CPUThreads(count: 1), packCache: PackCache())
        XCTAssertThrowsError(try CPUKernels.make(ctx)) { error in
            XCTAssertTrue("\(error)".contains("'weights'"), "\(error)")
        }
    }
}
