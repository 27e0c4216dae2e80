import ArgumentParser
import CarteCore
import CarteCPS
import CarteCrypto
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation

extension BenchCommand {
    struct CPS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cps",
            abstract: "APDU count and time of a CPx reading (holder, situations, both certificates) and of one signature.",
            discussion: """
                Verifies the test PIN --signatures times from the host and as many times on the reader's PIN pad \
                (a mono-fente with a pad; the simulated keypad types at once), then reads the card --reads times \
                and signs --signatures times, in \
                memory and through a private pcscd loading libifdcarte.so (root only; skipped with the reason \
                otherwise). References measured in the same run: one SELECT round trip on the same path, and \
                one RSA PKCS#1 v1.5 signature made by OpenSSL in this process with a key of the card's size \
                (the simulated card's own cost). Goal: at most 25 APDUs for holder + situations + certificates.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("The card.", valueName: "IMAGE"))
        var image: String = "bundled:cps/medecin-liberal.yaml"

        @Option(help: "Readings measured on each path (after 5 warm-up readings).")
        var reads: Int = 100

        @Option(help: "Signatures measured on each path.")
        var signatures: Int = 50

        func validate() throws {
            guard (5...10_000).contains(reads), (5...10_000).contains(signatures) else { throw ValidationError("--reads and --signatures must be in 5...10000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let card = try SimulatorOptions.loadImage(image)
                guard CPSGeneration.from(atr: card.atr) != nil, card.keys.contains(where: { $0.usages.contains(.sign) }) else {
                    throw CLIError(kind: "usage", message: "\(image) is not a CPx image with a signature key", exitCode: CarteExit.invalidInput)
                }
                // Reference: OpenSSL signing in-process with a key of the same size.
                let bits = (try? RSAPrivateKey(pem: card.keys.first { $0.usages.contains(.sign) }!.privateKeyPEM))?.modulusBytes ?? 256
                let key = try RSAPrivateKey.generate(bits: bits * 8)
                let digest = SHA256.digest([1, 2, 3])
                let clock = ContinuousClock()
                var opensslTimes: [Double] = []
                for _ in 0..<signatures {
                    let start = clock.now
                    _ = try key.sign(digest: digest, algorithm: .sha256)
                    opensslTimes.append((clock.now - start).microseconds / 1000)
                }
                let openssl = percentile(opensslTimes, 0.5)

                var rows: [BenchCPSReport.Row] = []
                // A mono-fente with a PIN pad: the PIN is also verified on the pad, typed by the simulated keypad.
                var profile = VirtualReaderProfile.monoFente
                profile.pinPad = PINPadProfile()
                let memory = SimulatorBackend(profiles: [profile])
                try memory.insert(card, into: memory.readerNames[0])
                let memoryChannel = CardChannel(transport: try memory.connectNow(to: memory.readerNames[0]), trace: Trace(capacity: 256))
                rows.append(try await measure("in memory (simulator)", memoryChannel, atr: card.atr, openssl: openssl, keypad: memory.physicalReaders[0].slots[0].keypad))

                var skipped: String? = nil
                if PrivatePCSCD.unavailableReason == nil {
                    let setup = try PrivateVirtualReader.start(profile: profile, images: [card], logger: logger)
                    defer { setup.stop() }
                    let connection = try await setup.connect(PCSCBackend(logger: logger))
                    rows.append(try await measure("through pcscd (libifdcarte.so)", CardChannel(transport: connection, trace: Trace(capacity: 256)), atr: card.atr, openssl: openssl,
                                                  keypad: setup.backend.physicalReaders[0].slots[0].keypad))
                    try? await connection.disconnect(.reset)
                } else {
                    skipped = "through pcscd not measured: \(PrivatePCSCD.unavailableReason!)"
                }
                let report = BenchCPSReport(image: image, rows: rows, skipped: skipped, opensslSignatureMilliseconds: openssl, goalAPDUs: 25,
                                            goalMet: rows.allSatisfy { $0.readAPDUs <= 25 }, build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        private func measure(_ name: String, _ channel: CardChannel, atr: [UInt8], openssl: Double, keypad: VirtualKeypad) async throws -> BenchCPSReport.Row {
            let reader = try CPSReader(channel: channel, atr: atr)
            let clock = ContinuousClock()
            // The PIN, typed on the host and on the reader's pad (the keypad types at once).
            var hostTimes: [Double] = []
            var padTimes: [Double] = []
            var padAPDUs = 0
            do {
                let pin = try PINCode("1234")
                let entry = KeypadEntry.digits(try KeypadDigits("1234"), after: .zero)
                for _ in 0..<signatures {
                    var start = clock.now
                    try await reader.verifyPIN(pin)
                    hostTimes.append((clock.now - start).microseconds / 1000)
                    keypad.type([entry])
                    let before = channel.trace!.nextSequence
                    start = clock.now
                    try await reader.verifyPINOnPad()
                    padTimes.append((clock.now - start).microseconds / 1000)
                    padAPDUs = channel.trace!.events(from: before).filter { $0.direction == .toCard }.count
                }
            } catch {
                throw CLIError(kind: "bench", message: "the test card's PIN was refused: \(error)", exitCode: CarteExit.pinRefused)
            }
            let host = percentile(hostTimes, 0.5)
            let pad = percentile(padTimes, 0.5)
            var apdus = 0
            var situations = 0
            for _ in 0..<5 { _ = try await reader.read() }
            var times: [Double] = []
            for _ in 0..<reads {
                let start = clock.now
                let card = try await reader.read()
                times.append((clock.now - start).microseconds / 1000)
                apdus = card.apduCount
                situations = card.situations?.count ?? 0
            }
            var signTimes: [Double] = []
            var signAPDUs = 0
            for i in 0..<signatures {
                let before = channel.trace!.nextSequence
                let start = clock.now
                _ = try await reader.sign(Array("document \(i)".utf8))
                signTimes.append((clock.now - start).microseconds / 1000)
                signAPDUs = channel.trace!.events(from: before).filter { $0.direction == .toCard }.count
            }
            let reference = try await medianSelectRoundTrip(channel, aid: CPSLayout.iasAID, count: reads)
            let read = percentile(times, 0.5)
            let sign = percentile(signTimes, 0.5)
            return .init(name: name, readAPDUs: apdus, situations: situations, readMedianMilliseconds: read, readP99Milliseconds: percentile(times, 0.99),
                         signatureAPDUs: signAPDUs, signatureMedianMilliseconds: sign, selectRoundTripMilliseconds: reference,
                         readInRoundTrips: read / reference, signatureOverOpenSSL: sign / openssl,
                         pinPadVerifyAPDUs: padAPDUs, hostPINVerifyMedianMilliseconds: host, pinPadVerifyMedianMilliseconds: pad, pinPadOverHost: pad / host)
        }
    }
}

/// `carte bench cps --json`, schema `carte.bench-cps/1` (docs/json.md).
struct BenchCPSReport: Encodable {
    var schema = "carte.bench-cps/1"
    let image: String
    let rows: [Row]
    let skipped: String?
    /// The reference for signatures: OpenSSL signing in this process with a key of the same size, median.
    let opensslSignatureMilliseconds: Double
    let goalAPDUs: Int
    let goalMet: Bool
    let build: String

    struct Row: Encodable {
        let name: String
        /// APDUs of one reading: holder, situations and both certificates (PIN verified before).
        let readAPDUs: Int
        let situations: Int
        let readMedianMilliseconds: Double
        let readP99Milliseconds: Double
        /// APDUs of one signature (SELECT, MSE ×2, PSO HASH, PSO CDS and any GET RESPONSE).
        let signatureAPDUs: Int
        let signatureMedianMilliseconds: Double
        /// The reference: one SELECT round trip on the same path, median.
        let selectRoundTripMilliseconds: Double
        let readInRoundTrips: Double
        /// A signature's median time divided by OpenSSL's own signing time.
        let signatureOverOpenSSL: Double
        /// Commands of one PIN verification on the reader's pad (the pad's VERIFY; a CPS4 adds its SELECT).
        let pinPadVerifyAPDUs: Int
        /// The PIN verified from the host (VERIFY), median.
        let hostPINVerifyMedianMilliseconds: Double
        /// The PIN verified on the reader's pad (`FEATURE_VERIFY_PIN_DIRECT`, the keypad typing at once), median.
        let pinPadVerifyMedianMilliseconds: Double
        /// The pad's median over the host's.
        let pinPadOverHost: Double
    }

    var text: String {
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        var lines = ["carte bench cps (\(build) build): \(image)", ""]
        for r in rows {
            lines.append("\(r.name):")
            lines.append("  reading (holder, \(r.situations) situation(s), 2 certificates): \(r.readAPDUs) APDUs, median \(ms(r.readMedianMilliseconds)) ms, p99 \(ms(r.readP99Milliseconds)) ms = \(String(format: "%.1f", r.readInRoundTrips)) x one SELECT round trip (\(ms(r.selectRoundTripMilliseconds)) ms)")
            lines.append("  signature: \(r.signatureAPDUs) APDUs, median \(ms(r.signatureMedianMilliseconds)) ms = \(String(format: "%.2f", r.signatureOverOpenSSL)) x OpenSSL's own RSA signature (\(ms(opensslSignatureMilliseconds)) ms)")
            lines.append("  PIN on the reader's pad: \(r.pinPadVerifyAPDUs) APDU(s), median \(ms(r.pinPadVerifyMedianMilliseconds)) ms = \(String(format: "%.2f", r.pinPadOverHost)) x the host's VERIFY (\(ms(r.hostPINVerifyMedianMilliseconds)) ms)")
        }
        if let skipped { lines.append(skipped) }
        lines.append("")
        lines.append("Goal: <= \(goalAPDUs) APDUs per reading: \(goalMet ? "met" : "NOT met")")
        return lines.joined(separator: "\n")
    }
}
