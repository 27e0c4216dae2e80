import ArgumentParser
import CarteBundledImages
import CarteCore
import CarteCrypto
import CarteEmulator
import CarteImages
import Foundation

struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Work with card images (the simulator's card format).",
        subcommands: [Check.self, List.self, Build.self, Anonymise.self, Import.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Load card images and report their content, or the file, line and field of the first error.",
            discussion: "FILE may be bundled:PATH for an image built into carte. Exits 2 if any image is invalid."
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Card image files (YAML, format carte-image/1).")
        var files: [String]

        func run() async throws {
            _ = global.makeLogger()
            var results: [ImageCheckReport.Result] = []
            var failed = false
            for file in files {
                do {
                    let image = try SimulatorOptions.loadImage(file)
                    results.append(.init(file: file, valid: true, error: nil, summary: ImageSummary(image)))
                    if !global.json { print("\(file): OK\n" + ImageSummary(image).text.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")) }
                } catch {
                    failed = true
                    let e = CLIError.from(error)
                    results.append(.init(file: file, valid: false, error: e.message, summary: nil))
                    if !global.json { Output.stderr("error: \(e.message)") }
                }
            }
            if global.json { Output.printJSON(ImageCheckReport(results: results)) }
            if failed { throw ExitCode(CarteExit.invalidInput) }
        }
    }

    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "build",
            abstract: "Compile a persona (carte-persona/1, carte-cps-persona/1 or carte-apcv-persona/1) into a card image file (carte-image/1).",
            discussion: """
            PERSONA may be bundled:PATH (for example bundled:vitale/twins.yaml or bundled:cps/personas/medecin-liberal.yaml). \
            The image is written with hex file contents, every synthetic part labelled.

            A CPx persona gets new RSA keys and certificates issued by a TEST PKI (never the ANS PKI): the one built \
            into carte by default, or the one in --pki DIR (generated there with OpenSSL when DIR holds none). \
            --reuse-keys IMAGE keeps the keys and certificates of an image built before, so a rebuild changes only the data.

            A phone persona (the SYNTHETIC appli carte Vitale, CardImages/apcv/) gets a new ECDSA P-256 key and subject \
            handle, or those of --reuse-keys IMAGE; its identity is the Vitale card image it names.
            """
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The persona file.")
        var persona: String

        @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the image ('-' for standard output).", valueName: "IMAGE"))
        var output: String

        @Option(help: ArgumentHelp("CPx personas: the test PKI directory (created with a new test PKI when empty).", valueName: "DIR"))
        var pki: String?

        @Option(name: .customLong("reuse-keys"), help: ArgumentHelp("CPx personas: take the keys and certificates of this built image; phone personas: its key and subject handle.", valueName: "IMAGE"))
        var reuseKeys: String?

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                if output != "-" { try FileIO.checkWritable(output, "the card image, -o") }
                let image = try buildImage()
                let text = CardImageWriter.yaml(image)
                if output == "-" {
                    print(text, terminator: "")
                } else {
                    try FileIO.write(text, to: output, "the card image, -o")
                    if !global.json { Output.stderr("wrote \(output): \(image.name)") }
                }
                if global.json && output != "-" { Output.printJSON(ImageCheckReport(results: [.init(file: output, valid: true, error: nil, summary: ImageSummary(image))])) }
            }
        }

        private func buildImage() throws -> CardImage {
            let text: String
            if persona.hasPrefix("bundled:") {
                guard let b = BundledImages.image(at: String(persona.dropFirst("bundled:".count))) else {
                    throw CLIError(kind: "image", message: "no bundled persona \"\(persona.dropFirst("bundled:".count))\"", exitCode: CarteExit.invalidInput)
                }
                text = b.text
            } else {
                guard let t = try? String(contentsOfFile: persona, encoding: .utf8) else {
                    // Let the loader say precisely why (missing, directory, not UTF-8…).
                    return try SimulatorOptions.loadImage(persona)
                }
                text = t
            }
            if ApCVPersonaCompiler.isPersona(text) {
                guard pki == nil else {
                    throw CLIError(kind: "usage", message: "--pki applies to CPx personas (carte-cps-persona/1) only", exitCode: CarteExit.invalidInput)
                }
                let parsed: ApCVPersona
                do { parsed = try ApCVPersonaCompiler.load(text: text, source: persona) } catch {
                    throw CLIError(kind: "image", message: error.description, exitCode: CarteExit.invalidInput)
                }
                // The identity must be a readable Vitale image: check it now, not when a service loads it.
                _ = try SimulatorOptions.loadImage(parsed.identity)
                var key: ECPrivateKey? = nil, subject: [UInt8]? = nil
                if let reuseKeys {
                    guard let phone = try SimulatorOptions.loadImage(reuseKeys).apcv, let k = try? ECPrivateKey(pem: phone.privateKeyPEM) else {
                        throw CLIError(kind: "image", message: "\(reuseKeys) is not a phone image with a key to reuse", exitCode: CarteExit.invalidInput)
                    }
                    key = k
                    subject = phone.subject
                }
                do { return try ApCVPersonaCompiler.compile(parsed, key: key, subject: subject, source: persona) } catch {
                    throw CLIError(kind: "image", message: "cannot build \(persona): \(error.message)", exitCode: CarteExit.invalidInput)
                }
            }
            guard CPSPersonaCompiler.isPersona(text) else {
                guard pki == nil, reuseKeys == nil else {
                    throw CLIError(kind: "usage", message: "--pki and --reuse-keys apply to CPx personas (carte-cps-persona/1) only", exitCode: CarteExit.invalidInput)
                }
                return try SimulatorOptions.loadImage(persona)
            }
            let parsed: CPSPersona
            do {
                parsed = try CPSPersonaCompiler.load(text: text, source: persona)
            } catch {
                throw CLIError(kind: "image", message: error.description, exitCode: CarteExit.invalidInput)
            }
            let testPKI: TestPKI
            do {
                if let pki {
                    let (loaded, generated) = try TestPKI.loadOrGenerate(directory: pki)
                    if generated && !global.json { Output.stderr("generated a new TEST PKI in \(pki) (root and intermediate, RSA 2048; not the ANS PKI)") }
                    testPKI = loaded
                } else {
                    testPKI = try BundledTestPKI.pki()
                }
            } catch {
                throw CLIError(kind: "image", message: "test PKI: \(error.message)", exitCode: CarteExit.invalidInput)
            }
            var keys: CPSKeyMaterial? = nil
            if let reuseKeys {
                let previous = try SimulatorOptions.loadImage(reuseKeys)
                guard let material = CPSKeyMaterial(image: previous) else {
                    throw CLIError(kind: "image", message: "\(reuseKeys) holds no CPx keys and certificates to reuse", exitCode: CarteExit.invalidInput)
                }
                keys = material
            }
            do {
                return try CPSPersonaCompiler.compile(parsed, pki: testPKI, keys: keys, source: persona)
            } catch {
                throw CLIError(kind: "image", message: "cannot build \(persona): \(error.message)", exitCode: CarteExit.invalidInput)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the card images built into carte.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            _ = global.makeLogger()
            if global.json {
                Output.printJSON(ImageCheckReport(results: BundledImages.all.filter { !CPSPersonaCompiler.isPersona($0.text) && !ApCVPersonaCompiler.isPersona($0.text) }.map { b in
                    let image = try? SimulatorOptions.loadImage("bundled:" + b.path)
                    return .init(file: "bundled:" + b.path, valid: image != nil, error: nil, summary: image.map(ImageSummary.init))
                }))
                return
            }
            for b in BundledImages.all {
                if CPSPersonaCompiler.isPersona(b.text) {
                    let name = (try? CPSPersonaCompiler.load(text: b.text, source: b.path))?.name ?? "(invalid)"
                    print("bundled:\(b.path)  \(name) — CPx persona: carte image build bundled:\(b.path) -o IMAGE")
                    continue
                }
                if ApCVPersonaCompiler.isPersona(b.text) {
                    let name = (try? ApCVPersonaCompiler.load(text: b.text, source: b.path))?.name ?? "(invalid)"
                    print("bundled:\(b.path)  \(name) — phone persona: carte image build bundled:\(b.path) -o IMAGE")
                    continue
                }
                let image = try? SimulatorOptions.loadImage("bundled:" + b.path)
                print("bundled:\(b.path)  \(image?.name ?? "(invalid)")\(image?.synthetic == true ? " — synthetic" : "")")
            }
        }
    }
}

/// A card image described for people and JSON.
struct ImageSummary: Encodable {
    let name: String
    let synthetic: Bool
    let atr: String
    let card: String?
    let cardProtocol: String
    let t0Responses: Bool
    let files: [String]
    let pins: [String]
    /// The private keys: reference, usages and use condition (never the key itself).
    let keys: [String]

    init(_ image: CardImage) {
        name = image.name
        synthetic = image.synthetic
        atr = image.atr.hexString()
        card = KnownATR.identify(image.atr).first?.label
        cardProtocol = image.cardProtocol.description
        t0Responses = image.behaviour.t0Responses
        var lines: [String] = []
        func walk(_ df: CardImage.DedicatedFile, _ indent: String) {
            var head = indent + "DF"
            if let fid = df.fid { head += " \(fid.hex)" }
            if let aid = df.aid { head += " AID \(aid.hexString(separator: ""))" }
            if let label = df.label { head += " \"\(label)\"" }
            lines.append(head)
            for child in df.children {
                switch child {
                case .dedicated(let sub): walk(sub, indent + "  ")
                case .elementary(let ef):
                    var line = indent + "  EF"
                    if let fid = ef.fid { line += " \(fid.hex)" }
                    if let sfi = ef.sfi { line += " SFI \(sfi)" }
                    if let label = ef.label { line += " \"\(label)\"" }
                    switch ef.content {
                    case .transparent(let bytes): line += ", \(bytes.count) bytes"
                    case .records(let records): line += ", \(records.count) records"
                    }
                    if ef.read != .always { line += ", read \(ef.read)" }
                    if ef.synthetic { line += ", synthetic" }
                    lines.append(line)
                }
            }
        }
        walk(image.root, "")
        files = lines
        // PIN values are never shown: only reference, tries and label.
        pins = image.pins.map { "PIN \($0.reference.hex)\($0.label.map { " \"\($0)\"" } ?? ""): \($0.remainingTries)/\($0.maxTries) tries" }
        keys = image.keys.map { k in
            let bits = (try? RSAPrivateKey(pem: k.privateKeyPEM)).map { " RSA \($0.modulusBytes * 8)," } ?? ""
            return "key \(k.reference.hex)\(k.label.map { " \"\($0)\"" } ?? ""):\(bits) \(CardImage.Key.Usage.allCases.filter(k.usages.contains).map(\.rawValue).joined(separator: "/")), use \(k.use)"
        }
    }

    var text: String {
        var out = ["\(name)\(synthetic ? " — synthetic" : "")", "ATR \(atr) (\(card ?? "unknown card")), \(cardProtocol)\(t0Responses ? ", answers 61xx/6Cxx" : "")"]
        out += files
        out += pins
        out += keys
        return out.joined(separator: "\n")
    }
}

/// `carte image check --json` / `carte image list --json` output, schema `carte.image-check/1` (docs/json.md).
struct ImageCheckReport: Encodable {
    var schema = "carte.image-check/1"
    let results: [Result]
    struct Result: Encodable {
        let file: String
        let valid: Bool
        let error: String?
        let summary: ImageSummary?
    }
}
