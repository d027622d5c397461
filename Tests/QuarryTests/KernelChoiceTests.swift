// The kernel choice as the pure function it is: the variant each backend gets for typical layers,
// switches that remove a variant, and keys that tell parameterisations apart.

import Quarry
import XCTest

final class KernelChoiceTests: XCTestCase {
    let cpu = DeviceCapabilities(kind: .cpu, threads: 2, gemmRows: 12, gemmColumns: 32, gemmDepth: 256,
                                 switches: Switches(environment: [:]))

    func conv(_ a: Conv2DAttributes, n: Int, c: Int, o: Int, hw: Int, out: Int, constant: Bool = true, residual: Bool = false) -> ConvolutionQuery {
        ConvolutionQuery(a, input: [n, c, hw, hw], weight: [o, c / a.groups, a.kernelH, a.kernelW], output: [n, o, out, out],
                         constantWeights: constant, residual: residual)
    }

    func testCPUVariantsOfTypicalLayers() {
        let k3 = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))
        // ResNet-50's stem: 3 channels in, 7x7 stride 2.
        let stem = conv(Conv2DAttributes(kernel: (7, 7), stride: (2, 2), padding: Padding2D(3)), n: 1, c: 3, o: 64, hw: 224, out: 112)
        XCTAssertEqual(KernelChoice.convolution(stem, device: cpu).name, "cpu.conv2d.few_channels_direct")
        // The stem with a residual cannot take the direct kernel (it has no residual epilogue).
        XCTAssertEqual(KernelChoice.convolution(conv(stem.attributes, n: 1, c: 3, o: 64, hw: 224, out: 112, residual: true), device: cpu).name,
                       "cpu.conv2d.im2col_gemm")
        let dw = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 32)
        XCTAssertEqual(KernelChoice.convolution(conv(dw, n: 1, c: 32, o: 32, hw: 56, out: 56), device: cpu).name, "cpu.conv2d.depthwise")
        // 3x3 at 14x14 with 256 channels: 16 tiles, Winograd; at batch 1 on 7x7, 4 tiles: im2col.
        XCTAssertEqual(KernelChoice.convolution(conv(k3, n: 1, c: 256, o: 256, hw: 14, out: 14), device: cpu).name, "cpu.conv2d.winograd_f4x3")
        XCTAssertEqual(KernelChoice.convolution(conv(k3, n: 1, c: 512, o: 512, hw: 7, out: 7), device: cpu).name, "cpu.conv2d.im2col_gemm")
        XCTAssertEqual(KernelChoice.convolution(conv(k3, n: 1, c: 256, o: 256, hw: 14, out: 14, constant: false), device: cpu).name,
                       "cpu.conv2d.im2col_gemm", "runtime weights cannot be transformed once")
        // 1x1 on a 7x7 plane (49 pixels): pixel-major; on 56x56: a GEMM over the planes.
        let p = Conv2DAttributes(kernel: (1, 1))
        XCTAssertEqual(KernelChoice.convolution(conv(p, n: 8, c: 320, o: 1280, hw: 7, out: 7), device: cpu).name, "cpu.conv2d.pointwise_pixel_major")
        XCTAssertEqual(KernelChoice.convolution(conv(p, n: 8, c: 64, o: 256, hw: 56, out: 56), device: cpu).name, "cpu.conv2d.pointwise_gemm")
    }

    func testSwitchesAndBlockingEnterTheChoice() {
        let k3 = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1))
        let q = conv(k3, n: 4, c: 64, o: 64, hw: 28, out: 28)
        XCTAssertEqual(KernelChoice.convolution(q, device: cpu).name, "cpu.conv2d.winograd_f4x3")
        var off = cpu
        off.switches = Switches(environment: ["QUARRY_WINOGRAD": "0"])
        XCTAssertEqual(KernelChoice.convolution(q, device: off).name, "cpu.conv2d.im2col_gemm")
        // Packed weights are keyed by the variant with its blocking: another blocking, another key.
        var wide = cpu
        wide.gemmColumns = 48
        let a = KernelChoice.convolution(conv(Conv2DAttributes(kernel: (1, 1)), n: 1, c: 64, o: 64, hw: 56, out: 56), device: cpu)
        let b = KernelChoice.convolution(conv(Conv2DAttributes(kernel: (1, 1)), n: 1, c: 64, o: 64, hw: 56, out: 56), device: wide)
        XCTAssertEqual(a.name, b.name)
        XCTAssertNotEqual(a.key, b.key)
        XCTAssertEqual(a.key, "cpu.conv2d.pointwise_gemm(kc=256,mr=12,nr=32)")
    }

    func testOpenCLVariants() {
        let gpu = DeviceCapabilities(kind: .opencl, threads: 132, dedicatedLocalMemory: true, maxWorkGroupSize: 1024,
                                     switches: Switches(environment: [:]))
        let pocl = DeviceCapabilities(kind: .opencl, threads: 2, dedicatedLocalMemory: false, maxWorkGroupSize: 4096,
                                      switches: Switches(environment: [:]))
        XCTAssertEqual(KernelChoice.openCLGEMM(device: gpu).key, "opencl.gemm.tiled(lm=16,ln=16,tk=16,wm=8,wn=8)")
        XCTAssertEqual(KernelChoice.openCLGEMM(device: pocl).key, "opencl.gemm.register(nv=1,tm=8,vw=16)")
        var forced = pocl
        forced.switches = Switches(environment: ["QUARRY_GEMM": "reg:4,8,2"])
        XCTAssertEqual(KernelChoice.openCLGEMM(device: forced).key, "opencl.gemm.register(nv=2,tm=4,vw=8)")
        XCTAssertNil(KernelChoice.parseOpenCLGEMM("reg:4,5,2"), "vector width 5 is not a kernel")
        forced.switches = Switches(environment: ["QUARRY_GEMM": "tiled:8,16,4,8,32"])
        XCTAssertEqual(KernelChoice.openCLGEMM(device: forced).key, "opencl.gemm.tiled(lm=8,ln=16,tk=32,wm=4,wn=8)")
        XCTAssertNil(KernelChoice.parseOpenCLGEMM("tiled:8,16,4"), "a tiled schedule names five parameters")
        let dw = Conv2DAttributes(kernel: (3, 3), padding: Padding2D(1), groups: 16)
        XCTAssertEqual(KernelChoice.convolution(conv(dw, n: 1, c: 16, o: 16, hw: 8, out: 8), device: gpu).name, "opencl.conv2d.depthwise")
        let stem = conv(Conv2DAttributes(kernel: (7, 7), stride: (2, 2), padding: Padding2D(3)), n: 1, c: 3, o: 64, hw: 224, out: 112)
        XCTAssertEqual(KernelChoice.convolution(stem, device: gpu).key, "opencl.conv2d.implicit_gemm(lm=16,ln=16,tk=16,wm=8,wn=8)")
        XCTAssertEqual(KernelChoice.convolution(stem, device: pocl).name, "opencl.conv2d.im2col_gemm")
        XCTAssertEqual(KernelChoice.convolution(conv(Conv2DAttributes(kernel: (1, 1)), n: 1, c: 8, o: 8, hw: 4, out: 4), device: pocl).name,
                       "opencl.conv2d.pointwise_gemm")
    }
}
