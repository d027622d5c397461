// listInputs over a scratch folder tree.
import Foundation
import Quarry
import XCTest

@testable import QuarryFormats

final class ImageInputListingTests: XCTestCase {
    private var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "quarry-inputs-\(UUID().uuidString)"
        let fm = FileManager.default
        for dir in ["photos", "photos/b", "photos/.hidden", "lists", "empty"] {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: imageFixture("rgb_37x53.jpg")))
        let png = try Data(contentsOf: URL(fileURLWithPath: imageFixture("grey_31x29.png")))
        let webp = try Data(contentsOf: URL(fileURLWithPath: imageFixture("lossless_35x29.webp")))
        let files: [(String, Data)] = [
            ("photos/c.PNG", png), ("photos/a.jpg", jpeg), ("photos/b/z.jpeg", jpeg), ("photos/d.webp", webp),
            ("photos/b.jpg", jpeg), ("photos/notes.txt", Data("hello".utf8)),
            ("photos/broken.jpg", Data("not an image".utf8)), ("photos/._a.jpg", Data([0, 5, 22])),
            ("photos/.hidden/x.jpg", jpeg), ("lists/image_without_extension", png),
            ("lists/features.npy", Data("\u{93}NUMPY".utf8) + Data([1, 0])), ("lists/bad.png", Data("text".utf8)),
        ]
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: root + "/" + name)) }
        let list = """
            # a comment, then a blank line

              ../photos/b.jpg  
            image_without_extension
            \(root)/photos/b
            features.npy
            missing.jpg
            """
        try list.write(toFile: root + "/lists/paths.txt", atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func testFolderIsRecursiveSortedAndByExtension() throws {
        let items = try listInputs([root + "/photos"])
        // Names are sorted at each level, so the folder "b" (a prefix of "b.jpg") comes first.
        XCTAssertEqual(items, [
            .image(root + "/photos/a.jpg"), .image(root + "/photos/b/z.jpeg"), .image(root + "/photos/b.jpg"),
            .image(root + "/photos/broken.jpg"), .image(root + "/photos/c.PNG"), .image(root + "/photos/d.webp"),
        ])
    }

    func testExplicitFilesAreClassifiedByContent() throws {
        let items = try listInputs([
            root + "/lists/image_without_extension", root + "/lists/features.npy", root + "/lists/bad.png",
        ])
        XCTAssertEqual(items, [
            .image(root + "/lists/image_without_extension"), .array(root + "/lists/features.npy"),
            .image(root + "/lists/bad.png"),
        ])
    }

    func testListFileEntriesAreRelativeToIt() throws {
        let items = try listInputs([root + "/lists/paths.txt"])
        XCTAssertEqual(items, [
            .image(root + "/lists/../photos/b.jpg"), .image(root + "/lists/image_without_extension"),
            .image(root + "/photos/b/z.jpeg"), .array(root + "/lists/features.npy"),
            .image(root + "/lists/missing.jpg"),
        ])
    }

    func testListFileWithWindowsLineEnds() throws {
        try "image_without_extension\r\n# c\r\n\r\nfeatures.npy\r\n".write(
            toFile: root + "/lists/crlf.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try listInputs([root + "/lists/crlf.txt"]), [
            .image(root + "/lists/image_without_extension"), .array(root + "/lists/features.npy"),
        ])
    }

    func testMistakesOnTheCommandLineThrow() {
        XCTAssertThrowsError(try listInputs([root + "/nothing-here"])) { error in
            XCTAssertTrue("\(error)".contains("nothing-here"), "\(error)")
        }
        XCTAssertThrowsError(try listInputs([root + "/empty"])) { error in
            XCTAssertTrue("\(error)".contains("no .jpg"), "\(error)")
        }
        XCTAssertNoThrow(try "# nothing\n\n".write(toFile: root + "/lists/none.txt", atomically: true, encoding: .utf8))
        XCTAssertThrowsError(try listInputs([root + "/lists/none.txt"])) { error in
            XCTAssertTrue("\(error)".contains("none.txt"), "\(error)")
        }
    }

    func testListedImagesDecodeOrFailByName() throws {
        let items = try listInputs([root + "/photos"])
        var failed: [String] = []
        for item in items {
            do { _ = try decodeImage(at: item.path) } catch QuarryError.file(let path, _) { failed.append(path) }
        }
        XCTAssertEqual(failed, [root + "/photos/broken.jpg"])
    }
}
