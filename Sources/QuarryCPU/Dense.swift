// Fully connected layers and batched matrix products, both through the packed GEMM.
//
// dense: out[M, N] = x[M, K] * w[N, K]^T + bias, with M the product of x's leading dimensions. The
// weight is the B operand and is packed once (transposed) when it is a constant.
// matmul: numpy semantics over broadcast batch dimensions; when B has no batch dimensions and A is
// not transposed, the batch folds into M and the whole product is one GEMM.

import Quarry

extension CPUKernels {
    static func makeDense(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .dense(let activation) = ctx.node.op else { preconditionFailure() }
        let x = ctx.shape(0), w = ctx.shape(1)
        let k = w[1], n = w[0], m = x.dropLast().reduce(1, *)
        let hasBias = ctx.hasInput(2)
        let threads = ctx.threads
        let packed: PackedMatrix? = ctx.constants[1].map { weights in
            ctx.packCache.value("\(ctx.node.name)/dense-weights") {
                PackedMatrix(b: weights.pointer, k: k, n: n, ldb: k, transposed: true)
            }
        }
        return { inputs, outputs in
            let b: GEMMOperand = packed.map { .packed($0) } ?? .matrix(inputs[1]!, ld: k, transposed: true)
            let epilogue = GEMMEpilogue(bias: hasBias ? inputs[2] : nil, biasAxis: .columns, activation: activation)
            sgemm(m: m, n: n, k: k, a: .matrix(inputs[0]!, ld: k, transposed: false), b: b, c: outputs[0], ldc: n,
                  epilogue: epilogue, threads: threads)
        }
    }

    static func makeMatMul(_ ctx: KernelContext) throws -> CPUKernel {
        guard case .matmul(let transposeA, let transposeB) = ctx.node.op else { preconditionFailure() }
        let aShape = ctx.shape(0), bShape = ctx.shape(1), outShape = ctx.outputShapes[0]
        let m = outShape[outShape.count - 2], n = outShape[outShape.count - 1]
        let k = transposeA ? aShape[aShape.count - 2] : aShape[aShape.count - 1]
        let lda = aShape[aShape.count - 1], ldb = bShape[bShape.count - 1]
        let batchShape = Array(outShape.dropLast(2))
        let batchCount = batchShape.reduce(1, *)
        let aMatrix = aShape[aShape.count - 2] * aShape[aShape.count - 1]
        let bMatrix = bShape[bShape.count - 2] * bShape[bShape.count - 1]
        // Offsets (in matrices) of each output batch entry's operands, broadcasting size-1 dims.
        let aBatch = batchOffsets(Array(aShape.dropLast(2)), into: batchShape)
        let bBatch = batchOffsets(Array(bShape.dropLast(2)), into: batchShape)
        let threads = ctx.threads
        // B without batch dimensions and A in row order: the batch is just more rows of A.
        let foldBatch = bShape.count == 2 && !transposeA && aShape.count == outShape.count
            && Array(aShape.dropLast(2)) == batchShape
        let packedB: PackedMatrix? = bShape.count == 2 ? ctx.constants[1].map { weights in
            ctx.packCache.value("\(ctx.node.name)/matmul-b") {
                PackedMatrix(b: weights.pointer, k: k, n: n, ldb: ldb, transposed: transposeB)
            }
        } : nil
        // Split by products when there are enough of them and each is small (a product of at
        // most 2^22 MACs takes tens of microseconds, comparable to a fork-join).
        let workers = min(threads.count, batchCount)
        let splitBatch = !foldBatch && workers > 1 && batchCount >= threads.count && m * n * k <= 1 << 22
        let single = CPUThreads(count: 1)
        return { inputs, outputs in
            let a = inputs[0]!, b = inputs[1]!, c = outputs[0]
            if foldBatch {
                let opB: GEMMOperand = packedB.map { .packed($0) } ?? .matrix(b, ld: ldb, transposed: transposeB)
                sgemm(m: m * batchCount, n: n, k: k, a: .matrix(a, ld: lda, transposed: false), b: opB, c: c, ldc: n,
                      threads: threads)
                return
            }
            func product(_ i: Int, threads: CPUThreads) {
                let opB: GEMMOperand = packedB.map { .packed($0) }
                    ?? .matrix(b + bBatch[i] * bMatrix, ld: ldb, transposed: transposeB)
                sgemm(m: m, n: n, k: k, a: .matrix(a + aBatch[i] * aMatrix, ld: lda, transposed: transposeA), b: opB,
                      c: c + i * m * n, ldc: n, threads: threads)
            }
            if splitBatch {
                // Many small products (attention's per-head QKᵀ and AV): each thread takes whole
                // products, rather than every product being forked over the threads.
                threads.parallelFor(workers) { w in
                    for i in (batchCount * w / workers)..<(batchCount * (w + 1) / workers) {
                        product(i, threads: single)
                    }
                }
            } else {
                for i in 0..<batchCount { product(i, threads: threads) }
            }
        }
    }
}

/// For each entry of a batch of shape `target` (row-major), the index of the matrix of an operand
/// with batch shape `shape` (right-aligned, size-1 dimensions broadcast) that it reads.
func batchOffsets(_ shape: [Int], into target: [Int]) -> [Int] {
    let total = target.reduce(1, *)
    let aligned = Array(repeating: 1, count: target.count - shape.count) + shape
    var strides = Array(repeating: 0, count: target.count)
    var s = 1
    for d in stride(from: target.count - 1, through: 0, by: -1) {
        strides[d] = aligned[d] == 1 ? 0 : s
        s *= aligned[d]
    }
    var offsets = Array(repeating: 0, count: total)
    for i in 0..<total {
        var rest = i, off = 0
        for d in stride(from: target.count - 1, through: 0, by: -1) {
            off += (rest % target[d]) * strides[d]
            rest /= target[d]
        }
        offsets[i] = off
    }
    return offsets
}
