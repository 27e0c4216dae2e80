public import CarteKit
import CarteCore
import CarteCPS
import CarteCrypto
public import CarteVitale
import Foundation
public import Logging
import Synchronization

/// The methods of `carte.agent/1` over a ``ReaderManager`` (docs/agent.md): what a page may ask of the
/// workstation's readers and cards. One card operation per slot at a time (another one gets `busy`).
/// The PIN a page sends is used once, for the call that carries it, and is never logged or kept.
public final class AgentService: Sendable {
    /// The readers.
    public let manager: ReaderManager
    /// The roots the CPx certificates are checked against.
    public let trust: CertificateTrust
    /// The version the agent reports (`carte --version`).
    public let agentVersion: String
    let logger: Logger
    /// The day rights are evaluated on (tests fix it); `nil`: today in Paris.
    let evaluationDay: VitaleDate?
    private let inUse = Mutex<Set<String>>([])
    /// Pairing codes (`nil`: pairing off).
    let pairing: AgentPairing?
    /// The allow-lists as they are now (for `pair.status`).
    let allowList: AgentAllowList?
    /// Tells the user a page asks to be paired (a desktop notification where one is available).
    let announce: @Sendable (_ origin: String, _ code: String) -> Void

    /// The methods, in the order `hello` lists them.
    public static let methods = ["hello", "readers.list", "events.subscribe", "events.unsubscribe", "vitale.read", "cpx.info", "cpx.pin.verify", "cpx.sign",
                                 "pair.request", "pair.status"]
    /// The protocol versions spoken.
    public static let versions = ["carte.agent/1"]

    /// The service for `manager`.
    /// `pairing` and `allowList` enable pairing; `announce` tells the user of a request (the code and
    /// the origin), beside the agent's log.
    public init(manager: ReaderManager, trust: CertificateTrust, agentVersion: String, logger: Logger, evaluationDay: VitaleDate? = nil,
                pairing: AgentPairing? = nil, allowList: AgentAllowList? = nil, announce: @escaping @Sendable (String, String) -> Void = { _, _ in }) {
        self.manager = manager
        self.trust = trust
        self.agentVersion = agentVersion
        self.logger = logger
        self.evaluationDay = evaluationDay
        self.pairing = pairing
        self.allowList = allowList
        self.announce = announce
    }

    /// Answers one request (not the event subscription, which the connection handles): a JSON text.
    func call(_ request: AgentRequest, caller: AgentAccess.Caller) async throws(AgentError) -> String {
        if case .pairing(let origin) = caller, !["hello", "pair.request", "pair.status"].contains(request.method) {
            throw .notAllowed(origin)
        }
        switch request.method {
        case "pair.request":
            try request.only([])
            guard case .pairing(let origin) = caller else { return AgentMessage.encode(["paired": true]) }
            guard let pairing else { throw .unsupported("pairing is off in this agent: ask for carte agent allow \(origin)") }
            let code: String
            do { code = try pairing.request(origin: origin) } catch { throw .busy(error.description) }
            logger.notice("pairing requested", metadata: ["origin": "\(origin)", "code": "\(code)"])
            announce(origin, code)
            return AgentMessage.encode(["paired": false, "code": code, "expiresIn": Int(AgentPairing.lifetime), "command": "carte agent pair \(code)"])
        case "pair.status":
            try request.only([])
            switch caller {
            case .pairing(let origin): return AgentMessage.encode(["paired": allowList?.contains(origin) == true])
            default: return AgentMessage.encode(["paired": true])
            }
        case "hello":
            try request.only([])
            let hello: [String: Any] = [
                "protocol": "carte.agent/1", "versions": AgentService.versions, "agent": "carte \(agentVersion)",
                "caller": caller.description, "methods": AgentService.methods,
                "events": CardEvent.Kind.allCases.map(\.rawValue), "schema": "carte.agent.hello/1",
            ]
            return AgentMessage.encode(hello)
        case "readers.list":
            try request.only([])
            let slots: [ReaderManager.Slot]
            do { slots = try await manager.slots() } catch { throw AgentError(error) }
            return AgentMessage.encode(["schema": "carte.agent.readers/1", "slots": slots.map(AgentService.slotJSON)])
        case "vitale.read":
            try request.only(["reader", "qr", "date"])
            return try await readVitale(request)
        case "cpx.info":
            try request.only(["reader"])
            let reader = try request.string("reader")
            return try await exclusive(reader, wanted: "a CPx card", matching: { $0.isCPx }) { name throws(AgentError) in
                do throws(CarteKitError) {
                    // One session: the card and its PIN tries (without consuming one).
                    let (card, pin) = try await manager.withSession(on: name) { session throws(CarteKitError) -> (ProfessionalCard, PINStatus?) in
                        guard case .cpx(let cpx) = session else { throw .wrongCard(reader: name, expected: "a CPx card", found: session.kind) }
                        return (try await cpx.read(), try? await cpx.pinStatus())
                    }
                    return jsonText(CPSReport(card, reader: name, pin: pin, roots: trust))
                } catch { throw AgentError(error) }
            }
        case "cpx.pin.verify":
            try request.only(["reader", "pin"])
            let reader = try request.string("reader")
            let entry = try pinEntry(request, caller: caller)
            return try await exclusive(reader, wanted: "a CPx card", matching: { $0.isCPx }) { name throws(AgentError) in
                let how: String
                do throws(CarteKitError) {
                    how = try await manager.withSession(on: name, timeout: .seconds(90)) { session throws(CarteKitError) -> String in
                        guard case .cpx(let cpx) = session else { throw .wrongCard(reader: name, expected: "a CPx card", found: session.kind) }
                        return try await AgentService.verify(cpx, entry: entry)
                    }
                } catch { throw AgentError(error) }
                logger.info("PIN verified", metadata: ["caller": "\(caller)", "reader": "\(name)", "entry": "\(how)"])
                return AgentMessage.encode(["verified": true, "entry": how, "reader": name])
            }
        case "cpx.sign":
            try request.only(["reader", "pin", "data", "hash"])
            let reader = try request.string("reader")
            let hashText = try request.string("hash", maxLength: 64)
            let dataText = try request.string("data", maxLength: 48 * 1024)
            guard (hashText == nil) != (dataText == nil) else { throw .invalidParams("give data (the bytes to sign) or hash (their SHA-256), one of them") }
            let digest: [UInt8]?
            let data: Data
            if let hashText {
                guard let h = Data(base64Encoded: hashText), h.count == 32 else { throw .invalidParams("hash must be a SHA-256 digest (32 bytes) in base64") }
                digest = Array(h)
                data = h
            } else {
                guard let encoded = dataText, let d = Data(base64Encoded: encoded) else {
                    throw .invalidParams("data must be the bytes to sign in base64 (at most 36 KiB)")
                }
                digest = nil
                data = d
            }
            let entry = try pinEntry(request, caller: caller)
            return try await exclusive(reader, wanted: "a CPx card", matching: { $0.isCPx }) { name throws(AgentError) in
                let signed: (signature: [UInt8], certificate: String?)
                do throws(CarteKitError) {
                    signed = try await manager.withSession(on: name, timeout: .seconds(90)) { session throws(CarteKitError) -> ([UInt8], String?) in
                        guard case .cpx(let cpx) = session else { throw .wrongCard(reader: name, expected: "a CPx card", found: session.kind) }
                        _ = try await AgentService.verify(cpx, entry: entry)
                        let signature: [UInt8]
                        if let digest { signature = try await cpx.sign(digest: digest) } else { signature = try await cpx.sign(Array(data)) }
                        let certificate = try? await cpx.certificates().first(where: { $0.role == .signature })
                        return (signature, certificate.map { CertificatePart($0, trust: self.trust, withPEM: true).pem ?? "" })
                    }
                } catch { throw AgentError(error) }
                // The record of who had the card sign what (the data's digest, not the data).
                logger.notice("CPx signature", metadata: ["caller": "\(caller)", "reader": "\(name)",
                                                         "sha256": "\((digest ?? SHA256.digest(Array(data))).hexString(separator: ""))"])
                var out: [String: Any] = ["algorithm": "sha256WithRSAEncryption", "signature": Data(signed.signature).base64EncodedString(), "reader": name, "origin": caller.description]
                out["certificate"] = signed.certificate ?? NSNull()
                return AgentMessage.encode(out)
            }
        default:
            throw .methodNotFound(request.method)
        }
    }

    private func readVitale(_ request: AgentRequest) async throws(AgentError) -> String {
        let day: VitaleDate
        if let text = try request.string("date") {
            guard let d = VitaleDate(iso: text) else { throw .invalidParams("date must be a calendar date YYYY-MM-DD") }
            day = d
        } else if let evaluationDay {
            day = evaluationDay
        } else {
            do { day = try VitaleDate.todayInParis() } catch { throw AgentError(error) }
        }
        if let qr = try request.string("qr", maxLength: 4096) {
            guard try request.string("reader") == nil else { throw .invalidParams("qr and reader exclude each other") }
            do throws(CarteKitError) { return jsonText(VitaleReport(try await manager.readVitale(qrPayload: qr), reader: "qr", on: day)) } catch { throw AgentError(error) }
        }
        let reader = try request.string("reader")
        return try await exclusive(reader, wanted: "a Carte Vitale", matching: { $0.isPatientIdentity }) { name throws(AgentError) in
            do throws(CarteKitError) { return jsonText(VitaleReport(try await manager.readVitale(on: name), reader: name, on: day)) } catch { throw AgentError(error) }
        }
    }

    /// How the PIN is entered: on the pad when no PIN is sent, else the PIN the caller sent (once).
    private func pinEntry(_ request: AgentRequest, caller: AgentAccess.Caller) throws(AgentError) -> PINEntry {
        guard let text = try request.string("pin", maxLength: 16) else { return .pinPad }
        do { return .host(try PINCode(text)) } catch { throw .invalidParams(error.description) }
    }

    private static func verify(_ cpx: CPxSession, entry: PINEntry) async throws(CarteKitError) -> String {
        switch entry {
        case .pinPad:
            guard await cpx.pinPad() != nil else {
                throw .cpx(.unsupported("this reader has no PIN pad: send the PIN in the call (pin)"))
            }
            try await cpx.verifyPINOnPad()
            return "pin-pad"
        case .host(let pin):
            try await cpx.verifyPIN(pin)
            return "page"
        }
    }

    /// Runs `body` on the slot named (or the first holding the card wanted), one operation per slot.
    private func exclusive(_ reader: String?, wanted: String, matching: @escaping @Sendable (CardKind) -> Bool,
                           _ body: (String) async throws(AgentError) -> String) async throws(AgentError) -> String {
        let name: String
        do { name = try await manager.slot(reader, wanted: wanted, matching: matching) } catch { throw AgentError(error) }
        guard inUse.withLock({ $0.insert(name).inserted }) else { throw .busy("another operation is using \(name)") }
        defer { _ = inUse.withLock { $0.remove(name) } }
        return try await body(name)
    }

    static func slotJSON(_ slot: ReaderManager.Slot) -> [String: Any] {
        let state: String
        switch slot.state {
        case .empty: state = "empty"
        case .present: state = "present"
        case .mute: state = "mute"
        }
        var out: [String: Any] = [
            "reader": slot.info.name, "physicalReader": slot.info.physicalReader, "slot": slot.info.slot,
            "contactless": slot.info.isContactless, "state": state,
        ]
        out["card"] = slot.card?.name ?? NSNull()
        out["role"] = slot.info.role ?? NSNull()
        return out
    }

    static func eventJSON(_ event: CardEvent) -> String {
        var out: [String: Any] = ["kind": event.kind.rawValue, "reader": event.reader]
        out["physicalReader"] = event.physicalReader ?? NSNull()
        out["slot"] = event.slot ?? NSNull()
        out["card"] = event.card?.name ?? NSNull()
        return AgentMessage.encode(out)
    }
}
