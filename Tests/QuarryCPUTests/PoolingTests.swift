// Pooling against a plain float64 reference that walks every window position, with random
// kernels, strides, asymmetric padding, dilation, ceil mode and both divisor conventions.

import Foundation
import Quarry
import XCTest

final class PoolingTests: XCTestCase {
    /// PyTorch / ONNX semantics written out: padded positions are skipped for max; the average
    /// divides by the window clipped to input + padding (count_include_pad) or by the input
    /// positions only.
    func referencePool(_ x: Tensor, _ a: Pool2DAttributes, isMax: Bool, outH: Int, outW: Int) -> [Double] {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let v = doubles(x)
        var out: [Double] = []
        for p in 0..<(n * c) {
            for oy in 0..<outH {
                for ox in 0..<outW {
                    var best = -Double.infinity, sum = 0.0, inside = 0, padded = 0
                    for ky in 0..<a.kernelH {
                        for kx in 0..<a.kernelW {
                            let y = oy * a.strideH - a.padding.top + ky * a.dilationH
                            let xx = ox * a.strideW - a.padding.left + kx * a.dilationW
                            if y < h + a.padding.bottom && xx < w + a.padding.right { padded += 1 }
                            guard y >= 0, y < h, xx >= 0, xx < w else { continue }
                            let e = v[p * h * w + y * w + xx]
                            best = max(best, e); sum += e; inside += 1
                        }
                    }
                    out.append(isMax ? best : sum / Double(a.countIncludePad ? padded : inside))
                }
            }
        }
        return out
    }

    func testMaxAndAveragePoolingWithRandomAttributes() throws {
        var rng = makeTestRNG()
        for trial in 0..<60 {
            let kh = Int.random(in: 1...4, using: &rng), kw = Int.random(in: 1...4, using: &rng)
            let dil = trial % 5 == 0 && trial % 4 != 0 ? (Int.random(in: 1...2, using: &rng), Int.random(in: 1...2, using: &rng)) : (1, 1)
            // Every fourth trial is wide with stride 2, the vectorised even-lane path.
            let wide = trial % 4 == 0
            let stride = wide ? (2, 2) : (Int.random(in: 1...3, using: &rng), Int.random(in: 1...3, using: &rng))
            let pad = Padding2D(
                top: Int.random(in: 0..<kh, using: &rng), left: Int.random(in: 0..<kw, using: &rng),
                bottom: Int.random(in: 0..<kh, using: &rng), right: Int.random(in: 0..<kw, using: &rng))
            let attrs = Pool2DAttributes(
                kernel: (kh, kw), stride: stride, padding: pad, dilation: dil,
                ceilMode: Bool.random(using: &rng), countIncludePad: Bool.random(using: &rng))
            // The input is at least as large as the dilated window, which shape inference requires.
            let spanH = dil.0 * (kh - 1) + 1, spanW = dil.1 * (kw - 1) + 1
            let shape = [Int.random(in: 1...2, using: &rng), Int.random(in: 1...3, using: &rng),
                         Int.random(in: max(5, spanH)...13, using: &rng),
                         wide ? Int.random(in: 50...90, using: &rng) : Int.random(in: max(5, spanW)...40, using: &rng)]
            let x = randomTensor(shape, &rng)
            for isMax in [true, false] {
                let op: Op = isMax ? .maxPool2d(attrs) : .avgPool2d(attrs)
                let y = try runCPUNode(op, [x], threads: trial % 2 + 1)[0]
                let expected = referencePool(x, attrs, isMax: isMax, outH: y.shape[2], outW: y.shape[3])
                assertClose(y, expected, rtol: 1e-5, atol: 1e-6, "\(op.name) \(shape) \(attrs)")
            }
        }
    }

    func testCeilModeDropsWindowStartingInPaddingAndCountsOnlyPaddedExtent() throws {
        // PyTorch: AvgPool2d(3, stride 2, padding 1, ceil_mode=True) on 6x6 gives 4x4; the last
        // window starts at row 5 and hangs past the one row of bottom padding.
        let x = Tensor(shape: [1, 1, 6, 6], repeating: 1)
        let a = Pool2DAttributes(kernel: (3, 3), stride: (2, 2), padding: Padding2D(1), ceilMode: true, countIncludePad: true)
        let y = try runCPUNode(.avgPool2d(a), [x])[0]
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        // Corner window: rows -1..1 (3 inside the padded extent), so 4 ones over 9 positions.
        XCTAssertEqual(y[flat: 0], 4 / 9, accuracy: 1e-6)
        // Last window: rows 5..7, of which 5 and 6 lie inside input + padding: 1 one over 2x2 = 4.
        XCTAssertEqual(y[flat: 15], 1 / 4, accuracy: 1e-6)
    }

    func testGlobalPooling() throws {
        var rng = makeTestRNG()
        for threads in [1, 2] {
            let shape = [Int.random(in: 1...3, using: &rng), Int.random(in: 1...9, using: &rng),
                         Int.random(in: 1...11, using: &rng), Int.random(in: 1...23, using: &rng)]
            let x = randomTensor(shape, &rng)
            let v = doubles(x), plane = shape[2] * shape[3]
            let planes = shape[0] * shape[1]
            let avg = try runCPUNode(.globalAvgPool, [x], threads: threads)[0]
            XCTAssertEqual(avg.shape, [shape[0], shape[1], 1, 1])
            assertClose(avg, (0..<planes).map { p in v[(p * plane)..<((p + 1) * plane)].reduce(0, +) / Double(plane) }, rtol: 1e-5, atol: 1e-6, "global avg")
            let mx = try runCPUNode(.globalMaxPool, [x], threads: threads)[0]
            assertClose(mx, (0..<planes).map { p in v[(p * plane)..<((p + 1) * plane)].max()! }, rtol: 0, atol: 0, "global max")
        }
    }
}
