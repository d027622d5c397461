// `quarry test-ops` run as a user runs it: the table, the --json line's contract, the exit
// statuses, the same cases from the same seed, and --perf.

import Foundation
import XCTest

final class TestOpsTests: XCTestCase {
    func lastLineJSON(_ out: String) throws -> [String: Any] {
        let line = out.split(separator: "\n").last.map(String.init) ?? ""
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "last line: \(line)")
    }

    func testJSONLineAndExitStatus() throws {
        let r = try Tool.run(["test-ops", "--device", "cpu", "--ops", "dense,relu,gemm", "--cases-per-op", "3", "--seed", "5", "--json"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let j = try lastLineJSON(r.stdout)
        XCTAssertEqual(Set(j.keys), ["device", "passed", "failed", "cases"])
        XCTAssertEqual(j["device"] as? String, "cpu")
        XCTAssertEqual(j["failed"] as? Int, 0)
        XCTAssertEqual(j["passed"] as? Int, 9)  // dense, matmul (gemm) and relu, three each
        let cases = try XCTUnwrap(j["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 9)
        for c in cases {
            for key in ["op", "name", "seed", "shapes", "form", "attributes", "status", "max_error", "bound", "fell_back"] {
                XCTAssertNotNil(c[key], "case field \(key) in \(c)")
            }
            XCTAssertEqual(c["status"] as? String, "passed")
            XCTAssertLessThanOrEqual(try XCTUnwrap(c["max_error"] as? Double), try XCTUnwrap(c["bound"] as? Double))
        }
        XCTAssertEqual(Set(cases.compactMap { $0["op"] as? String }), ["dense", "matmul", "relu"])
        // The table: a row a case, then the summary.
        XCTAssertTrue(r.stdout.contains("dense#2"), r.stdout)
        XCTAssertTrue(r.stdout.contains("9 passed, 0 failed"), r.stdout)
        // The same seed gives the same cases.
        let again = try Tool.run(["test-ops", "--device", "cpu", "--ops", "dense", "--cases-per-op", "3", "--seed", "5", "--json"])
        let shapes = { (j: [String: Any]) in (j["cases"] as? [[String: Any]] ?? []).compactMap { $0["shapes"] as? String } }
        XCTAssertEqual(shapes(try lastLineJSON(again.stdout)), shapes(j).prefix(3).map { $0 })
    }

    func testBadUsageExitsWithOne() throws {
        let r = try Tool.run(["test-ops", "--device", "cpu", "--ops", "conv2d,nosuchop"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("nosuchop"), r.stderr)
        let d = try Tool.run(["test-ops", "--device", "tpu:3", "--ops", "relu"])
        XCTAssertNotEqual(d.status, 0)
        XCTAssertTrue(d.stderr.contains("tpu:3"), d.stderr)
        let n = try Tool.run(["test-ops", "--device", "cpu", "--cases-per-op", "0"])
        XCTAssertNotEqual(n.status, 0)
        // A precision the device does not run is refused with its reason, not run in fp32.
        // (The CPU runs fp32, and bf16 on AVX512_BF16 hosts; never fp16.)
        let p = try Tool.run(["test-ops", "--device", "cpu", "--ops", "relu", "--precision", "fp16"])
        XCTAssertEqual(p.status, 1)
        XCTAssertTrue(p.stderr.contains("fp16"), p.stderr)
    }

    func testPerfTimesEachCase() throws {
        let r = try Tool.run(["test-ops", "--device", "cpu", "--ops", "conv2d", "--cases-per-op", "2", "--perf", "--json"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let cases = try XCTUnwrap(try lastLineJSON(r.stdout)["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 2)
        for c in cases {
            XCTAssertGreaterThan(try XCTUnwrap(c["seconds"] as? Double), 0)
            XCTAssertGreaterThan(try XCTUnwrap(c["gflops"] as? Double), 0)
        }
    }
}
