import ArgumentParser
import CarteApCV
import CarteApCVHTTP
import CarteCore
import CarteCrypto
import CarteKit
import CartePCSC
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation

extension BenchCommand {
    struct ApCV: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apcv",
            abstract: "Time of an appli carte Vitale read (NFC and QR, SYNTHETIC protocol) against a card read of the same persona.",
            discussion: """
                Reads the phone --reads times: by NFC in memory and through a private pcscd (root only), from \
                its QR code, with the simulated service in process and over HTTP on loopback. References \
                measured in the same run: the same persona's Vitale card read on the same path, one SELECT \
                round trip, and OpenSSL's own ECDSA P-256 verification (the cryptographic floor of a QR read).
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("The phone image.", valueName: "IMAGE"))
        var phone: String = "bundled:apcv/claire-exemple.yaml"

        @Option(help: "Reads measured on each path (after 20 warm-up reads; QR tokens are made beforehand and must not expire).")
        var reads: Int = 300

        func validate() throws {
            guard (10...10_000).contains(reads) else { throw ValidationError("--reads must be in 10...10000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let phoneImage = try SimulatorOptions.loadImage(phone)
                guard let apcv = phoneImage.apcv else {
                    throw CLIError(kind: "image", message: "\(phone) is not a phone image", exitCode: CarteExit.invalidInput)
                }
                let cardImage = try SimulatorOptions.loadImage(apcv.identity)
                let service = try await ApCVOptions.inProcessService(phones: [phoneImage])
                let software = ApCVProtocol.Configuration().softwareID
                let inProcess = service.resolver(for: software)
                var rows: [BenchApCVReport.Row] = []

                // The cryptographic floor of a QR read: one ECDSA P-256 verification of a token-sized message.
                let key = try ECPrivateKey.generateP256()
                let message = [UInt8](repeating: 0x5A, count: 140)
                let signature = try key.sign(message)
                let publicKey = key.publicKey
                let crypto = try time { try publicKey.verify(signature: signature, of: message) }

                // In memory: the card, then the phone by NFC.
                let memory = SimulatorBackend(profiles: [.monoFente, .contactless])
                try memory.insert(cardImage, into: memory.readerNames[0])
                try memory.insert(phoneImage, into: memory.readerNames[1])
                let cardChannel = CardChannel(transport: try memory.connectNow(to: memory.readerNames[0]), trace: Trace(capacity: 64))
                let phoneChannel = CardChannel(transport: try memory.connectNow(to: memory.readerNames[1]), trace: Trace(capacity: 64))
                let cardInMemory = try await timeAsync { _ = try await VitaleReader(channel: cardChannel).read() }
                let nfcInMemory = try await timeAsync { _ = try await ApCVSource(.nfc(phoneChannel), resolver: inProcess).read() }
                rows.append(.init(name: "phone by NFC, in memory, service in process", apdus: 2, medianMilliseconds: nfcInMemory.median, p99Milliseconds: nfcInMemory.p99,
                                  reference: "the same persona's card read in memory", referenceMilliseconds: cardInMemory.median))

                // QR, in process and over HTTP.
                let payloads = try (0..<(reads + 20)).map { _ in try apcv.qrPayload(for: software) }
                var next = 0
                let qrInProcess = try await timeAsync {
                    _ = try await ApCVSource(.qr(payloads[next]), resolver: inProcess).read()
                    next += 1
                }
                rows.append(.init(name: "QR code, service in process", apdus: 0, medianMilliseconds: qrInProcess.median, p99Milliseconds: qrInProcess.p99,
                                  reference: "one ECDSA P-256 verification (OpenSSL)", referenceMilliseconds: crypto.median))
                let server = try ApCVHTTPServer(service: try await ApCVOptions.inProcessService(phones: [phoneImage]), endpoint: try LoopbackEndpoint("127.0.0.1:0"))
                defer { server.stop() }
                let http = HTTPApCVResolver(endpoint: server.endpoint, softwareID: software)
                let fresh = try (0..<(reads + 20)).map { _ in try apcv.qrPayload(for: software) }
                next = 0
                let qrHTTP = try await timeAsync {
                    _ = try await ApCVSource(.qr(fresh[next]), resolver: http).read()
                    next += 1
                }
                rows.append(.init(name: "QR code, service over HTTP on loopback", apdus: 0, medianMilliseconds: qrHTTP.median, p99Milliseconds: qrHTTP.p99,
                                  reference: "the same, service in process", referenceMilliseconds: qrInProcess.median))

                // Through pcscd: the card, then the phone.
                var skipped: String? = nil
                if PrivatePCSCD.unavailableReason == nil {
                    // One private pcscd per process (libpcsclite keeps its socket): the card is measured,
                    // then the phone takes its place in the same virtual slot.
                    let setup = try PrivateVirtualReader.start(image: cardImage, logger: logger)
                    defer { setup.stop() }
                    let client = PCSCBackend(logger: logger)
                    let cardConnection = try await setup.connect(client)
                    let cardPCSC = try await timeAsync { _ = try await VitaleReader(channel: CardChannel(transport: cardConnection, trace: Trace(capacity: 64))).read() }
                    try? await cardConnection.disconnect(.leave)
                    let slot = setup.backend.readerNames[0]
                    try setup.backend.insert(phoneImage, into: slot)
                    let pcscName = try await client.readerNames()[0]
                    for _ in 0..<500 {
                        if case .present(let atr) = try await client.state(of: pcscName), atr == phoneImage.atr { break }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    let connection = try await setup.connect(client)
                    let channel = CardChannel(transport: connection, trace: Trace(capacity: 64))
                    let nfcPCSC = try await timeAsync { _ = try await ApCVSource(.nfc(channel), resolver: inProcess).read() }
                    let select = try await medianSelectRoundTrip(channel, aid: apcv.aid, count: reads)
                    try? await connection.disconnect(.leave)
                    rows.append(.init(name: "phone by NFC, through pcscd, service in process", apdus: 2, medianMilliseconds: nfcPCSC.median, p99Milliseconds: nfcPCSC.p99,
                                      reference: "the same persona's card read through pcscd", referenceMilliseconds: cardPCSC.median))
                    rows.append(.init(name: "phone by NFC, through pcscd, service in process", apdus: 2, medianMilliseconds: nfcPCSC.median, p99Milliseconds: nfcPCSC.p99,
                                      reference: "one SELECT round trip through pcscd", referenceMilliseconds: select))
                } else {
                    skipped = "through pcscd not measured: \(PrivatePCSCD.unavailableReason!)"
                }
                let report = BenchApCVReport(phone: phone, rows: rows, skipped: skipped, build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        private func time(_ body: () throws -> Void) throws -> (median: Double, p99: Double) {
            for _ in 0..<20 { try body() }
            let clock = ContinuousClock()
            var times: [Double] = []
            for _ in 0..<reads {
                let start = clock.now
                try body()
                times.append((clock.now - start).microseconds / 1000)
            }
            return (percentile(times, 0.5), percentile(times, 0.99))
        }

        private func timeAsync(_ body: () async throws -> Void) async throws -> (median: Double, p99: Double) {
            for _ in 0..<20 { try await body() }
            let clock = ContinuousClock()
            var times: [Double] = []
            for _ in 0..<reads {
                let start = clock.now
                try await body()
                times.append((clock.now - start).microseconds / 1000)
            }
            return (percentile(times, 0.5), percentile(times, 0.99))
        }
    }
}

/// `carte bench apcv --json`, schema `carte.bench-apcv/1` (docs/json.md).
struct BenchApCVReport: Encodable {
    var schema = "carte.bench-apcv/1"
    let phone: String
    let rows: [Row]
    let skipped: String?
    let build: String

    struct Row: Encodable {
        let name: String
        let apdus: Int
        let medianMilliseconds: Double
        let p99Milliseconds: Double
        /// What the row is compared with, measured in the same run.
        let reference: String
        let referenceMilliseconds: Double
        var ratio: Double { medianMilliseconds / referenceMilliseconds }

        enum CodingKeys: String, CodingKey { case name, apdus, medianMilliseconds, p99Milliseconds, reference, referenceMilliseconds, ratio }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(apdus, forKey: .apdus)
            try c.encode(medianMilliseconds, forKey: .medianMilliseconds)
            try c.encode(p99Milliseconds, forKey: .p99Milliseconds)
            try c.encode(reference, forKey: .reference)
            try c.encode(referenceMilliseconds, forKey: .referenceMilliseconds)
            try c.encode(ratio, forKey: .ratio)
        }
    }

    var text: String {
        var lines = ["carte bench apcv (\(build) build): \(phone), SYNTHETIC protocol", ""]
        for r in rows {
            lines.append("\(r.name): \(r.apdus) APDUs, median \(String(format: "%.3f", r.medianMilliseconds)) ms, p99 \(String(format: "%.3f", r.p99Milliseconds)) ms"
                + " = \(String(format: "%.2f", r.ratio)) x \(r.reference) (\(String(format: "%.3f", r.referenceMilliseconds)) ms)")
        }
        if let skipped { lines.append(skipped) }
        return lines.joined(separator: "\n")
    }
}
