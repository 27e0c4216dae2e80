public import CCarteAPI
import CarteBundledImages
import CarteCPS
import CarteCore
import CarteCrypto
import CarteKit
import CarteEmulator
import CarteImages
#if canImport(CarteSimDaemon)
import CarteSimDaemon  // Linux only: the simulator daemon runs behind pcscd
#endif
import CarteVitale
import Foundation
import Synchronization

// MARK: - Carte Vitale

final class VitaleHandle: Sendable {
    let card: VitaleCard
    let json: String
    init(card: VitaleCard, json: String) {
        self.card = card
        self.json = json
    }
}

@_cdecl("carte_read_vitale")
public func carte_read_vitale(_ ctx: OpaquePointer?, _ reader: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let out else { return CARTE_E_INVALID_ARGUMENT }
    out.pointee = nil
    let name = string(reader)
    if reader != nil && name == nil { return c.fail(Failure(CARTE_E_INVALID_ARGUMENT, "the reader name is not UTF-8")) }
    let manager = c.manager
    let result: Result<(VitaleCard, String), Failure> = blocking {
        do throws(CarteKitError) {
            let slot = try await manager.slot(name, wanted: "a Carte Vitale") { $0.isPatientIdentity }
            return .success((try await manager.readVitale(on: slot), slot))
        } catch {
            return .failure(Failure(error))
        }
    }
    switch result {
    case .failure(let f): return c.fail(f)
    case .success(let (card, slot)):
        let day = (try? VitaleDate.todayInParis()) ?? VitaleDate("19700101")!
        out.pointee = register(VitaleHandle(card: card, json: jsonText(VitaleReport(card, reader: slot, on: day))), .vitale)
        return c.succeed()
    }
}

@_cdecl("carte_read_vitale_qr")
public func carte_read_vitale_qr(_ ctx: OpaquePointer?, _ payload: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let out else { return CARTE_E_INVALID_ARGUMENT }
    out.pointee = nil
    guard let text = string(payload) else { return c.fail(Failure(CARTE_E_INVALID_ARGUMENT, "the QR payload is NULL or not UTF-8")) }
    let manager = c.manager
    let result: Result<VitaleCard, Failure> = blocking {
        do throws(CarteKitError) { return .success(try await manager.readVitale(qrPayload: text)) } catch { return .failure(Failure(error)) }
    }
    switch result {
    case .failure(let f): return c.fail(f)
    case .success(let card):
        let day = (try? VitaleDate.todayInParis()) ?? VitaleDate("19700101")!
        out.pointee = register(VitaleHandle(card: card, json: jsonText(VitaleReport(card, reader: "qr", on: day))), .vitale)
        return c.succeed()
    }
}

@_cdecl("carte_vitale_free")
public func carte_vitale_free(_ vitale: OpaquePointer?) {
    _ = unregister(vitale, .vitale)
}

@_cdecl("carte_vitale_json")
public func carte_vitale_json(_ vitale: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let v = lookUp(vitale, .vitale, as: VitaleHandle.self) else { return CARTE_E_INVALID_ARGUMENT }
    return write(v.json, buf, size, needed)
}

@_cdecl("carte_vitale_beneficiary_count")
public func carte_vitale_beneficiary_count(_ vitale: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let v = lookUp(vitale, .vitale, as: VitaleHandle.self), let count else { return CARTE_E_INVALID_ARGUMENT }
    count.pointee = v.card.beneficiaries.count
    return CARTE_OK
}

@_cdecl("carte_vitale_beneficiary_field")
public func carte_vitale_beneficiary_field(_ vitale: OpaquePointer?, _ index: Int, _ field: carte_vitale_field, _ buf: UnsafeMutablePointer<CChar>?,
                                           _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let v = lookUp(vitale, .vitale, as: VitaleHandle.self), index >= 0, index < v.card.beneficiaries.count else { return CARTE_E_INVALID_ARGUMENT }
    let b = v.card.beneficiaries[index]
    let text: String
    switch field {
    case CARTE_VITALE_SURNAME: text = b.surname ?? ""
    case CARTE_VITALE_FIRST_NAME: text = b.firstName ?? ""
    case CARTE_VITALE_BIRTH_DATE: text = b.birthDate?.raw ?? ""
    case CARTE_VITALE_NIR: text = b.nir?.description ?? ""
    case CARTE_VITALE_RIGHTS:
        let day = (try? VitaleDate.todayInParis()) ?? VitaleDate("19700101")!
        text = b.rightsOpen(on: day).map { $0 ? "open" : "closed" } ?? "unknown"
    case CARTE_VITALE_BIRTH_RANK: text = b.birthRank.map(String.init) ?? ""
    case CARTE_VITALE_QUALITY: text = b.quality ?? ""
    default: return CARTE_E_INVALID_ARGUMENT
    }
    return write(text, buf, size, needed)
}

// MARK: - CPx

final class CPxHandle: @unchecked Sendable {
    let reader: String
    let connection: any CardConnection
    let cps: CPSReader
    init(reader: String, connection: any CardConnection, cps: CPSReader) {
        self.reader = reader
        self.connection = connection
        self.cps = cps
    }
    /// The message of the session's last failure.
    let lastError = Mutex("")

    /// Records a failure and returns its status.
    func fail(_ failure: Failure) -> carte_status {
        lastError.withLock { $0 = failure.message }
        return failure.status
    }

    func succeed() -> carte_status {
        lastError.withLock { $0 = "" }
        return CARTE_OK
    }
}

@_cdecl("carte_cpx_open")
public func carte_cpx_open(_ ctx: OpaquePointer?, _ reader: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let out else { return CARTE_E_INVALID_ARGUMENT }
    out.pointee = nil
    let name = string(reader)
    if reader != nil && name == nil { return c.fail(Failure(CARTE_E_INVALID_ARGUMENT, "the reader name is not UTF-8")) }
    let manager = c.manager
    let result: Result<CPxHandle, Failure> = blocking {
        do {
            let slot = try await manager.slot(name, wanted: "a CPx card") { $0.isCPx }
            let connection: any CardConnection
            do throws(CardError) { connection = try await manager.backend.connect(to: slot, share: .exclusive, protocols: [.t0, .t1]) } catch { throw CarteKitError.card(error) }
            let atr = await connection.atrBytes
            guard let generation = CPSGeneration.from(atr: atr) else {
                try? await connection.disconnect(.leave)
                throw CarteKitError.wrongCard(reader: slot, expected: "a CPx card", found: CardKind.fromATR(atr))
            }
            let channel = CardChannel(transport: connection, trace: Trace(capacity: 256))
            return .success(CPxHandle(reader: slot, connection: connection, cps: CPSReader(channel: channel, generation: generation)))
        } catch let e as CarteKitError {
            return .failure(Failure(e))
        } catch {
            return .failure(Failure(CARTE_E_INTERNAL, "\(error)"))
        }
    }
    switch result {
    case .failure(let f): return c.fail(f)
    case .success(let handle):
        out.pointee = register(handle, .cpx)
        return c.succeed()
    }
}

@_cdecl("carte_cpx_free")
public func carte_cpx_free(_ cpx: OpaquePointer?) {
    guard let handle = unregister(cpx, .cpx) as? CPxHandle else { return }
    // The card is released here, on the caller's thread, before the function returns.
    let connection = handle.connection
    _ = blocking { try? await connection.disconnect(.leave) }
}

@_cdecl("carte_cpx_last_error")
public func carte_cpx_last_error(_ cpx: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self) else { return CARTE_E_INVALID_ARGUMENT }
    return write(h.lastError.withLock { $0 }, buf, size, needed)
}

/// The bundled test root and intermediate: the certificates of CarteKit's images chain to them.
let bundledTrust: CertificateTrust = {
    let f = BundledImages.testPKI
    let roots = (try? X509Certificate(pem: f.root)).map { [$0] } ?? []
    let intermediates = (try? X509Certificate(pem: f.intermediate)).map { [$0] } ?? []
    return CertificateTrust(roots: roots, intermediates: intermediates)
}()

@_cdecl("carte_cpx_info_json")
public func carte_cpx_info_json(_ cpx: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self) else { return CARTE_E_INVALID_ARGUMENT }
    let result: Result<String, Failure> = blocking {
        do throws(CPSError) {
            let card = try await h.cps.read()
            let pin = h.cps.generation == .cps3Contactless ? nil : try? await h.cps.pinStatus()
            return .success(jsonText(CPSReport(card, reader: h.reader, pin: pin, roots: bundledTrust)))
        } catch {
            return .failure(Failure(error))
        }
    }
    switch result {
    case .failure(let f): return h.fail(f)
    case .success(let json):
        _ = h.succeed()
        return write(json, buf, size, needed)
    }
}

@_cdecl("carte_cpx_pin_status")
public func carte_cpx_pin_status(_ cpx: OpaquePointer?, _ triesLeft: UnsafeMutablePointer<Int32>?, _ maxTries: UnsafeMutablePointer<Int32>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self), let triesLeft else { return CARTE_E_INVALID_ARGUMENT }
    let result: Result<PINStatus, Failure> = blocking {
        do throws(CPSError) { return .success(try await h.cps.pinStatus()) } catch { return .failure(Failure(error)) }
    }
    switch result {
    case .failure(let f): return h.fail(f)
    case .success(let s):
        // Card data: a counter that does not fit is the card's fault, never a crash.
        guard let tries = Int32(exactly: s.triesLeft), let maximum = Int32(exactly: s.maxTries ?? -1) else {
            return h.fail(Failure(CARTE_E_DATA, "the card gives an impossible PIN try counter"))
        }
        triesLeft.pointee = tries
        maxTries?.pointee = maximum
        return h.succeed()
    }
}

@_cdecl("carte_cpx_verify_pin")
public func carte_cpx_verify_pin(_ cpx: OpaquePointer?, _ pin: UnsafePointer<CChar>?, _ triesLeft: UnsafeMutablePointer<Int32>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self), let text = string(pin) else { return CARTE_E_INVALID_ARGUMENT }
    let code: PINCode
    do { code = try PINCode(text) } catch { return h.fail(Failure(error)) }
    let result: Result<Void, CPSError> = blocking {
        do throws(CPSError) { try await h.cps.verifyPIN(code); return .success(()) } catch { return .failure(error) }
    }
    switch result {
    case .success: return h.succeed()
    case .failure(let e):
        if case .wrongPIN(_, let tries) = e { triesLeft?.pointee = Int32(clamping: tries) }
        if case .pinBlocked = e { triesLeft?.pointee = 0 }
        return h.fail(Failure(e))
    }
}

@_cdecl("carte_cpx_has_pin_pad")
public func carte_cpx_has_pin_pad(_ cpx: OpaquePointer?, _ hasPad: UnsafeMutablePointer<Int32>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self), let hasPad else { return CARTE_E_INVALID_ARGUMENT }
    let pad: Bool = blocking { await h.cps.pinPad() != nil }
    hasPad.pointee = pad ? 1 : 0
    return h.succeed()
}

@_cdecl("carte_cpx_verify_pin_on_pad")
public func carte_cpx_verify_pin_on_pad(_ cpx: OpaquePointer?, _ triesLeft: UnsafeMutablePointer<Int32>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self) else { return CARTE_E_INVALID_ARGUMENT }
    let result: Result<Void, CPSError> = blocking {
        do throws(CPSError) { try await h.cps.verifyPINOnPad(); return .success(()) } catch { return .failure(error) }
    }
    switch result {
    case .success: return h.succeed()
    case .failure(let e):
        if case .wrongPIN(_, let tries) = e { triesLeft?.pointee = Int32(clamping: tries) }
        if case .pinBlocked = e { triesLeft?.pointee = 0 }
        return h.fail(Failure(e))
    }
}

@_cdecl("carte_cpx_sign")
public func carte_cpx_sign(_ cpx: OpaquePointer?, _ data: UnsafePointer<UInt8>?, _ dataLength: Int, _ sig: UnsafeMutablePointer<UInt8>?,
                           _ sigSize: Int, _ sigLength: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let h = lookUp(cpx, .cpx, as: CPxHandle.self), let sigLength, dataLength >= 0, data != nil || dataLength == 0 else { return CARTE_E_INVALID_ARGUMENT }
    let message = dataLength == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: dataLength))
    // The signature's size, from the signature certificate, before anything is signed.
    let sizeResult: Result<Int, Failure> = blocking {
        do throws(CPSError) {
            guard let cert = try await h.cps.certificates().first(where: { $0.role == .signature }) else {
                return .failure(Failure(CARTE_E_UNSUPPORTED, "the card has no signature certificate"))
            }
            do throws(CryptoError) { return .success(try cert.certificate.publicKey().modulusBytes) } catch { return .failure(Failure(CARTE_E_DATA, error.message)) }
        } catch {
            return .failure(Failure(error))
        }
    }
    let size: Int
    switch sizeResult {
    case .failure(let f): return h.fail(f)
    case .success(let s): size = s
    }
    sigLength.pointee = size
    guard let sig, sigSize >= size else { return h.fail(Failure(CARTE_E_BUFFER_TOO_SMALL, "the signature is \(size) bytes, the buffer \(sigSize)")) }
    let result: Result<[UInt8], Failure> = blocking {
        do throws(CPSError) { return .success(try await h.cps.sign(message)) } catch { return .failure(Failure(error)) }
    }
    switch result {
    case .failure(let f): return h.fail(f)
    case .success(let signature):
        guard signature.count <= sigSize else { return h.fail(Failure(CARTE_E_INTERNAL, "the card's signature is longer than its key")) }
        sig.update(from: signature, count: signature.count)
        sigLength.pointee = signature.count
        return h.succeed()
    }
}

// MARK: - Simulator

func loadImage(_ spec: String) throws(Failure) -> CardImage {
    do {
        if spec.hasPrefix("bundled:") {
            let path = String(spec.dropFirst("bundled:".count))
            guard let b = BundledImages.image(at: path) else { throw Failure(CARTE_E_INVALID_ARGUMENT, "no bundled image \"\(path)\"") }
            return try CardImageLoader.load(text: b.text, source: spec)
        }
        return try CardImageLoader.load(path: spec)
    } catch let e as CardImageError {
        throw Failure(CARTE_E_DATA, e.description)
    } catch let f as Failure {
        throw f
    } catch {
        throw Failure(CARTE_E_INTERNAL, "\(error)")
    }
}

@_cdecl("carte_sim_insert")
public func carte_sim_insert(_ ctx: OpaquePointer?, _ reader: UnsafePointer<CChar>?, _ image: UnsafePointer<CChar>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let name = string(reader), let spec = string(image) else { return CARTE_E_INVALID_ARGUMENT }
    guard let sim = c.simulator else { return c.fail(Failure(CARTE_E_UNSUPPORTED, "carte_sim_insert needs a CARTE_BACKEND_SIMULATOR context; drive a daemon with carte_sim_daemon_insert")) }
    do {
        try sim.insert(try loadImage(spec), into: name)
    } catch let f as Failure {
        return c.fail(f)
    } catch let e as CardError {
        return c.fail(Failure(CarteKitError.card(e)))
    } catch {
        return c.fail(Failure(CARTE_E_INTERNAL, "\(error)"))
    }
    return c.succeed()
}

@_cdecl("carte_sim_remove")
public func carte_sim_remove(_ ctx: OpaquePointer?, _ reader: UnsafePointer<CChar>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let name = string(reader) else { return CARTE_E_INVALID_ARGUMENT }
    guard let sim = c.simulator else { return c.fail(Failure(CARTE_E_UNSUPPORTED, "carte_sim_remove needs a CARTE_BACKEND_SIMULATOR context")) }
    do { try sim.remove(from: name) } catch { return c.fail(Failure(CarteKitError.card(error))) }
    return c.succeed()
}

func daemon(_ socket: UnsafePointer<CChar>?, _ request: [String: any Sendable]) -> carte_status {
    guard let path = string(socket) else { return CARTE_E_INVALID_ARGUMENT }
    #if canImport(CarteSimDaemon)
    do {
        let answer = try SimulatorControlClient(path: path).send(request)
        guard answer["ok"] as? Bool == true else {
            switch answer["kind"] as? String {
            case "reader": return CARTE_E_NO_READER
            case "image": return CARTE_E_DATA
            default: return CARTE_E_INVALID_ARGUMENT
            }
        }
        return CARTE_OK
    } catch {
        // No daemon on the socket (or it died): its virtual readers are unavailable.
        return CARTE_E_NO_READER
    }
    #else
    // Windows and macOS: no simulator daemon (virtual readers there go through vsmartcard; docs/platforms.md).
    _ = (path, request)
    return CARTE_E_UNSUPPORTED
    #endif
}

@_cdecl("carte_sim_daemon_insert")
public func carte_sim_daemon_insert(_ socket: UnsafePointer<CChar>?, _ readerIndex: Int32, _ slotIndex: Int32, _ image: UnsafePointer<CChar>?) -> carte_status {
    guard let spec = string(image), readerIndex >= 0, slotIndex >= 0 else { return CARTE_E_INVALID_ARGUMENT }
    return daemon(socket, ["op": "insert", "reader": Int(readerIndex), "slot": Int(slotIndex), "image": spec])
}

@_cdecl("carte_sim_daemon_remove")
public func carte_sim_daemon_remove(_ socket: UnsafePointer<CChar>?, _ readerIndex: Int32, _ slotIndex: Int32) -> carte_status {
    guard readerIndex >= 0, slotIndex >= 0 else { return CARTE_E_INVALID_ARGUMENT }
    return daemon(socket, ["op": "remove", "reader": Int(readerIndex), "slot": Int(slotIndex)])
}
