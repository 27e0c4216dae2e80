import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import Logging
import Testing

/// 2026-06-15 12:00 UTC: the day the tests check certificates on (the expired persona ended in 2024).
let testTime: Int64 = 1_781_524_800
let testDay = CardDate("20260615")!

/// A bundled CPx image by name (`medecin-liberal` → `cps/medecin-liberal.yaml`).
func cpsImage(_ name: String) throws -> CardImage {
    let b = try #require(BundledImages.image(at: "cps/\(name).yaml"), "no bundled image cps/\(name).yaml")
    return try CardImageLoader.load(text: b.text, source: b.path)
}

/// The persona a bundled image was built from.
func cpsPersona(_ name: String) throws -> CPSPersona {
    let b = try #require(BundledImages.image(at: "cps/personas/\(name).persona.yaml"))
    return try CPSPersonaCompiler.load(text: b.text, source: b.path)
}

/// The bundled test PKI.
func bundledPKI() throws -> TestPKI {
    let f = BundledImages.testPKI
    return try TestPKI.load(rootPEM: f.root, rootKeyPEM: f.rootKey, intermediatePEM: f.intermediate, intermediateKeyPEM: f.intermediateKey)
}

/// A card inserted in an in-memory reader, its channel (with a trace) and its simulated card.
struct CPSBench {
    let channel: CardChannel
    let reader: CPSReader
    let image: CardImage
    let backend: SimulatorBackend
    /// The slot the card is in (its keypad, when the reader has a PIN pad).
    var slot: VirtualSlot { backend.physicalReaders[0].slots[0] }

    /// `pinPad`: give the reader this PIN pad.
    init(_ name: String, logger: Logger? = nil, pinPad: PINPadProfile? = nil) throws {
        let image = try cpsImage(name)
        var profile: VirtualReaderProfile = image.cardProtocol == .t1 && image.atr.starts(with: [0x3B, 0x8F, 0x80, 0x01]) ? .contactless : .monoFente
        profile.pinPad = pinPad
        let backend = SimulatorBackend(profiles: [profile])
        self.backend = backend
        let slot = backend.readerNames[0]
        try backend.insert(image, into: slot)
        let connection = try backend.connectNow(to: slot)
        if let logger {
            channel = CardChannel(transport: connection, trace: Trace(), logger: logger)
        } else {
            channel = CardChannel(transport: connection, trace: Trace())
        }
        reader = try CPSReader(channel: channel, atr: image.atr)
        self.image = image
    }

    /// Sends raw bytes with no automatic exchange and returns the response bytes.
    func raw(_ hex: String) async throws -> [UInt8] {
        try await channel.transmit(bytes: try [UInt8](hex: hex), policy: .raw).encoded()
    }

    /// The commands sent so far, in hexadecimal (redacted where they carry a secret).
    var commands: [[UInt8]] { channel.trace?.events.filter { $0.direction == .toCard }.map(\.bytes) ?? [] }
}

let pin1234 = try! PINCode("1234")
let puk = try! PINCode("12345678")
