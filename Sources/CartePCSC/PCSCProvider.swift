public import CarteCore
import Foundation

/// One entry of a `SCardGetStatusChange` call, in Swift types (state words are the 32 bits every
/// platform uses; pcsc-lite's 64-bit `DWORD` never carries more).
package struct PCSCReaderState: Hashable, Sendable {
    /// `szReader`.
    package var reader: String
    /// `dwCurrentState`.
    package var currentState: UInt32
    /// `dwEventState` (set by the call).
    package var eventState: UInt32 = 0
    /// `rgbAtr[..<cbAtr]` (set by the call).
    package var atr: [UInt8] = []

    package init(reader: String, currentState: UInt32, eventState: UInt32 = 0, atr: [UInt8] = []) {
        self.reader = reader
        self.currentState = currentState
        self.eventState = eventState
        self.atr = atr
    }
}

/// What `SCardStatus` says of a connected card.
package struct PCSCCardStatus: Hashable, Sendable {
    /// The state as pcsc-lite's bit mask (see ``PCSCABI/normaliseCardStatus(_:)``).
    package var state: UInt32
    /// The active protocol.
    package var activeProtocol: UInt32
    /// The ATR.
    package var atr: [UInt8]

    package init(state: UInt32, activeProtocol: UInt32, atr: [UInt8]) {
        self.state = state
        self.activeProtocol = activeProtocol
        self.atr = atr
    }
}

/// The PC/SC library as CartePCSC sees it: Swift types only, result codes already normalised to
/// pcsc-lite's numbering (``PCSCABI/normalise(_:)``), handles as opaque 64-bit values.
///
/// ``LoadedPCSCProvider`` is the real one (the platform's library, loaded at run time);
/// `ScriptedPCSCProvider` (target CartePCSCTesting) plays each platform's behaviour for the tests.
/// Each call is a blocking C call: CartePCSC makes them on a connection's or context's own thread.
package protocol PCSCProvider: AnyObject, Sendable {
    /// How the library lays out its types (what the marshalling used).
    var abi: PCSCABI { get }
    /// How the platform behaves where PC/SC leaves room.
    var behaviour: PCSCBehaviour { get }

    /// `SCardEstablishContext(SCARD_SCOPE_SYSTEM)`.
    func establishContext() -> Result<UInt64, PCSCError>
    /// `SCardReleaseContext`.
    func releaseContext(_ context: UInt64) -> PCSCError?
    /// `SCardCancel` (callable from any thread).
    func cancel(_ context: UInt64) -> PCSCError?
    /// `SCardListReaders` (both calls; `SCARD_E_NO_READERS_AVAILABLE` is returned as is).
    func listReaders(_ context: UInt64) -> Result<[String], PCSCError>
    /// `SCardGetStatusChange`: fills each entry's event state and ATR.
    func getStatusChange(_ context: UInt64, timeoutMilliseconds: UInt32, _ states: inout [PCSCReaderState]) -> PCSCError?
    /// `SCardConnect`: the card handle and the active protocol.
    func connect(_ context: UInt64, reader: String, share: UInt32, protocols: UInt32) -> Result<(card: UInt64, activeProtocol: UInt32), PCSCError>
    /// `SCardReconnect`: the active protocol.
    func reconnect(_ card: UInt64, share: UInt32, protocols: UInt32, initialization: UInt32) -> Result<UInt32, PCSCError>
    /// `SCardDisconnect`.
    func disconnect(_ card: UInt64, disposition: UInt32) -> PCSCError?
    /// `SCardBeginTransaction`.
    func beginTransaction(_ card: UInt64) -> PCSCError?
    /// `SCardEndTransaction`.
    func endTransaction(_ card: UInt64, disposition: UInt32) -> PCSCError?
    /// `SCardTransmit` with `protocol` in both PCIs: the response's length, written into `response`.
    func transmit(_ card: UInt64, protocol: UInt32, command: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError>
    /// `SCardControl`: the answer's length, written into `output`.
    func control(_ card: UInt64, code: UInt32, input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError>
    /// `SCardStatus`.
    func status(_ card: UInt64) -> Result<PCSCCardStatus, PCSCError>
    /// `SCardGetAttrib` (both calls).
    func attribute(_ card: UInt64, id: UInt32) -> Result<[UInt8], PCSCError>
}

/// Why the PC/SC library could not be loaded.
public struct PCSCUnavailable: Error, Hashable, Sendable, CustomStringConvertible {
    /// The platform whose library was looked for.
    public let platform: PCSCPlatform
    /// The files tried, with each loader's message (`dlerror()`), in order.
    public let attempts: [String]
    /// What to install.
    public let hint: String

    /// "PC/SC is not installed: …", with each file tried and what to install.
    public var description: String {
        "PC/SC is not installed: no \(platform == .windows ? "winscard.dll" : platform == .macOS ? "PCSC.framework" : "libpcsclite.so.1") could be loaded ("
            + attempts.joined(separator: "; ") + ") — " + hint
    }

    /// The ``CardError`` every PC/SC call then fails with (`backend`, name `PCSC_NOT_INSTALLED`, code 0).
    public var cardError: CardError { .backend(code: 0, name: "PCSC_NOT_INSTALLED", message: description) }
}

/// The PC/SC library of this process, loaded once on first use (``LoadedPCSCProvider/system``).
enum PCSCProviders {
    /// `CARTEKIT_PCSC_LIBRARY`, when set, names the library to load instead (a path or a file name:
    /// pcsc-lite's spy library `libpcscspy.so.0`, another pcsc-lite build). Otherwise the process's own
    /// PC/SC functions come first (`LD_PRELOAD=libpcscspy.so.0`), then `libpcsclite.so.1`.
    static let environmentVariable = "CARTEKIT_PCSC_LIBRARY"

    static let system: Result<any PCSCProvider, PCSCUnavailable> = {
        let abi = PCSCABI.current
        var candidates = abi.libraryCandidates
        let override = ProcessInfo.processInfo.environment[environmentVariable].flatMap { $0.isEmpty ? nil : $0 }
        if let override { candidates = [override] }
        // Without an override, PC/SC functions the process already has (LD_PRELOAD=libpcscspy.so.0) come first.
        switch LoadedPCSCProvider.load(abi: abi, behaviour: abi.platform.behaviour, candidates: candidates, processFirst: override == nil) {
        case .success(let p): return .success(p)
        case .failure(let e): return .failure(e)
        }
    }()
}
