// libcarte: the C API of include/carte.h (Sources/CCarteAPI/include/carte.h), over CarteKit.
//
// Every exported function checks its pointers, looks its handles up in a registry of live handles
// (so a NULL, freed or foreign handle is an error code, not a crash), runs the async Swift work on
// the concurrency pool while the calling C thread waits, and turns every Swift error into a status
// code and a message kept in the context.

public import CCarteAPI
import CarteApCV
import CarteBundledImages
import CarteCPS
import CarteCore
import CarteCrypto
import CarteKit
import CartePCSC
import CarteEmulator
import CarteImages
import CarteVitale
import Dispatch
import Foundation
import Synchronization

// MARK: - Handles

/// What a registered handle is.
enum HandleKind { case context, vitale, cpx }

/// Live handles. A handle is an id from a counter that never repeats (never an address), so a freed
/// handle stays invalid even when the allocator reuses its object's memory.
let liveHandles = Mutex<(next: UInt, objects: [UInt: (kind: HandleKind, object: any Sendable & AnyObject)])>((0x1000, [:]))

func register(_ object: any Sendable & AnyObject, _ kind: HandleKind) -> OpaquePointer {
    let id = liveHandles.withLock { h -> UInt in
        let id = h.next
        h.next += 16  // aligned like a pointer, for bindings that check
        h.objects[id] = (kind, object)
        return id
    }
    return OpaquePointer(bitPattern: id)!
}

/// The live object of `pointer` if it is a handle of `kind`. The strong reference is taken under the
/// registry's lock, so a free on another thread cannot release the object while it is in use.
func lookUp<T: AnyObject & Sendable>(_ pointer: OpaquePointer?, _ kind: HandleKind, as _: T.Type) -> T? {
    guard let pointer else { return nil }
    let id = UInt(bitPattern: pointer)
    return liveHandles.withLock { h -> T? in
        guard let entry = h.objects[id], entry.kind == kind else { return nil }
        return entry.object as? T
    }
}

/// Removes the handle and returns its object (released when the caller drops it), or `nil` when
/// `pointer` is not a live handle of `kind`.
func unregister(_ pointer: OpaquePointer?, _ kind: HandleKind) -> (any Sendable & AnyObject)? {
    guard let pointer else { return nil }
    let id = UInt(bitPattern: pointer)
    return liveHandles.withLock { h -> (any Sendable & AnyObject)? in
        guard let entry = h.objects[id], entry.kind == kind else { return nil }
        h.objects[id] = nil
        return entry.object
    }
}

/// Carries a value out of a detached task to the waiting C thread.
final class Handoff<T>: @unchecked Sendable {
    var value: T?
    let done = DispatchSemaphore(value: 0)
}

/// Runs async work on Swift's concurrency pool while the calling (C) thread waits on a semaphore.
/// The caller must be a thread of its own (any thread of a C, C++, C# or Delphi program): a caller
/// that is itself a task of the pool would hold one of its threads while it waits (docs/capi.md).
func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let handoff = Handoff<T>()
    Task.detached {
        handoff.value = await body()
        handoff.done.signal()
    }
    handoff.done.wait()
    return handoff.value!
}

// MARK: - Status

extension carte_status {
    static let ok = CARTE_OK
}

/// A failure: its status and message (never a PIN: CarteKit's errors do not carry one).
struct Failure: Error {
    var status: carte_status
    var message: String
    init(_ status: carte_status, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ error: CarteKitError) {
        message = error.description
        switch error {
        case .noSuchReader: status = CARTE_E_NO_READER
        case .noCard, .noReaderPair: status = CARTE_E_NO_CARD
        case .wrongCard: status = CARTE_E_WRONG_CARD
        case .timeout: status = CARTE_E_TIMEOUT
        case .card(.noSuchReader): status = CARTE_E_NO_READER
        case .card(.noCard): status = CARTE_E_NO_CARD
        case .card(.cancelled): status = CARTE_E_TIMEOUT
        case .cancelled, .card: status = CARTE_E_CARD
        case .vitale(let v):
            switch v {
            case .malformed: status = CARTE_E_DATA
            case .notAVitale: status = CARTE_E_WRONG_CARD
            default: status = CARTE_E_CARD
            }
        case .cpx(let c): status = Failure(c).status
        case .apcv(let a):
            switch a.category {
            case .malformed: status = CARTE_E_DATA
            case .refused: status = CARTE_E_TOKEN_REFUSED
            case .unavailable:
                if case .notAnApCV = a { status = CARTE_E_WRONG_CARD } else { status = CARTE_E_CARD }
            case .internal: status = CARTE_E_INTERNAL
            }
        }
    }

    init(_ error: CPSError) {
        message = error.description
        switch error {
        case .wrongPIN: status = CARTE_E_WRONG_PIN
        case .pinBlocked, .pukBlocked: status = CARTE_E_PIN_BLOCKED
        case .pinRequired: status = CARTE_E_PIN_REQUIRED
        case .invalidPINFormat: status = CARTE_E_INVALID_ARGUMENT
        case .malformed: status = CARTE_E_DATA
        case .notACPS: status = CARTE_E_WRONG_CARD
        case .unsupported: status = CARTE_E_UNSUPPORTED
        case .crypto: status = CARTE_E_DATA
        case .pinPad(.cancelled): status = CARTE_E_PIN_CANCELLED
        case .pinPad(.timeout): status = CARTE_E_TIMEOUT
        case .pinPad(.lengthOutOfRange), .pinPad(.confirmationMismatch): status = CARTE_E_PIN_ENTRY
        case .unreadable, .operationRefused, .card: status = CARTE_E_CARD
        }
    }
}

// MARK: - Context

final class Context: @unchecked Sendable {
    let manager: ReaderManager
    let simulator: SimulatorBackend?
    /// The last failure's message.
    let lastError = Mutex("")
    /// Events since the context was made.
    let events = EventQueue()
    var pump: Task<Void, Never>?

    init(backend: carte_backend) {
        // Phones with the (synthetic) appli carte Vitale resolve through the simulated service in
        // process, which knows the bundled phones (the real service is not public).
        let resolver = Context.apcvResolver
        if backend == CARTE_BACKEND_SIMULATOR {
            let sim = SimulatorBackend(profiles: [.biFente, .contactless])
            simulator = sim
            manager = ReaderManager(backend: sim, apcvResolver: resolver)
        } else {
            simulator = nil
            manager = ReaderManager(backend: PCSCBackend(), apcvResolver: resolver)
        }
        // The subscription exists before carte_context_new returns: no event after it is lost.
        let stream = manager.events()
        let events = self.events
        pump = Task.detached {
            for await event in stream { events.push(event) }
        }
    }

    /// Stops the event subscription and waits until it has ended, so nothing of it outlives the context.
    func shutdown() {
        guard let pump else { return }
        pump.cancel()
        // Bounded: a backend whose event source is slow to stop (a PC/SC status wait) cannot hold the caller.
        let ended = DispatchSemaphore(value: 0)
        Task.detached {
            await pump.value
            ended.signal()
        }
        _ = ended.wait(timeout: .now() + .seconds(2))
        self.pump = nil
    }

    deinit { pump?.cancel() }

    /// The simulated apCV service of the bundled phones, built once per process (its single-use
    /// record is shared by every context).
    static let apcvResolver: any ApCVResolver = blocking {
        let phones = BundledImages.apcvImages.compactMap { try? CardImageLoader.load(text: $0.text, source: "bundled:" + $0.path) }
        let software = ApCVProtocol.Configuration().softwareID
        do throws(ApCVSimulation.SetupError) {
            let service = try await ApCVSimulation.service(phones: phones, loadImage: { spec in
                guard spec.hasPrefix("bundled:"), let b = BundledImages.image(at: String(spec.dropFirst("bundled:".count))) else {
                    throw Failure(CARTE_E_DATA, "no bundled image \(spec)")
                }
                return try CardImageLoader.load(text: b.text, source: spec)
            })
            return service.resolver(for: software) as any ApCVResolver
        } catch {
            return UnavailableResolver(softwareID: software, reason: error.description) as any ApCVResolver
        }
    }

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

/// A resolver that says why the simulated service could not be built (never silently absent).
struct UnavailableResolver: ApCVResolver {
    let softwareID: String
    let reason: String
    func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard { throw .serviceUnavailable(reason) }
}

/// Events waiting for carte_wait_event, and a semaphore counting them.
final class EventQueue: Sendable {
    let items = Mutex<[CardEvent]>([])
    let arrivals = DispatchSemaphore(value: 0)

    func push(_ event: CardEvent) {
        items.withLock { $0.append(event) }
        arrivals.signal()
    }

    /// The next event, waiting up to `milliseconds`.
    func pop(waiting milliseconds: Int) -> CardEvent? {
        guard arrivals.wait(timeout: .now() + .milliseconds(milliseconds)) == .success else { return nil }
        return items.withLock { $0.removeFirst() }
    }
}

/// Writes `text` with its NUL into (buf, size); sets *needed.
func write(_ text: String, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    let bytes = Array(text.utf8)
    needed?.pointee = bytes.count + 1
    guard let buf, size >= bytes.count + 1 else { return CARTE_E_BUFFER_TOO_SMALL }
    bytes.withUnsafeBufferPointer { b in
        buf.withMemoryRebound(to: UInt8.self, capacity: size) { dst in
            if let base = b.baseAddress { dst.update(from: base, count: bytes.count) }
            dst[bytes.count] = 0
        }
    }
    return CARTE_OK
}

/// Copies `text` into a fixed char array of a C struct (truncated on a UTF-8 boundary, NUL-terminated).
func copyFixed<T>(_ text: String, into field: inout T) {
    withUnsafeMutableBytes(of: &field) { raw in
        var bytes = Array(text.utf8)
        if bytes.count > raw.count - 1 {
            bytes = Array(bytes.prefix(raw.count - 1))
            // Drop a character the cut left incomplete: find its lead byte and compare its length.
            var continuation = 0
            while continuation < bytes.count, bytes[bytes.count - 1 - continuation] & 0xC0 == 0x80 { continuation += 1 }
            let leadIndex = bytes.count - 1 - continuation
            if leadIndex >= 0, bytes[leadIndex] >= 0xC0 {
                let lead = bytes[leadIndex]
                let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
                if continuation + 1 < length { bytes.removeLast(continuation + 1) }
            }
        }
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
}

func string(_ pointer: UnsafePointer<CChar>?) -> String? {
    guard let pointer else { return nil }
    return String(validatingCString: pointer)
}

func kindCode(_ kind: CardKind?) -> Int32 {
    switch kind {
    case nil: return Int32(CARTE_CARD_NONE.rawValue)
    case .vitale1?: return Int32(CARTE_CARD_VITALE1.rawValue)
    case .vitale2?: return Int32(CARTE_CARD_VITALE2.rawValue)
    case .cps3?: return Int32(CARTE_CARD_CPS3.rawValue)
    case .cps3Contactless?: return Int32(CARTE_CARD_CPS3_CONTACTLESS.rawValue)
    case .cps4?: return Int32(CARTE_CARD_CPS4.rawValue)
    case .apcv?: return Int32(CARTE_CARD_APCV.rawValue)
    case .unknown?: return Int32(CARTE_CARD_UNKNOWN.rawValue)
    }
}

@_cdecl("carte_context_new")
public func carte_context_new(_ backend: carte_backend, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> carte_status {
    guard let out else { return CARTE_E_INVALID_ARGUMENT }
    out.pointee = nil
    guard backend == CARTE_BACKEND_PCSC || backend == CARTE_BACKEND_SIMULATOR else { return CARTE_E_INVALID_ARGUMENT }
    out.pointee = register(Context(backend: backend), .context)
    return CARTE_OK
}

@_cdecl("carte_context_free")
public func carte_context_free(_ ctx: OpaquePointer?) {
    guard let handle = unregister(ctx, .context) as? Context else { return }
    handle.shutdown()
}

@_cdecl("carte_last_error")
public func carte_last_error(_ ctx: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ needed: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self) else { return CARTE_E_INVALID_ARGUMENT }
    return write(c.lastError.withLock { $0 }, buf, size, needed)
}

// MARK: - Readers and events

@_cdecl("carte_list_readers")
public func carte_list_readers(_ ctx: OpaquePointer?, _ readers: UnsafeMutablePointer<carte_reader>?, _ capacity: Int, _ count: UnsafeMutablePointer<Int>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let count else { return CARTE_E_INVALID_ARGUMENT }
    guard capacity == 0 || readers != nil else { return CARTE_E_INVALID_ARGUMENT }
    let manager = c.manager
    let result: Result<[ReaderManager.Slot], CarteKitError> = blocking {
        do throws(CarteKitError) { return .success(try await manager.slots()) } catch { return .failure(error) }
    }
    let slots: [ReaderManager.Slot]
    switch result {
    case .success(let s): slots = s
    case .failure(let e): return c.fail(Failure(e))
    }
    count.pointee = slots.count
    for (i, s) in slots.enumerated() where i < capacity {
        var r = carte_reader()
        copyFixed(s.info.name, into: &r.name)
        copyFixed(s.info.physicalReader, into: &r.physical_reader)
        r.slot = Int32(s.info.slot)
        r.slot_count = Int32(s.info.slotCount)
        r.contactless = s.info.isContactless ? 1 : 0
        r.card = s.state == .mute ? Int32(CARTE_CARD_MUTE.rawValue) : kindCode(s.card)
        readers![i] = r
    }
    if capacity < slots.count { return c.fail(Failure(CARTE_E_BUFFER_TOO_SMALL, "\(slots.count) readers, room for \(capacity)")) }
    return c.succeed()
}

@_cdecl("carte_wait_event")
public func carte_wait_event(_ ctx: OpaquePointer?, _ timeoutMilliseconds: Int32, _ event: UnsafeMutablePointer<carte_event>?) -> carte_status {
    guard let c = lookUp(ctx, .context, as: Context.self), let event, timeoutMilliseconds >= 0 else { return CARTE_E_INVALID_ARGUMENT }
    guard let e = c.events.pop(waiting: Int(timeoutMilliseconds)) else {
        return c.fail(Failure(CARTE_E_TIMEOUT, "no event within \(timeoutMilliseconds) ms"))
    }
    var out = carte_event()
    switch e.kind {
    case .readerAdded: out.type = Int32(CARTE_EVENT_READER_ADDED.rawValue)
    case .readerRemoved: out.type = Int32(CARTE_EVENT_READER_REMOVED.rawValue)
    case .cardInserted: out.type = Int32(CARTE_EVENT_CARD_INSERTED.rawValue)
    case .cardRemoved: out.type = Int32(CARTE_EVENT_CARD_REMOVED.rawValue)
    case .cardMute: out.type = Int32(CARTE_EVENT_CARD_MUTE.rawValue)
    }
    out.card = e.kind == .cardMute ? Int32(CARTE_CARD_MUTE.rawValue) : kindCode(e.card)
    out.slot = Int32(e.slot ?? -1)
    copyFixed(e.reader, into: &out.reader)
    copyFixed(e.physicalReader ?? "", into: &out.physical_reader)
    event.pointee = out
    return c.succeed()
}
