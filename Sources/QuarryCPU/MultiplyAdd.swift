// Multiply-adds for the kernels. Swift's addingProduct is a fused multiply-add (one rounding); a
// build for a CPU with FMA instructions (README: `-target-cpu native`) makes it one vfmadd, but a
// build for generic x86-64, which has none, makes it a call to fmaf for every lane, which ran
// the CPU backend about 100x slower. Where the target has no FMA, these multiply and add instead
// (two roundings, well inside every kernel's error bound). The choice is made at compile time.

import CCPUHints

// Concrete on SIMD16<Float> (the kernels' vector): an extension generic over SIMD would, in an
// unoptimised build, run every lane through protocol witnesses (the debug test suite's kernels
// took twice as long).
extension SIMD16 where Scalar == Float {
    /// self + a · b.
    @_transparent
    func addingProductFast(_ a: Self, _ b: Self) -> Self {
        QUARRY_TARGET_HAS_FMA != 0 ? addingProduct(a, b) : self + a * b
    }

    /// self + a · b, with a broadcast.
    @_transparent
    func addingProductFast(_ a: Float, _ b: Self) -> Self {
        QUARRY_TARGET_HAS_FMA != 0 ? addingProduct(a, b) : self + a * b
    }

    /// self += a · b.
    @_transparent
    mutating func addProductFast(_ a: Self, _ b: Self) {
        if QUARRY_TARGET_HAS_FMA != 0 { addProduct(a, b) } else { self += a * b }
    }
}
