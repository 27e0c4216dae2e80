import CarteFuzzEntries
import Foundation
import Testing

/// Every input under Fuzz/Regressions/<target>/ (a crash, hang or leak the fuzzer found, then fixed)
/// and every seed under Fuzz/Corpus/<target>/ goes through its target's entry point again: a fixed
/// crash stays fixed. A trap here ends the test process, which fails the suite.
@Suite("Fuzz regressions and seeds replayed")
struct FuzzRegressionTests {
    static let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let dir = fuzz.appendingPathComponent(folder).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { dir.appendingPathComponent($0) }
    }

    @Test func everyTargetHasAnEntryAFolderAndSeeds() throws {
        let folders = { (name: String) in
            try FileManager.default.contentsOfDirectory(atPath: Self.fuzz.appendingPathComponent(name).path).filter { !$0.hasPrefix(".") }.sorted()
        }
        #expect(try folders("Corpus") == FuzzEntries.all.map(\.name).sorted(), "Fuzz/Corpus and FuzzEntries.all list the same targets")
        #expect(try folders("Regressions").filter { $0 != "README.md" } == FuzzEntries.all.map(\.name).sorted(), "Fuzz/Regressions has a folder per target")
        for t in FuzzEntries.all.map(\.name) {
            #expect(!Self.inputs("Corpus", t).isEmpty, "Fuzz/Corpus/\(t) has no seed")
        }
    }

    @Test("regression inputs and seeds replay without a trap", arguments: FuzzEntries.all.map(\.name))
    func replay(_ target: String) async throws {
        let run = try #require(FuzzEntries.entry(target))
        let inputs = try (Self.inputs("Regressions", target) + Self.inputs("Corpus", target)).map { Array(try Data(contentsOf: $0)) }
        // The entries block their thread while async card code runs on the pool (as under libFuzzer):
        // they run on a thread of their own, never on one of the pool's two threads.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                for input in inputs { run(input) }
                done.resume()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
