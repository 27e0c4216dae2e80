import Foundation
import Testing

/// #39: the PC/SC library is loaded at run time.
@Suite("carte without PC/SC")
struct PCSCPlatformCLITests {
    /// A machine without libpcsclite gets a clear error, not a program that does not start.
    @Test func aMissingPCSCLibraryIsSaidPlainly() throws {
        let r = try Carte.run(["readers", "--backend", "pcsc"], environment: ["CARTEKIT_PCSC_LIBRARY": "/nonexistent/libpcsclite.so.1"])
        #expect(r.status == 3, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("PC/SC is not installed") && r.stderr.contains("/nonexistent/libpcsclite.so.1"), "\(r.stderr)")
        #expect(r.stderr.contains("apt-get install libpcsclite1 pcscd"))
        // The embedded default needs no PC/SC at all.
        let embedded = try Carte.run(["readers"], environment: ["CARTEKIT_PCSC_LIBRARY": "/nonexistent/libpcsclite.so.1"])
        #expect(embedded.status == 0, "\(embedded.stderr)")
    }

    /// Nothing links libpcsclite: the binary starts on a machine that lacks it.
    @Test func carteDoesNotLinkLibpcsclite() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        process.arguments = ["-d", Carte.binary.path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(text.contains("(NEEDED)"), "readelf printed no dependency: \(text.prefix(200))")
        #expect(!text.contains("libpcsclite"), "carte still needs libpcsclite: \(text)")
    }
}
