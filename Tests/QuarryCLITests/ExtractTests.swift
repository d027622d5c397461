import Foundation
import Quarry
import QuarryCPU
import QuarryFormats
import QuarryModels
import XCTest

/// Runs the `quarry` binary built beside this test bundle.
struct Tool {
    static var path: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("quarry").path
    }
    static var samples: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../samples/images").standardized.path
    }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    @discardableResult
    static func run(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

final class ExtractTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "quarry-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The sample images plus broken files: a truncated JPEG, random bytes named .png, an empty .jpg.
    func makeMixedFolder() throws -> (folder: String, good: [String], bad: [String]) {
        let folder = dir + "/images"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var good: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: Tool.samples).sorted() {
            try FileManager.default.copyItem(atPath: Tool.samples + "/" + name, toPath: folder + "/" + name)
            good.append(folder + "/" + name)
        }
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: Tool.samples + "/beach.jpg"))
        try jpeg.prefix(jpeg.count / 2).write(to: URL(fileURLWithPath: folder + "/broken_truncated.jpg"))
        var rng = SeededGenerator(seed: 5)
        try Data((0..<500).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: URL(fileURLWithPath: folder + "/noise.png"))
        try Data().write(to: URL(fileURLWithPath: folder + "/empty.jpg"))
        let bad = [folder + "/broken_truncated.jpg", folder + "/empty.jpg", folder + "/noise.png"]
        return (folder, good.sorted(), bad)
    }

    func testExtractWritesGoodRowsInOrderAndNamesBadFiles() throws {
        let (folder, good, bad) = try makeMixedFolder()
        let output = dir + "/features.npy"
        let r = try Tool.run(["extract", "plain_cnn", "--input", folder, "--output", output, "--batch", "3", "--quiet"])
        XCTAssertEqual(r.status, 3, "some inputs failed, so the status is 3: \(r.stderr)")
        for b in bad { XCTAssertTrue(r.stderr.contains((b as NSString).lastPathComponent), "stderr should name \(b): \(r.stderr)") }

        let features = try NumPy.readTensor(path: output)
        XCTAssertEqual(features.shape[0], good.count)
        let manifestData = try Data(contentsOf: URL(fileURLWithPath: dir + "/features.manifest.json"))
        let manifest = try JSONSerialization.jsonObject(with: manifestData) as! [String: Any]
        XCTAssertEqual(manifest["rows"] as? [String], good)
        let failed = (manifest["failed"] as! [[String: String]]).map { $0["source"]! }.sorted()
        XCTAssertEqual(failed, bad)
        XCTAssertEqual(manifest["untrained"] as? Bool, true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output + ".partial"))

        // Each row equals the model run directly on that image, preprocessed as the zoo says
        // (JPEGs decoded at the smallest DCT scale that covers the resize, the default).
        let entry = try ModelZoo.entry(named: "plain_cnn")
        var graph = try entry.build()
        graph.materializeParameters(seed: 0)
        let compiled = try CPUDevice().compile(graph, outputs: [entry.defaultTap])
        let p = entry.preprocessing!
        let prep = ImagePreprocessing(resize: p.resize, crop: (p.crop, p.crop), mean: p.mean, std: p.std)
        let width = features.count / features.shape[0]
        for (row, path) in good.enumerated() {
            let x = try prep.apply(to: try decodeImage(at: path, minimumShortSide: p.resize))
            let y = try compiled.run(["input": try x.reshaped([1] + x.shape)])[entry.defaultTap]!
            let expected = try entry.defaultPooling.apply(to: y)
            XCTAssertEqual(expected.count, width)
            for j in 0..<width {
                XCTAssertEqual(features[flat: row * width + j], expected[flat: j], accuracy: 1e-4 * max(1, abs(expected[flat: j])),
                               "row \(row) (\(path)) element \(j)")
            }
        }
    }

    /// A WebDataset shard: rows named SHARD:KEY in stored order, equal to the same images extracted
    /// as files; a corrupt member and a sample without an image are named and skipped (status 3).
    func testTarShardRowsEqualTheFilesAndDamageIsNamed() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Tool.samples).sorted()
        var tar = [UInt8]()
        func member(_ name: String, _ data: [UInt8]) {
            var h = [UInt8](repeating: 0, count: 512)
            for (i, b) in name.utf8.enumerated() { h[i] = b }
            func octal(_ v: Int, _ at: Int, _ width: Int) {
                let d = String(v, radix: 8)
                for (i, b) in (String(repeating: "0", count: width - 1 - d.count) + d).utf8.enumerated() { h[at + i] = b }
            }
            octal(0o644, 100, 8); octal(data.count, 124, 12); octal(0, 136, 12)
            h[156] = UInt8(ascii: "0")
            for (i, b) in "ustar\u{0}00".utf8.enumerated() { h[257 + i] = b }
            for i in 148..<156 { h[i] = UInt8(ascii: " ") }
            octal(h.reduce(0) { $0 + Int($1) }, 148, 7)
            tar += h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
        for (i, name) in names.enumerated() {
            let ext = (name as NSString).pathExtension
            member(String(format: "%04d.%@", i, ext), try [UInt8](Data(contentsOf: URL(fileURLWithPath: Tool.samples + "/" + name))))
            member(String(format: "%04d.cls", i), Array("\(i)".utf8))
        }
        member("0100.cls", Array("no image".utf8))
        member("0101.jpg", Array("not a jpeg at all".utf8))
        tar += [UInt8](repeating: 0, count: 1024)
        let shard = dir + "/shard-0000.tar"
        try Data(tar).write(to: URL(fileURLWithPath: shard))

        let r = try Tool.run(["extract", "plain_cnn", "--input", dir + "/shard-{0000..0000}.tar", "--output", dir + "/t.npy", "--batch", "4", "--quiet"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains(shard + ":0100") && r.stderr.contains("no image member"), r.stderr)
        XCTAssertTrue(r.stderr.contains(shard + ":0101") && r.stderr.contains("0101.jpg"), r.stderr)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/t.manifest.json"))) as! [String: Any]
        XCTAssertEqual(manifest["rows"] as? [String], names.indices.map { shard + String(format: ":%04d", $0) })
        XCTAssertEqual((manifest["failed"] as! [[String: String]]).map { $0["source"]! }, [shard + ":0100", shard + ":0101"])

        let f = try Tool.run(["extract", "plain_cnn", "--input", Tool.samples, "--output", dir + "/f.npy", "--batch", "4", "--quiet"])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertEqual(try NumPy.readTensor(path: dir + "/t.npy").scalars, try NumPy.readTensor(path: dir + "/f.npy").scalars)
    }

    /// `--layer input` gives the preprocessed images: by default each JPEG decoded at the smallest
    /// DCT scale covering the resize, with --exact-decode at full size (as the library computes them).
    func testExactDecodeAndTheDefaultScaledDecode() throws {
        let jpeg = Tool.samples + "/beach.jpg"
        var p = ImagePreprocessing.imagenet
        p.resize = 112  // half of beach.jpg's 240 rows covers it; the crop pads around the rest
        let full = try decodeImage(at: jpeg)
        let scaled = try decodeImage(at: jpeg, minimumShortSide: 112)
        XCTAssertLessThan(scaled.width, full.width, "the sample is large enough to decode scaled")
        for (flag, image) in [(["--exact-decode"], full), ([], scaled)] {
            let out = dir + "/in\(flag.count).npy"
            let r = try Tool.run(["extract", "resnet18", "--input", jpeg, "--output", out, "--layer", "input",
                                  "--resize", "112", "--quiet"] + flag)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try NumPy.readTensor(path: out).scalars, try p.apply(to: image).scalars, "\(flag)")
        }
    }

    func testStrictStopsAtTheFirstBadFile() throws {
        let (folder, _, _) = try makeMixedFolder()
        let r = try Tool.run(["extract", "plain_cnn", "--input", folder, "--output", dir + "/f.npy", "--strict", "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("--strict"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/f.npy"))
    }

    func testKilledRunResumesWithoutRepeatingOrLosingRows() throws {
        // 40 items from an array, 2 a batch: enough chunks that a kill lands mid-run.
        var rng = SeededGenerator(seed: 9)
        let items = Tensor.random(shape: [40, 3, 32, 32], using: &rng)
        let arrayPath = dir + "/items.npy"
        try NumPy.write(items, to: arrayPath)
        let full = dir + "/full.npy", resumed = dir + "/resumed.npy"
        let args = ["extract", "plain_cnn", "--input", arrayPath, "--batch", "2", "--quiet", "--cpu-threads", "1"]
        XCTAssertEqual(try Tool.run(args + ["--output", full]).status, 0)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tool.path)
        p.arguments = args + ["--output", resumed]
        p.standardError = FileHandle.nullDevice
        try p.run()
        let chunk = resumed + ".partial/chunk-000003.safetensors"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: chunk) && p.isRunning && Date() < deadline { usleep(2000) }
        XCTAssertTrue(p.isRunning, "the run ended before it could be killed; make it longer")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: resumed), "a killed run must leave no output file")

        let again = try Tool.run(args + ["--output", resumed])
        XCTAssertEqual(again.status, 1, "a second run without --resume refuses to clobber the partial state")
        XCTAssertTrue(again.stderr.contains("--resume"), again.stderr)
        XCTAssertEqual(try Tool.run(args + ["--output", resumed, "--resume"]).status, 0)
        let a = try NumPy.readTensor(path: full), b = try NumPy.readTensor(path: resumed)
        XCTAssertEqual(a.shape, [40, b.shape[1]])
        XCTAssertEqual(a.scalars, b.scalars, "resumed output must equal an uninterrupted run")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/resumed.manifest.json"))) as! [String: Any]
        XCTAssertEqual((manifest["rows"] as! [String]).count, 40)
    }

    func testBadArgumentsExitWithStatusOneAndAMessage() throws {
        let r1 = try Tool.run(["extract", "no_such_model", "--input", Tool.samples, "--output", dir + "/x.npy"])
        XCTAssertEqual(r1.status, 1)
        XCTAssertTrue(r1.stderr.contains("no_such_model"), r1.stderr)
        let r2 = try Tool.run(["extract", "plain_cnn", "--input", dir + "/missing", "--output", dir + "/x.npy"])
        XCTAssertEqual(r2.status, 1)
        XCTAssertTrue(r2.stderr.contains("missing"), r2.stderr)
        let r3 = try Tool.run(["extract", "plain_cnn", "--input", Tool.samples, "--output", dir + "/x.npy", "--layer", "nope"])
        XCTAssertEqual(r3.status, 1)
        XCTAssertTrue(r3.stderr.contains("nope"), r3.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.npy"))
    }

    func testBenchSplitsAShapeSpecialisedModelIntoMicroBatches() throws {
        // The import depends on the batch size, so each micro-batch runs a graph of its own
        // shapes; the batch's figures must still come from the whole batch's shapes (this once
        // failed: "input 'x' dimension 0 must be 2, got 4").
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/onnx/shape_subgraph/model.onnx").standardized.path
        let r = try Tool.run(["bench", model, "--batch", "4", "--micro-batch", "2", "--seconds", "0.05", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let last = try XCTUnwrap(r.stdout.split(separator: "\n").last)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        XCTAssertEqual(json["batch"] as? Double, 4)
        let shares = try XCTUnwrap(json["device_shares"] as? [[String: Any]])
        let items = try XCTUnwrap(shares.first?["items"] as? Double), microBatches = try XCTUnwrap(shares.first?["micro_batches"] as? Double)
        XCTAssertEqual(items, 2 * microBatches, "micro-batches of 2 items")
        XCTAssertNotNil(json["layers"], "the per-layer profile of the whole batch")
    }

    func testExtractFromAnONNXModelWithShapeSubgraphsMatchesOneRun() throws {
        // The model reshapes with a shape computed from its input (Shape -> Gather -> Concat ->
        // Reshape), so every batch size needs its own import; extract batches of 3 must give the
        // rows that one run over all 7 gives.
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/onnx/shape_subgraph/model.onnx").standardized.path
        var rng = SeededGenerator(seed: 4)
        let x = Tensor.random(shape: [7, 8, 2], using: &rng)
        try NumPy.write(x, to: dir + "/x.npy")
        let r = try Tool.run(["extract", model, "--input", dir + "/x.npy", "--output", dir + "/y.npy", "--layer", "y", "--batch", "3", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let one = try Tool.run(["run", model, "--input", "x=" + dir + "/x.npy", "--output-dir", dir + "/out", "--outputs", "y"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let extracted = try NumPy.readTensor(path: dir + "/y.npy"), whole = try NumPy.readTensor(path: dir + "/out/y.npy")
        XCTAssertEqual(extracted.shape, [7, whole.count / 7])
        XCTAssertEqual(extracted.scalars, whole.scalars)
    }
}
