// The one libFuzzer executable of CarteKit: CARTE_FUZZ_TARGET names the entry point (Sources/CarteFuzzEntries)
// that every input goes to. scripts/fuzz.sh sets it; libFuzzer's worker processes inherit it.
import CarteFuzzEntries
import Glibc

/// The target's entry point, chosen once in `LLVMFuzzerInitialize`.
nonisolated(unsafe) private var run: (@Sendable ([UInt8]) -> Void)?

/// libFuzzer's set-up hook: picks the target and builds the one-time state before the first input.
/// An unset or unknown CARTE_FUZZ_TARGET ends the process with status 2 and the list of targets.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    let name = getenv("CARTE_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let entry = FuzzEntries.entry(name) else {
        let known = FuzzEntries.all.map(\.name).joined(separator: " ")
        let message = "fuzz: CARTE_FUZZ_TARGET is \(name.isEmpty ? "not set" : "'\(name)', not a target"); the targets are: \(known)\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }
    run = entry
    FuzzEntries.prepare()
    return 0
}

/// libFuzzer's entry point: one input of the chosen target.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    run?(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
