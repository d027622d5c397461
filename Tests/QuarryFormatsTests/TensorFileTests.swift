import Foundation
import Quarry
import XCTest
@testable import QuarryFormats

final class NumPyTests: XCTestCase {
    func testReadsEveryDTypeAndMatchesTheArchive() throws {
        let archive = try NumPy.readArchive(path: fixture("numpy", "stored.npz"))
        let compressed = try NumPy.readArchive(path: fixture("numpy", "compressed.npz"))
        for key in ["f32", "f16", "f64", "i64", "i32", "b", "scalar", "empty"] {
            let single = try NumPy.read(path: fixture("numpy", "\(key).npy"))
            let a = try XCTUnwrap(archive[key], key), c = try XCTUnwrap(compressed[key], key)
            XCTAssertEqual(single.shape, a.shape, key); XCTAssertEqual(single.data, a.data, key)
            XCTAssertEqual(c.data, a.data, key); XCTAssertEqual(c.type, a.type, key)
        }
        XCTAssertEqual(try NumPy.readTensor(path: fixture("numpy", "i64.npy")).scalars, [-3, -2, -1, 0, 1, 2])
        XCTAssertEqual(try NumPy.readTensor(path: fixture("numpy", "i32.npy")).scalars, [0, 1, 2, 3, 4])
        XCTAssertEqual(try NumPy.readTensor(path: fixture("numpy", "b.npy")).scalars, [1, 0, 1])
        XCTAssertEqual(try NumPy.readTensor(path: fixture("numpy", "scalar.npy")).scalars, [3.5])
        XCTAssertEqual(archive["scalar"]?.shape, [])
        XCTAssertEqual(archive["empty"]?.shape, [0, 4])
        // The deflated member that really compresses (the others are stored by numpy's zipfile).
        let big = try XCTUnwrap(compressed["big"]).tensor()
        XCTAssertEqual(big.count, 5000)
        for i in 0..<5000 { XCTAssertEqual(big[flat: i], Float(i % 100)) }
        let f16 = try NumPy.readTensor(path: fixture("numpy", "f16.npy")), f16Raw = try NumPy.read(path: fixture("numpy", "f16.npy"))
        f16Raw.data.withUnsafeBytes { raw in
            for i in 0..<4 { XCTAssertEqual(f16[flat: i], Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        }
    }

    /// int8 / uint8 / int16 / uint16 widen to int32, uint32 / uint64 to int64, every value exact.
    func testNarrowAndUnsignedIntegersWiden() throws {
        for (name, type, values) in [("i8", ElementType.int32, [-128, -1, 0, 127]), ("u8", .int32, [0, 1, 255]), ("i16", .int32, [-32768, 7, 32767]),
                                     ("u16", .int32, [0, 65535]), ("u32", .int64, [4294967295, 3]), ("u64", .int64, [9007199254740993, 5])] as [(String, ElementType, [Int64])] {
            let a = try NumPy.read(path: fixture("numpy", "narrow_\(name).npy"))
            XCTAssertEqual(a.type, type, name)
            XCTAssertEqual(a.shape, [1, values.count], name)
            let read: [Int64] = a.data.withUnsafeBytes { raw in
                (0..<values.count).map { type == .int32 ? Int64(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) : raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
            }
            XCTAssertEqual(read, values, name)
        }
        XCTAssertEqual(try NumPy.readTensor(path: fixture("numpy", "narrow_u8.npy")).scalars, [0, 1, 255])
        XCTAssertThrowsError(try NumPy.read(path: fixture("numpy", "narrow_u64_too_big.npy"))) {
            XCTAssertTrue("\($0)".contains("narrow_u64_too_big.npy") && "\($0)".contains("does not fit int64"), "\($0)")
        }
    }

    func testRefusesOtherLayoutsNamingTheFile() {
        for (file, words) in [("fortran.npy", "fortran_order"), ("bigendian.npy", "big-endian"), ("complex.npy", "<c8")] {
            XCTAssertThrowsError(try NumPy.read(path: fixture("numpy", file))) {
                XCTAssertTrue("\($0)".contains(file) && "\($0)".contains(words), "\($0)")
            }
        }
    }

    func testRoundTripsAndWritesAtomically() throws {
        let dir = try temporaryFolder()
        var rng = SeededGenerator(seed: 3)
        let t = Tensor.random(shape: [3, 1, 5], using: &rng)
        try NumPy.write(t, to: "\(dir)/t.npy")
        let back = try NumPy.readTensor(path: "\(dir)/t.npy")
        XCTAssertEqual(back.shape, t.shape); XCTAssertEqual(back.scalars, t.scalars)
        let ids = try NumPyArray(int64: [5, -1, 7], shape: [3])
        try NumPy.writeArchive(["x": NumPyArray(t), "ids": ids], to: "\(dir)/a.npz")
        let a = try NumPy.readArchive(path: "\(dir)/a.npz")
        XCTAssertEqual(a["x"]?.tensor().scalars, t.scalars)
        XCTAssertEqual(a["ids"]?.tensor().scalars, [5, -1, 7])
        // Only the final files remain: the temporary files were renamed into place.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["a.npz", "t.npy"])
        // A write into a folder that does not exist fails with the path and leaves nothing.
        XCTAssertThrowsError(try NumPy.write(t, to: "\(dir)/no/such/t.npy")) { XCTAssertTrue("\($0)".contains("no/such"), "\($0)") }
    }

    func testFileNamesAreSanitised() {
        XCTAssertEqual(NumPy.fileName(forTensor: "layer1.0/conv:1"), "layer1.0_conv_1.npy")
        XCTAssertEqual(NumPy.fileName(forTensor: "../etc"), ".._etc.npy")
        XCTAssertEqual(NumPy.fileName(forTensor: ".."), "_...npy")
        XCTAssertEqual(NumPy.fileName(forTensor: "été"), "_t_.npy")
    }

    func testFuzzedFilesNeverCrash() throws {
        var rng = SeededGenerator(seed: 11)
        let files = ["f32.npy", "i64.npy", "stored.npz", "compressed.npz"].map { try! Data(contentsOf: URL(fileURLWithPath: fixture("numpy", $0))) }
        let dir = try temporaryFolder()
        var ok = 0
        for it in 0..<1200 {
            var d = files[it % files.count]
            for _ in 0..<Int.random(in: 1...6, using: &rng) where !d.isEmpty {
                let at = Int.random(in: 0..<d.count, using: &rng)
                if Bool.random(using: &rng) { d[at] = UInt8.random(in: 0...255, using: &rng) } else { d = d.prefix(at) }
            }
            if it % files.count < 2 {
                if (try? d.withUnsafeBytes { try NumPy.decode($0, name: "fuzz.npy") }) != nil { ok += 1 }
            } else {
                try d.write(to: URL(fileURLWithPath: "\(dir)/f.npz"))
                if (try? NumPy.readArchive(path: "\(dir)/f.npz")) != nil { ok += 1 }
            }
        }
        print("npy/npz fuzz: 1200 mutated files, \(ok) still readable, no crash")
    }
}

final class SafeTensorsTests: XCTestCase {
    /// A safetensors file with a hand-written header.
    func write(_ header: String, data: Data, to path: String) throws {
        var out = Data()
        out.appendLE(UInt64(header.utf8.count))
        out.append(contentsOf: Array(header.utf8))
        out.append(data)
        try out.write(to: URL(fileURLWithPath: path))
    }

    func testRoundTripAndMetadata() throws {
        let dir = try temporaryFolder()
        var rng = SeededGenerator(seed: 5)
        let a = Tensor.random(shape: [2, 3], using: &rng), b = Tensor.random(shape: [4], using: &rng)
        try SafeTensorsFile.write(["a": a, "b": b], metadata: ["format": "pt"], to: "\(dir)/m.safetensors")
        let f = try SafeTensorsFile(path: "\(dir)/m.safetensors")
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(try f.tensor(named: "a").scalars, a.scalars)
        XCTAssertEqual(try f.tensor(named: "b").shape, [4])
        XCTAssertThrowsError(try f.tensor(named: "c")) { XCTAssertTrue("\($0)".contains("'c'"), "\($0)") }
    }

    func testConvertsEveryDType() throws {
        let dir = try temporaryFolder()
        var data = Data()
        let f16: [Float16] = [1.5, -2, 0.25]
        for v in f16 { data.appendLE(v.bitPattern) }                                   // 0..<6
        for v: Float in [3.0, -0.5] { data.appendLE(UInt16(v.bitPattern >> 16)) }      // 6..<10 (bf16)
        for v: Double in [1e-3, 7] { data.appendLE(v.bitPattern) }                      // 10..<26
        for v: Int64 in [-4, 1 << 20] { data.appendLE(UInt64(bitPattern: v)) }          // 26..<42
        for v: Float in [9.5] { data.appendLE(v.bitPattern) }                           // 42..<46
        let header = """
            {"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"bf":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]},\
            "d":{"dtype":"F64","shape":[2,1],"data_offsets":[10,26]},"i":{"dtype":"I64","shape":[2],"data_offsets":[26,42]},\
            "f":{"dtype":"F32","shape":[],"data_offsets":[42,46]}}
            """
        try write(header, data: data, to: "\(dir)/t.safetensors")
        let f = try SafeTensorsFile(path: "\(dir)/t.safetensors")
        XCTAssertEqual(try f.tensor(named: "h").scalars, [1.5, -2, 0.25])
        XCTAssertEqual(try f.tensor(named: "bf").scalars, [3, -0.5])
        XCTAssertEqual(try f.tensor(named: "d").scalars, [Float(1e-3), 7])
        XCTAssertEqual(try f.tensor(named: "d").shape, [2, 1])
        XCTAssertEqual(try f.tensor(named: "i").scalars, [-4, 1_048_576])
        XCTAssertEqual(try f.tensor(named: "f").scalars, [9.5])
    }

    func testHostileHeadersAreRefused() throws {
        let dir = try temporaryFolder()
        let cases: [(String, Data, String)] = [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, Data(count: 12), "overlap"),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, Data(count: 8), "does not take"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}"#, Data(count: 8), "outside"),
            (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, Data(count: 8), "does not take"),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, Data(count: 8), "non-negative"),
            (#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#, Data(count: 8), "C64"),
            (#"{"a": nope"#, Data(), "JSON"),
            (#"[1,2]"#, Data(), "object"),
        ]
        for (i, (header, data, words)) in cases.enumerated() {
            try write(header, data: data, to: "\(dir)/h\(i).safetensors")
            XCTAssertThrowsError(try SafeTensorsFile(path: "\(dir)/h\(i).safetensors"), header) {
                XCTAssertTrue("\($0)".contains(words) && "\($0)".contains("h\(i).safetensors"), "\($0)")
            }
        }
        var lying = Data(); lying.appendLE(UInt64(1) << 62); lying.append(Data(count: 16))
        try lying.write(to: URL(fileURLWithPath: "\(dir)/long.safetensors"))
        XCTAssertThrowsError(try SafeTensorsFile(path: "\(dir)/long.safetensors")) { XCTAssertTrue("\($0)".contains("header length"), "\($0)") }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(dir)/short.safetensors"))
        XCTAssertThrowsError(try SafeTensorsFile(path: "\(dir)/short.safetensors")) { XCTAssertTrue("\($0)".contains("too short"), "\($0)") }
        XCTAssertThrowsError(try SafeTensorsFile(path: "\(dir)/absent.safetensors")) { XCTAssertTrue("\($0)".contains("absent.safetensors"), "\($0)") }
    }

    func testLoadParametersByNameReportsEveryProblem() throws {
        let dir = try temporaryFolder()
        let b = GraphBuilder()
        let x = b.input("x", shape: [1, 4])
        let w = b.scope("fc") { b.parameter("weight", shape: [3, 4], initializer: .he(fanIn: 4)) }
        let bias = b.scope("fc") { b.parameter("bias", shape: [3], initializer: .constant(0)) }
        let g = b.build(outputs: [b.add("fc", .dense(activation: nil), x, w, bias)])
        var rng = SeededGenerator(seed: 9)
        let weight = Tensor.random(shape: [3, 4], using: &rng), biasT = Tensor.random(shape: [3], using: &rng)
        try SafeTensorsFile.write(["fc.weight": weight, "fc.bias": biasT, "bn.num_batches_tracked": Tensor(shape: [])], to: "\(dir)/good.safetensors")
        var loaded = g
        try loadParameters(into: &loaded, from: SafeTensorsFile(path: "\(dir)/good.safetensors"))
        XCTAssertEqual(loaded.parameters["fc.weight"]?.value?.scalars, weight.scalars)
        XCTAssertEqual(loaded.parameters["fc.bias"]?.value?.scalars, biasT.scalars)
        XCTAssertFalse(loaded.untrained)

        try SafeTensorsFile.write(["fc.weight": Tensor(shape: [4, 3]), "extra.a": Tensor(shape: [1]), "extra.b": Tensor(shape: [1])], to: "\(dir)/bad.safetensors")
        var bad = g
        XCTAssertThrowsError(try loadParameters(into: &bad, from: SafeTensorsFile(path: "\(dir)/bad.safetensors"))) {
            let t = "\($0)"
            XCTAssertTrue(t.contains("1 missing: fc.bias"), t)
            XCTAssertTrue(t.contains("2 unexpected: extra.a, extra.b"), t)
            XCTAssertTrue(t.contains("fc.weight: checkpoint [4, 3], model [3, 4]"), t)
        }
        XCTAssertNil(bad.parameters["fc.weight"]?.value, "nothing is loaded when the checkpoint does not fit")
    }

    func testFuzzedFilesNeverCrash() throws {
        let dir = try temporaryFolder()
        var rng = SeededGenerator(seed: 13)
        let t = Tensor.random(shape: [3, 5], using: &rng)
        try SafeTensorsFile.write(["a": t, "b": t, "c.d": t], metadata: ["k": "v"], to: "\(dir)/base.safetensors")
        let base = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/base.safetensors"))
        var ok = 0
        for _ in 0..<600 {
            var d = base
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0..<d.count, using: &rng)
                if Int.random(in: 0..<5, using: &rng) == 0 { d = d.prefix(at) } else { d[at] = UInt8.random(in: 0...255, using: &rng) }
                if d.isEmpty { break }
            }
            try d.write(to: URL(fileURLWithPath: "\(dir)/f.safetensors"))
            if let f = try? SafeTensorsFile(path: "\(dir)/f.safetensors") {
                for n in f.names { _ = try? f.tensor(named: n) }
                ok += 1
            }
        }
        print("safetensors fuzz: 600 mutated files, \(ok) still readable, no crash")
    }
}
