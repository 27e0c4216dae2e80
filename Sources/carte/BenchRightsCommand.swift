import ArgumentParser
import CarteApCV
import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import CartePCSC
import CarteRights
import CarteVitale
import Foundation
import Logging

extension BenchCommand {
    struct Rights: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rights",
            abstract: "APDUs and time of a mutual TLS handshake signed by the CPx card, and of one PKCS#11 signature, against a software key.",
            discussion: """
                Starts the synthetic rights service in process and asks it --rounds times for a person's rights: \
                with a software RSA key of the card's size (the reference, OpenSSL in this process), with the \
                virtual CPS3 in memory (CarteCPS, INTERNAL AUTHENTICATE), and with the card through a private \
                pcscd loading libifdcarte.so. Through pcscd it also times whole client programs, each against \
                the same program with a software key: curl with OpenSC's PKCS#11 module (the pkcs11 engine) \
                against curl with a key file, and one pkcs11-tool signature (login + RSA-PKCS) against \
                openssl pkeyutl. The pcscd rows need root (skipped with the reason otherwise) and the \
                programs (opensc, curl, libengine-pkcs11-openssl).
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Handshakes (and program runs) measured on each path.")
        var rounds: Int = 20

        func validate() throws {
            guard (3...1000).contains(rounds) else { throw ValidationError("--rounds must be in 3...1000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
                let pki = try BundledTestPKI.pki()
                let vitale = try await ApCVSimulation.readInMemory(try SimulatorOptions.loadImage("bundled:vitale/single-insured.yaml"))
                guard let nir = vitale.beneficiaries.first?.nir?.description else { throw CLIError(kind: "bench", message: "the persona has no NIR", exitCode: CarteExit.unexpected) }
                let server = try RightsServer(service: RightsService(cards: [vitale]), endpoint: try rightsEndpoint("127.0.0.1:0"), issuer: pki.root, issuerKey: pki.rootKey,
                                              clientRoots: [pki.root], clientIntermediates: [pki.intermediate], logger: quiet)
                defer { server.stop() }
                let card = try SimulatorOptions.loadImage("bundled:cps/medecin-liberal.yaml")

                // The reference: a software key of the card's size, its certificate from the same CA.
                let softwareKey = try RSAPrivateKey.generate(bits: 2048)
                let now = currentUnixTime()
                let softwareCertificate = try CertificateBuilder(subject: [("C", "FR"), ("O", "CarteKit TEST - synthetic"), ("CN", "SOFTWARE KEY (bench)")], serial: 7,
                                                                 notBefore: now - 3600, notAfter: now + 86_400, keyUsage: [.digitalSignature], extendedKeyUsage: ["clientAuth"])
                    .issue(publicKeyOf: softwareKey, issuer: pki.intermediate, issuerKey: pki.intermediateKey)
                let software = try await handshakes(SoftwareTLSClientKey(certificate: softwareCertificate, key: softwareKey), server: server, pki: pki, nir: nir, apdus: { 0 })
                var rows = [Row(name: "software key (OpenSSL in process)", handshake: software, reference: software)]

                // The card in memory.
                let memory = SimulatorBackend(profiles: [.monoFente])
                try memory.insert(card, into: memory.readerNames[0])
                let memorySlot = memory.physicalReaders[0].slots[0]
                let inMemory = try await cardHandshakes(try memory.connectNow(to: memory.readerNames[0]), atr: card.atr, server: server, pki: pki, nir: nir, slot: memorySlot)
                rows.append(Row(name: "CPS3 in memory (CarteCPS)", handshake: inMemory, reference: software))

                var programs: [ProgramRow] = []
                var skipped: [String] = []
                if PrivatePCSCD.unavailableReason == nil {
                    let setup = try PrivateVirtualReader.start(profile: .monoFente, images: [card], logger: logger)
                    defer { setup.stop() }
                    let slot = setup.backend.physicalReaders[0].slots[0]
                    let connection = try await setup.connect(PCSCBackend(logger: quiet))
                    rows.append(Row(name: "CPS3 through pcscd (CarteCPS)", handshake: try await cardHandshakes(connection, atr: card.atr, server: server, pki: pki, nir: nir, slot: slot), reference: software))
                    try? await connection.disconnect(.reset)
                    programs = try await programRows(server: server, pki: pki, nir: nir, slot: slot, softwareKey: softwareKey, softwareCertificate: softwareCertificate, skipped: &skipped)
                } else {
                    skipped.append("through pcscd not measured: \(PrivatePCSCD.unavailableReason!)")
                }
                let report = BenchRightsReport(rounds: rounds, rows: rows, programs: programs, skipped: skipped, build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        typealias Row = BenchRightsReport.Row
        typealias ProgramRow = BenchRightsReport.ProgramRow

        /// Median handshake, signature and whole-request times, and the APDUs of one handshake.
        struct Measured {
            var handshake: Double
            var signature: Double
            var request: Double
            var apdus: Int
        }

        private func handshakes(_ key: any TLSClientKey, server: RightsServer, pki: TestPKI, nir: String, apdus: () -> Int) async throws -> Measured {
            var hs: [Double] = [], sig: [Double] = [], total: [Double] = []
            var perHandshake = 0
            let clock = ContinuousClock()
            for i in 0..<(rounds + 2) {
                let before = apdus()
                let start = clock.now
                let reply: RightsReply
                do throws(RightsError) { reply = try await RightsClient.fetch(nir: nir, endpoint: server.endpoint, roots: [pki.root], key: key) } catch {
                    throw CLIError(kind: "bench", message: error.description, exitCode: CarteExit.rightsRefused)
                }
                let elapsed = (clock.now - start).microseconds / 1000
                guard i >= 2 else { continue }  // warm-up
                perHandshake = apdus() - before
                hs.append(reply.handshakeSeconds * 1000)
                sig.append(reply.signatureSeconds * 1000)
                total.append(elapsed)
            }
            return Measured(handshake: percentile(hs, 0.5), signature: percentile(sig, 0.5), request: percentile(total, 0.5), apdus: perHandshake)
        }

        private func cardHandshakes(_ connection: any CardConnection, atr: [UInt8], server: RightsServer, pki: TestPKI, nir: String, slot: VirtualSlot) async throws -> Measured {
            let cps = try CPSReader(channel: CardChannel(transport: connection, trace: Trace(capacity: 64)), atr: atr)
            try await cps.verifyPIN(try PINCode("1234"))
            guard let certificate = try await cps.certificates().first(where: { $0.role == .authentication })?.certificate else {
                throw CLIError(kind: "bench", message: "the card has no authentication certificate", exitCode: CarteExit.unexpected)
            }
            return try await handshakes(CardTLSKey(cps: cps, certificate: certificate), server: server, pki: pki, nir: nir, apdus: { slot.apduCount })
        }

        /// A program run to completion with extra environment; its status and elapsed milliseconds.
        private static func timed(_ path: String, _ arguments: [String], environment: [String: String] = [:]) async -> (status: Int32, milliseconds: Double, output: String) {
            await onDedicatedThread { () -> (status: Int32, milliseconds: Double, output: String) in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: path)
                p.arguments = arguments
                p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
                let out = Pipe()
                p.standardOutput = out
                p.standardError = out
                p.standardInput = FileHandle.nullDevice
                let start = ContinuousClock.now
                guard (try? p.run()) != nil else { return (-1, 0, "cannot run \(path)") }
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                return (p.terminationStatus, (ContinuousClock.now - start).microseconds / 1000, String(decoding: data, as: UTF8.self))
            }
        }

        private func programRows(server: RightsServer, pki: TestPKI, nir: String, slot: VirtualSlot, softwareKey: RSAPrivateKey,
                                 softwareCertificate: X509Certificate, skipped: inout [String]) async throws -> [ProgramRow] {
            let module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
            let engine = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
            for tool in ["/usr/bin/pkcs11-tool", "/usr/bin/curl", "/usr/bin/openssl", module, engine] where !FileManager.default.fileExists(atPath: tool) {
                skipped.append("programs not measured: \(tool) is missing (scripts/bootstrap.sh installs it)")
                return []
            }
            let dir = try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-bench-rights")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            func file(_ name: String, _ text: String) throws -> String {
                let path = dir + "/" + name
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }
            let root = try file("root.pem", pki.root.pem)
            let conf = try file("openssl.cnf", "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\nMODULE_PATH = \(module)\ninit = 0\n")
            let keyFile = try file("key.pem", softwareKey.pem), certFile = try file("cert.pem", softwareCertificate.pem)
            let digestInfo = dir + "/digest-info.bin"
            try Data(DigestAlgorithm.sha256.digestInfoPrefix + SHA256.digest(Array("bench".utf8))).write(to: URL(fileURLWithPath: digestInfo))
            let url = "https://127.0.0.1:\(server.endpoint.port)/rights/v1/\(nir)"

            func measure(_ name: String, card: [String], cardEnvironment: [String: String] = [:], software: [String]) async throws -> ProgramRow {
                var cardTimes: [Double] = [], softwareTimes: [Double] = []
                var apdus = 0
                for i in 0..<(rounds + 1) {
                    let before = slot.apduCount
                    let c = await Self.timed(card[0], Array(card.dropFirst()), environment: cardEnvironment)
                    guard c.status == 0 else { throw CLIError(kind: "bench", message: "\(name): \(card[0]) failed: \(c.output.suffix(400))", exitCode: CarteExit.unexpected) }
                    let s = await Self.timed(software[0], Array(software.dropFirst()))
                    guard s.status == 0 else { throw CLIError(kind: "bench", message: "\(name): \(software[0]) failed: \(s.output.suffix(400))", exitCode: CarteExit.unexpected) }
                    guard i >= 1 else { continue }
                    apdus = slot.apduCount - before
                    cardTimes.append(c.milliseconds)
                    softwareTimes.append(s.milliseconds)
                }
                let card = percentile(cardTimes, 0.5), reference = percentile(softwareTimes, 0.5)
                return ProgramRow(name: name, cardAPDUs: apdus, cardMedianMilliseconds: card, softwareMedianMilliseconds: reference, cardOverSoftware: card / reference)
            }
            let curl = try await measure("curl, mutual TLS + GET (card via OpenSC PKCS#11 vs key file)",
                                         card: ["/usr/bin/curl", "-sS", "-o", "/dev/null", "--cacert", root, "--engine", "pkcs11", "--cert-type", "ENG", "--cert", "pkcs11:id=%01;type=cert",
                                                "--key-type", "ENG", "--key", "pkcs11:id=%01;type=private;pin-value=1234", url],
                                         cardEnvironment: ["OPENSSL_CONF": conf],
                                         software: ["/usr/bin/curl", "-sS", "-o", "/dev/null", "--cacert", root, "--cert", certFile, "--key", keyFile, url])
            let sign = try await measure("one signature, login + RSA-PKCS (pkcs11-tool vs openssl pkeyutl)",
                                         card: ["/usr/bin/pkcs11-tool", "--module", module, "--login", "--pin", "1234", "--sign", "-m", "RSA-PKCS", "--id", "01", "-i", digestInfo, "-o", dir + "/sig"],
                                         software: ["/usr/bin/openssl", "pkeyutl", "-sign", "-inkey", keyFile, "-in", digestInfo, "-out", dir + "/sig-soft"])
            return [curl, sign]
        }
    }
}

/// `carte bench rights --json`, schema `carte.bench-rights/1` (docs/json.md).
struct BenchRightsReport: Encodable {
    var schema = "carte.bench-rights/1"
    let rounds: Int
    let rows: [Row]
    let programs: [ProgramRow]
    let skipped: [String]
    let build: String

    struct Row: Encodable {
        let name: String
        /// APDUs of one handshake (0 for the software key).
        let handshakeAPDUs: Int
        /// Median TLS handshake (connect included), the client signature within it, and the whole request.
        let handshakeMedianMilliseconds: Double
        let signatureMedianMilliseconds: Double
        let requestMedianMilliseconds: Double
        /// The handshake's median over the software key's.
        let handshakeOverSoftware: Double

        init(name: String, handshake m: BenchCommand.Rights.Measured, reference: BenchCommand.Rights.Measured) {
            self.name = name
            handshakeAPDUs = m.apdus
            handshakeMedianMilliseconds = m.handshake
            signatureMedianMilliseconds = m.signature
            requestMedianMilliseconds = m.request
            handshakeOverSoftware = m.handshake / reference.handshake
        }
    }

    struct ProgramRow: Encodable {
        let name: String
        /// APDUs the card received during one run of the card program.
        let cardAPDUs: Int
        let cardMedianMilliseconds: Double
        let softwareMedianMilliseconds: Double
        let cardOverSoftware: Double
    }

    var text: String {
        func ms(_ v: Double) -> String { String(format: "%.2f", v) }
        var lines = ["carte bench rights (\(build) build): mutual TLS 1.2 with the synthetic rights service, \(rounds) rounds, medians", ""]
        for r in rows {
            lines.append("\(r.name): handshake \(ms(r.handshakeMedianMilliseconds)) ms (signature \(ms(r.signatureMedianMilliseconds)) ms, \(r.handshakeAPDUs) APDUs) = \(String(format: "%.2f", r.handshakeOverSoftware)) x the software key; whole request \(ms(r.requestMedianMilliseconds)) ms")
        }
        for p in programs {
            lines.append("\(p.name): \(ms(p.cardMedianMilliseconds)) ms with the card (\(p.cardAPDUs) APDUs) vs \(ms(p.softwareMedianMilliseconds)) ms = \(String(format: "%.2f", p.cardOverSoftware)) x")
        }
        lines += skipped
        return lines.joined(separator: "\n")
    }
}
