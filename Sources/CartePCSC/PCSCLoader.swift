#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif os(Windows)
import WinSDK
#endif

// The C integer types of the platform's PC/SC header. These three lines and `openLibrary`/`symbol` below
// are the only per-platform code of the provider: everything else, including the function types and the
// calls, compiles (and runs) on Linux with the same source.
#if os(Windows)
/// `DWORD` (`unsigned long`, 4 bytes on LLP64).
typealias CWord = UInt32
/// `LONG`.
typealias CLong = Int32
/// `SCARDCONTEXT` / `SCARDHANDLE` (`ULONG_PTR`).
typealias CHandle = UInt
#elseif canImport(Darwin)
/// `DWORD` (`uint32_t` in PCSC.framework).
typealias CWord = UInt32
/// `LONG` (`int32_t`).
typealias CLong = Int32
/// `SCARDCONTEXT` / `SCARDHANDLE` (`int32_t`).
typealias CHandle = Int32
#else
/// `DWORD` (`unsigned long` in pcsc-lite: 8 bytes on 64-bit Linux).
typealias CWord = UInt
/// `LONG` (`long`).
typealias CLong = Int
/// `SCARDCONTEXT` / `SCARDHANDLE` (`LONG`).
typealias CHandle = Int
#endif

/// The platform's PC/SC library, loaded at run time (`dlopen` of libpcsclite.so.1 here; `LoadLibraryW`
/// of winscard.dll and `dlopen` of PCSC.framework there, as pyscard and OpenSC do), its functions found
/// by the names the ``PCSCABI`` gives and its structures marshalled by ``PCSCMarshal``. A machine
/// without the library gets ``PCSCUnavailable`` instead of a program that does not start.
final class LoadedPCSCProvider: PCSCProvider, @unchecked Sendable {
    typealias EstablishContext = @convention(c) (CWord, UnsafeRawPointer?, UnsafeRawPointer?, UnsafeMutablePointer<CHandle>?) -> CLong
    typealias HandleCall = @convention(c) (CHandle) -> CLong
    typealias HandleWordCall = @convention(c) (CHandle, CWord) -> CLong
    typealias ListReaders = @convention(c) (CHandle, UnsafeRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<CWord>?) -> CLong
    typealias GetStatusChange = @convention(c) (CHandle, CWord, UnsafeMutableRawPointer?, CWord) -> CLong
    typealias Connect = @convention(c) (CHandle, UnsafeRawPointer?, CWord, CWord, UnsafeMutablePointer<CHandle>?, UnsafeMutablePointer<CWord>?) -> CLong
    typealias Reconnect = @convention(c) (CHandle, CWord, CWord, CWord, UnsafeMutablePointer<CWord>?) -> CLong
    typealias Transmit = @convention(c) (CHandle, UnsafeRawPointer?, UnsafeRawPointer?, CWord, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<CWord>?) -> CLong
    typealias Control = @convention(c) (CHandle, CWord, UnsafeRawPointer?, CWord, UnsafeMutableRawPointer?, CWord, UnsafeMutablePointer<CWord>?) -> CLong
    typealias Status = @convention(c) (CHandle, UnsafeMutableRawPointer?, UnsafeMutablePointer<CWord>?, UnsafeMutablePointer<CWord>?, UnsafeMutablePointer<CWord>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<CWord>?) -> CLong
    typealias GetAttrib = @convention(c) (CHandle, CWord, UnsafeMutableRawPointer?, UnsafeMutablePointer<CWord>?) -> CLong

    let abi: PCSCABI
    let behaviour: PCSCBehaviour
    /// The file that was loaded.
    let path: String

    private let establishContextFunction: EstablishContext
    private let releaseContextFunction: HandleCall
    private let cancelFunction: HandleCall
    private let listReadersFunction: ListReaders
    private let getStatusChangeFunction: GetStatusChange
    private let connectFunction: Connect
    private let reconnectFunction: Reconnect
    private let disconnectFunction: HandleWordCall
    private let beginTransactionFunction: HandleCall
    private let endTransactionFunction: HandleWordCall
    private let transmitFunction: Transmit
    private let controlFunction: Control
    private let statusFunction: Status
    private let getAttribFunction: GetAttrib

    private init(abi: PCSCABI, behaviour: PCSCBehaviour, path: String, find: (PCSCFunction) -> UnsafeMutableRawPointer) {
        self.abi = abi
        self.behaviour = behaviour
        self.path = path
        establishContextFunction = unsafeBitCast(find(.establishContext), to: EstablishContext.self)
        releaseContextFunction = unsafeBitCast(find(.releaseContext), to: HandleCall.self)
        cancelFunction = unsafeBitCast(find(.cancel), to: HandleCall.self)
        listReadersFunction = unsafeBitCast(find(.listReaders), to: ListReaders.self)
        getStatusChangeFunction = unsafeBitCast(find(.getStatusChange), to: GetStatusChange.self)
        connectFunction = unsafeBitCast(find(.connect), to: Connect.self)
        reconnectFunction = unsafeBitCast(find(.reconnect), to: Reconnect.self)
        disconnectFunction = unsafeBitCast(find(.disconnect), to: HandleWordCall.self)
        beginTransactionFunction = unsafeBitCast(find(.beginTransaction), to: HandleCall.self)
        endTransactionFunction = unsafeBitCast(find(.endTransaction), to: HandleWordCall.self)
        transmitFunction = unsafeBitCast(find(.transmit), to: Transmit.self)
        controlFunction = unsafeBitCast(find(.control), to: Control.self)
        statusFunction = unsafeBitCast(find(.status), to: Status.self)
        getAttribFunction = unsafeBitCast(find(.getAttrib), to: GetAttrib.self)
    }

    /// What ``path`` says when the functions were found in the process itself.
    static let inProcess = "(the process's own PC/SC functions)"

    /// Loads the first of `candidates` that opens and exports every function `abi` names. The library
    /// stays loaded for the life of the process.
    ///
    /// With `processFirst`, functions the process already has come first: a program that links the
    /// library, or one started with `LD_PRELOAD=libpcscspy.so.0` (how pcsc-spy, the field technicians'
    /// APDU spy, is used) — a private `dlopen` would bypass the spy.
    static func load(abi: PCSCABI, behaviour: PCSCBehaviour, candidates: [String], processFirst: Bool = false) -> Result<LoadedPCSCProvider, PCSCUnavailable> {
        // The C types this build was compiled with must be the ones the description marshals.
        guard MemoryLayout<CWord>.size == abi.wordSize, MemoryLayout<CHandle>.size == abi.handleSize,
              MemoryLayout<UnsafeRawPointer>.size == abi.pointerSize else {
            return .failure(PCSCUnavailable(platform: abi.platform, attempts: ["this build's C types do not match the \(abi.platform.rawValue) description"], hint: abi.installHint))
        }
        /// The functions `abi` names that `library` exports, and the names of those it does not.
        func resolve(_ library: UnsafeMutableRawPointer) -> (found: [PCSCFunction: UnsafeMutableRawPointer], missing: [String]) {
            var found: [PCSCFunction: UnsafeMutableRawPointer] = [:]
            var missing: [String] = []
            for function in PCSCFunction.allCases {
                let name = abi.symbols[function] ?? PCSCFunction.plainNames[function]!
                if let address = symbol(library, name) { found[function] = address } else { missing.append(name) }
            }
            return (found, missing)
        }
        if processFirst, let process = processHandle() {
            let (found, missing) = resolve(process)
            if missing.isEmpty { return .success(LoadedPCSCProvider(abi: abi, behaviour: behaviour, path: inProcess) { found[$0]! }) }
        }
        var attempts: [String] = []
        for candidate in candidates {
            let opened = openLibrary(candidate)
            guard let handle = opened.handle else {
                attempts.append("\(candidate): \(opened.message)")
                continue
            }
            let (found, missing) = resolve(handle)
            guard missing.isEmpty else {
                attempts.append("\(candidate): does not export \(missing.joined(separator: ", "))")
                continue
            }
            return .success(LoadedPCSCProvider(abi: abi, behaviour: behaviour, path: candidate) { found[$0]! })
        }
        return .failure(PCSCUnavailable(platform: abi.platform, attempts: attempts, hint: abi.installHint))
    }

    // MARK: The platform's loader (the only code not compiled on Linux)

    private static func openLibrary(_ path: String) -> (handle: UnsafeMutableRawPointer?, message: String) {
        #if os(Windows)
        // Not run: written from the Win32 documentation (LoadLibraryExW, GetLastError). A bare name is
        // looked up in System32 only, never in the program's folder (DLL planting).
        let bare = !path.contains("\\") && !path.contains("/")
        let module = path.withCString(encodedAs: UTF16.self) { LoadLibraryExW($0, nil, bare ? DWORD(LOAD_LIBRARY_SEARCH_SYSTEM32) : 0) }
        guard let module else { return (nil, "LoadLibraryExW failed (error \(GetLastError()))") }
        return (UnsafeMutableRawPointer(module), "")
        #else
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            return (nil, dlerror().map { String(cString: $0) } ?? "dlopen failed")
        }
        return (handle, "")
        #endif
    }

    /// The process's global symbols (the program, the libraries it links, `LD_PRELOAD`).
    private static func processHandle() -> UnsafeMutableRawPointer? {
        #if os(Windows)
        return nil  // Windows programs load winscard.dll themselves; nothing to interpose
        #else
        return dlopen(nil, RTLD_NOW)
        #endif
    }

    private static func symbol(_ library: UnsafeMutableRawPointer, _ name: String) -> UnsafeMutableRawPointer? {
        #if os(Windows)
        // Not run: GetProcAddress on the module LoadLibraryW returned.
        guard let address = GetProcAddress(HMODULE(OpaquePointer(library)), name) else { return nil }
        return unsafeBitCast(address, to: UnsafeMutableRawPointer.self)
        #else
        return dlsym(library, name)
        #endif
    }

    // MARK: Conversions

    @inline(__always) private func code(_ rv: CLong) -> PCSCError? {
        let canonical = abi.normalise(Int64(rv))
        return canonical == 0 ? nil : PCSCError(rawValue: canonical)
    }
    @inline(__always) private func handle(_ value: UInt64) -> CHandle { CHandle(truncatingIfNeeded: value) }
    @inline(__always) private func opaque(_ value: CHandle) -> UInt64 { UInt64(truncatingIfNeeded: value) }

    // MARK: PCSCProvider

    func establishContext() -> Result<UInt64, PCSCError> {
        var context: CHandle = 0
        if let e = code(establishContextFunction(2 /* SCARD_SCOPE_SYSTEM */, nil, nil, &context)) { return .failure(e) }
        return .success(opaque(context))
    }

    func releaseContext(_ context: UInt64) -> PCSCError? { code(releaseContextFunction(handle(context))) }

    func cancel(_ context: UInt64) -> PCSCError? { code(cancelFunction(handle(context))) }

    func listReaders(_ context: UInt64) -> Result<[String], PCSCError> {
        var units: CWord = 0
        if let e = code(listReadersFunction(handle(context), nil, nil, &units)) { return .failure(e) }
        // A length from the library is not trusted: no trap on a huge one, no allocation beyond 64 Ki characters.
        let capacity = min(Int(clamping: units), 65_536)
        guard capacity > 0 else { return .success([]) }
        let unitSize = abi.encoding.unitSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * unitSize, alignment: 2)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        if let e = code(listReadersFunction(handle(context), nil, buffer.baseAddress, &units)) { return .failure(e) }
        return .success(PCSCMarshal.decodeMultiString(UnsafeRawBufferPointer(buffer), units: min(Int(clamping: units), capacity), abi: abi))
    }

    func getStatusChange(_ context: UInt64, timeoutMilliseconds: UInt32, _ states: inout [PCSCReaderState]) -> PCSCError? {
        // The names, one after the other in one allocation that lives for the call.
        let encoded = states.map { PCSCMarshal.encodeString($0.reader, abi: abi) }
        let names = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, encoded.reduce(0) { $0 + $1.count }), alignment: 2)
        defer { names.deallocate() }
        var addresses: [UInt] = []
        var offset = 0
        for bytes in encoded {
            UnsafeMutableRawBufferPointer(rebasing: names[offset..<(offset + bytes.count)]).copyBytes(from: bytes)
            addresses.append(UInt(bitPattern: names.baseAddress! + offset))
            offset += bytes.count
        }
        let array = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, PCSCMarshal.readerStatesByteCount(states.count, abi: abi)), alignment: 8)
        defer { array.deallocate() }
        PCSCMarshal.writeReaderStates(states, readerAddresses: addresses, abi: abi, into: array)
        let rv = getStatusChangeFunction(handle(context), CWord(timeoutMilliseconds), states.isEmpty ? nil : array.baseAddress, CWord(states.count))
        PCSCMarshal.readReaderStates(&states, abi: abi, from: UnsafeRawBufferPointer(array))
        return code(rv)
    }

    func connect(_ context: UInt64, reader: String, share: UInt32, protocols: UInt32) -> Result<(card: UInt64, activeProtocol: UInt32), PCSCError> {
        var card: CHandle = 0
        var active: CWord = 0
        let name = PCSCMarshal.encodeString(reader, abi: abi)
        let rv = name.withUnsafeBytes { connectFunction(handle(context), $0.baseAddress, CWord(share), CWord(protocols), &card, &active) }
        if let e = code(rv) { return .failure(e) }
        return .success((opaque(card), UInt32(truncatingIfNeeded: active)))
    }

    func reconnect(_ card: UInt64, share: UInt32, protocols: UInt32, initialization: UInt32) -> Result<UInt32, PCSCError> {
        var active: CWord = 0
        if let e = code(reconnectFunction(handle(card), CWord(share), CWord(protocols), CWord(initialization), &active)) { return .failure(e) }
        return .success(UInt32(truncatingIfNeeded: active))
    }

    func disconnect(_ card: UInt64, disposition: UInt32) -> PCSCError? { code(disconnectFunction(handle(card), CWord(disposition))) }

    func beginTransaction(_ card: UInt64) -> PCSCError? { code(beginTransactionFunction(handle(card))) }

    func endTransaction(_ card: UInt64, disposition: UInt32) -> PCSCError? { code(endTransactionFunction(handle(card), CWord(disposition))) }

    func transmit(_ card: UInt64, protocol: UInt32, command: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError> {
        let size = abi.ioRequest.size
        return withUnsafeTemporaryAllocation(byteCount: 2 * size, alignment: 8) { pcis in
            // A receive PCI although PC/SC allows NULL: pcsc-lite's spy library (pcsc-spy, what field
            // technicians use) dereferences it and would crash the program it spies on.
            let send = UnsafeMutableRawBufferPointer(rebasing: pcis[0..<size])
            let receive = UnsafeMutableRawBufferPointer(rebasing: pcis[size..<(2 * size)])
            pcis.initializeMemory(as: UInt8.self, repeating: 0)
            for pci in [send, receive] {
                PCSCMarshal.store(UInt64(`protocol`), size: abi.wordSize, at: abi.ioRequest.protocolOffset, in: pci)
                PCSCMarshal.store(UInt64(size), size: abi.wordSize, at: abi.ioRequest.lengthOffset, in: pci)
            }
            var length = CWord(response.count)
            let rv = transmitFunction(handle(card), send.baseAddress, command.baseAddress, CWord(command.count), receive.baseAddress, response.baseAddress, &length)
            if let e = code(rv) { return .failure(e) }
            return .success(min(Int(clamping: length), response.count))
        }
    }

    func control(_ card: UInt64, code controlCode: UInt32, input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError> {
        var returned: CWord = 0
        let rv = controlFunction(handle(card), CWord(controlCode), input.baseAddress, CWord(input.count), output.baseAddress, CWord(output.count), &returned)
        if let e = code(rv) { return .failure(e) }
        return .success(min(Int(clamping: returned), output.count))
    }

    func status(_ card: UInt64) -> Result<PCSCCardStatus, PCSCError> {
        var atr = [UInt8](repeating: 0, count: 40)
        var atrLength = CWord(atr.count)
        var state: CWord = 0
        var active: CWord = 0
        var nameLength: CWord = 0
        let rv = atr.withUnsafeMutableBytes { statusFunction(handle(card), nil, &nameLength, &state, &active, $0.baseAddress, &atrLength) }
        if let e = code(rv) { return .failure(e) }
        return .success(PCSCCardStatus(state: abi.normaliseCardStatus(UInt32(truncatingIfNeeded: state)), activeProtocol: UInt32(truncatingIfNeeded: active),
                                       atr: Array(atr[..<min(Int(clamping: atrLength), atr.count)])))
    }

    func attribute(_ card: UInt64, id: UInt32) -> Result<[UInt8], PCSCError> {
        var length: CWord = 0
        if let e = code(getAttribFunction(handle(card), CWord(id), nil, &length)) { return .failure(e) }
        var buffer = [UInt8](repeating: 0, count: min(Int(clamping: length), 65_536))
        length = CWord(buffer.count)
        let rv = buffer.withUnsafeMutableBytes { getAttribFunction(handle(card), CWord(id), $0.baseAddress, &length) }
        if let e = code(rv) { return .failure(e) }
        return .success(Array(buffer[..<min(Int(clamping: length), buffer.count)]))
    }
}
