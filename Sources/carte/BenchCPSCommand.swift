import ArgumentParser
import CarteCore
import CarteCPS
import CarteCrypto
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import Logging

extension BenchCommand {
    struct CPS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cps",
            abstract: "APDU count and time of a CPx reading (holder, situations, both certificates) and of one signature, on a CPS3 and a CPS4.",
            discussion: """
                For each --image (default: the bundled CPS3 medecin-liberal and CPS4 cps4-medecin), \
                verifies the test PIN --signatures times from the host and as many times on the reader's PIN pad \
                (a mono-fente with a pad; the simulated keypad types at once), then reads the card --reads times \
                and signs --signatures times, in \
                memory and through a private pcscd loading libifdcarte.so (root only; skipped with the reason \
                otherwise). References measured in the same run: one SELECT round trip on the same path, and \
                one RSA PKCS#1 v1.5 signature made by OpenSSL in this process with a key of the card's size \
                (the simulated card's own cost). Goal: at most 25 APDUs for holder + situations + certificates.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("A card to measure; repeat for several (default: the bundled CPS3 and CPS4).", valueName: "IMAGE"))
        var image: [String] = []

        /// The cards measured: `--image`, or the bundled CPS3 and CPS4.
        var images: [String] { image.isEmpty ? ["bundled:cps/medecin-liberal.yaml", "bundled:cps/cps4-medecin.yaml"] : image }

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
                // Every card in its own mono-fente with a PIN pad (the PIN is also verified on the pad,
                // typed by the simulated keypad); one private pcscd serves them all, libpcsclite reading
                // its socket's name once per process.
                var profile = VirtualReaderProfile.monoFente
                profile.pinPad = PINPadProfile()
                var loaded: [(image: String, card: CardImage, generation: CPSGeneration, openssl: Double)] = []
                for image in images {
                    let card = try SimulatorOptions.loadImage(image)
                    guard let generation = CPSGeneration.from(atr: card.atr), let signing = card.keys.first(where: { $0.usages.contains(.sign) }) else {
                        throw CLIError(kind: "usage", message: "\(image) is not a CPx image with a signature key", exitCode: CarteExit.invalidInput)
                    }
                    loaded.append((image, card, generation, try opensslSignatureMedian(bytes: (try? RSAPrivateKey(pem: signing.privateKeyPEM))?.modulusBytes ?? 256)))
                }
                var rows: [[BenchCPSReport.Row]] = []
                for entry in loaded {
                    let memory = SimulatorBackend(profiles: [profile])
                    try memory.insert(entry.card, into: memory.readerNames[0])
                    let channel = CardChannel(transport: try memory.connectNow(to: memory.readerNames[0]), trace: Trace(capacity: 256))
                    rows.append([try await measure("in memory (simulator)", channel, atr: entry.card.atr, openssl: entry.openssl, keypad: memory.physicalReaders[0].slots[0].keypad)])
                }
                var skipped: String? = nil
                if PrivatePCSCD.unavailableReason == nil {
                    let setup = try PrivateVirtualReader.start(profiles: loaded.map { _ in profile }, images: loaded.map(\.card), logger: logger)
                    defer { setup.stop() }
                    let client = PCSCBackend(logger: logger)
                    for (i, entry) in loaded.enumerated() {
                        let connection = try await setup.connect(client, reader: i, of: loaded.count)
                        rows[i].append(try await measure("through pcscd (libifdcarte.so)", CardChannel(transport: connection, trace: Trace(capacity: 256)), atr: entry.card.atr,
                                                         openssl: entry.openssl, keypad: setup.backend.physicalReaders[i].slots[0].keypad))
                        try? await connection.disconnect(.reset)
                    }
                } else {
                    skipped = "through pcscd not measured: \(PrivatePCSCD.unavailableReason!)"
                }
                let cards = loaded.enumerated().map { i, entry in
                    BenchCPSReport.Card(image: entry.image, generation: entry.generation.rawValue, rows: rows[i], skipped: skipped, opensslSignatureMilliseconds: entry.openssl)
                }
                let report = BenchCPSReport(cards: cards, goalAPDUs: 25, goalMet: cards.allSatisfy { $0.rows.allSatisfy { $0.readAPDUs <= 25 } }, build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        /// The reference for signatures: OpenSSL signing in this process with a key of `bytes` bytes, median.
        private func opensslSignatureMedian(bytes: Int) throws -> Double {
            let key = try RSAPrivateKey.generate(bits: bytes * 8)
            let digest = SHA256.digest([1, 2, 3])
            let clock = ContinuousClock()
            var times: [Double] = []
            for _ in 0..<signatures {
                let start = clock.now
                _ = try key.sign(digest: digest, algorithm: .sha256)
                times.append((clock.now - start).microseconds / 1000)
            }
            return percentile(times, 0.5)
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
                    padAPDUs = channel.trace!.commandCount(from: before)
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
                signAPDUs = channel.trace!.commandCount(from: before)
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

/// `carte bench cps --json`, schema `carte.bench-cps/2` (docs/json.md).
struct BenchCPSReport: Encodable {
    var schema = "carte.bench-cps/2"
    /// One entry per card measured (a CPS3 and a CPS4 by default).
    let cards: [Card]
    let goalAPDUs: Int
    let goalMet: Bool
    let build: String

    struct Card: Encodable {
        let image: String
        /// `cps3`, `cps4` or `cps3-contactless`.
        let generation: String
        let rows: [Row]
        let skipped: String?
        /// The reference for signatures: OpenSSL signing in this process with a key of the same size, median.
        let opensslSignatureMilliseconds: Double
    }

    struct Row: Encodable {
        let name: String
        /// APDUs of one reading: holder, situations and both certificates (PIN verified before).
        let readAPDUs: Int
        let situations: Int
        let readMedianMilliseconds: Double
        let readP99Milliseconds: Double
        /// APDUs of one signature (CPS3: SELECT, MSE ×2, PSO HASH, PSO CDS and any GET RESPONSE; CPS4:
        /// SELECT, MSE, PSO CDS).
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
        var lines = ["carte bench cps (\(build) build)"]
        for card in cards {
            lines.append("")
            lines.append("\(card.image) (\(card.generation)):")
            for r in card.rows {
                lines.append("  \(r.name):")
                lines.append("    reading (holder, \(r.situations) situation(s), 2 certificates): \(r.readAPDUs) APDUs, median \(ms(r.readMedianMilliseconds)) ms, p99 \(ms(r.readP99Milliseconds)) ms = \(String(format: "%.1f", r.readInRoundTrips)) x one SELECT round trip (\(ms(r.selectRoundTripMilliseconds)) ms)")
                lines.append("    signature: \(r.signatureAPDUs) APDUs, median \(ms(r.signatureMedianMilliseconds)) ms = \(String(format: "%.2f", r.signatureOverOpenSSL)) x OpenSSL's own RSA signature (\(ms(card.opensslSignatureMilliseconds)) ms)")
                lines.append("    PIN on the reader's pad: \(r.pinPadVerifyAPDUs) APDU(s), median \(ms(r.pinPadVerifyMedianMilliseconds)) ms = \(String(format: "%.2f", r.pinPadOverHost)) x the host's VERIFY (\(ms(r.hostPINVerifyMedianMilliseconds)) ms)")
            }
            if let skipped = card.skipped { lines.append("  \(skipped)") }
        }
        lines.append("")
        lines.append("Goal: <= \(goalAPDUs) APDUs per reading: \(goalMet ? "met" : "NOT met")")
        return lines.joined(separator: "\n")
    }
}
