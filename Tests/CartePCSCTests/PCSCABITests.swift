import CPCSCLite
import CarteCore
@testable import CartePCSC
import Logging
import Testing

/// #39: the per-platform ABI descriptions. The Linux one is checked against pcsc-lite's real header
/// (the system target's types and `MemoryLayout`s, and bytes written by the C structures themselves);
/// the Windows and macOS ones byte for byte against layouts written out from their headers.
@Suite("PC/SC ABI descriptions and marshalling (no pcscd needed)")
struct PCSCABITests {
    // MARK: Linux against the real header

    @Test func theLinuxDescriptionIsPCSCLitesHeader() {
        let abi = PCSCABI.linux
        #expect(MemoryLayout<DWORD>.size == abi.wordSize)
        #expect(MemoryLayout<LONG>.size == abi.wordSize)
        #expect(MemoryLayout<SCARDCONTEXT>.size == abi.handleSize)
        #expect(MemoryLayout<SCARDHANDLE>.size == abi.handleSize)
        #expect(MemoryLayout<UnsafeRawPointer>.size == abi.pointerSize)

        let layout = abi.readerState
        #expect(MemoryLayout<SCARD_READERSTATE>.size == layout.size)
        #expect(MemoryLayout<SCARD_READERSTATE>.stride == layout.size, "an array's stride is the size")
        #expect(MemoryLayout<SCARD_READERSTATE>.alignment == layout.alignment)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.szReader) == layout.readerOffset)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.pvUserData) == layout.userDataOffset)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.dwCurrentState) == layout.currentStateOffset)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.dwEventState) == layout.eventStateOffset)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.cbAtr) == layout.atrLengthOffset)
        #expect(MemoryLayout<SCARD_READERSTATE>.offset(of: \.rgbAtr) == layout.atrOffset)
        #expect(MemoryLayout.size(ofValue: SCARD_READERSTATE().rgbAtr) == layout.atrCapacity)
        #expect(Int(MAX_ATR_SIZE) == layout.atrCapacity)

        #expect(MemoryLayout<SCARD_IO_REQUEST>.size == abi.ioRequest.size)
        #expect(MemoryLayout<SCARD_IO_REQUEST>.offset(of: \.dwProtocol) == abi.ioRequest.protocolOffset)
        #expect(MemoryLayout<SCARD_IO_REQUEST>.offset(of: \.cbPciLength) == abi.ioRequest.lengthOffset)

        #expect(UInt32(SCARD_PROTOCOL_RAW) == abi.protocolRaw)
        #expect(UInt32(truncatingIfNeeded: SCARD_E_UNSUPPORTED_FEATURE) == abi.unsupportedFeatureCode)
        #expect(abi.getFeatureRequest == Part10.getFeatureRequest)
        #expect(abi.encoding == .utf8 && !abi.statusIsEnumeration)
    }

    /// The constants CartePCSC uses on every platform, against pcsc-lite's values.
    @Test func theSharedConstantsArePCSCLites() {
        #expect(SCard.shareExclusive == UInt32(SCARD_SHARE_EXCLUSIVE) && SCard.shareShared == UInt32(SCARD_SHARE_SHARED) && SCard.shareDirect == UInt32(SCARD_SHARE_DIRECT))
        #expect(SCard.protocolT0 == UInt32(SCARD_PROTOCOL_T0) && SCard.protocolT1 == UInt32(SCARD_PROTOCOL_T1) && SCard.protocolUndefined == UInt32(SCARD_PROTOCOL_UNDEFINED))
        #expect(SCard.leaveCard == UInt32(SCARD_LEAVE_CARD) && SCard.resetCard == UInt32(SCARD_RESET_CARD))
        #expect(SCard.unpowerCard == UInt32(SCARD_UNPOWER_CARD) && SCard.ejectCard == UInt32(SCARD_EJECT_CARD))
        let states: [(UInt32, Int)] = [(SCard.stateUnaware, Int(SCARD_STATE_UNAWARE)), (SCard.stateIgnore, Int(SCARD_STATE_IGNORE)),
                                       (SCard.stateChanged, Int(SCARD_STATE_CHANGED)), (SCard.stateUnknown, Int(SCARD_STATE_UNKNOWN)),
                                       (SCard.stateUnavailable, Int(SCARD_STATE_UNAVAILABLE)), (SCard.stateEmpty, Int(SCARD_STATE_EMPTY)),
                                       (SCard.statePresent, Int(SCARD_STATE_PRESENT)), (SCard.stateAtrMatch, Int(SCARD_STATE_ATRMATCH)),
                                       (SCard.stateExclusive, Int(SCARD_STATE_EXCLUSIVE)), (SCard.stateInUse, Int(SCARD_STATE_INUSE)),
                                       (SCard.stateMute, Int(SCARD_STATE_MUTE)), (SCard.stateUnpowered, Int(SCARD_STATE_UNPOWERED))]
        for (ours, header) in states { #expect(Int(ours) == header) }
        #expect(SCard.maxATRSize == Int(MAX_ATR_SIZE))
        // Every canonical code CartePCSC names is pcsc-lite's.
        #expect(PCSCError.noService.rawValue == UInt32(truncatingIfNeeded: SCARD_E_NO_SERVICE))
        #expect(PCSCError.serviceStopped.rawValue == UInt32(truncatingIfNeeded: SCARD_E_SERVICE_STOPPED))
        #expect(PCSCError.resetCard.rawValue == UInt32(truncatingIfNeeded: SCARD_W_RESET_CARD))
        #expect(PCSCError.removedCard.rawValue == UInt32(truncatingIfNeeded: SCARD_W_REMOVED_CARD))
        #expect(PCSCError.insufficientBuffer.rawValue == UInt32(truncatingIfNeeded: SCARD_E_INSUFFICIENT_BUFFER))
        #expect(PCSCError.unsupportedFeature.rawValue == UInt32(truncatingIfNeeded: SCARD_E_UNSUPPORTED_FEATURE))
    }

    /// The marshaller writes exactly the bytes the C structures hold, and reads back what C wrote.
    @Test func linuxReaderStatesAreByteForByteTheCStructures() {
        let abi = PCSCABI.linux
        let addresses: [UInt] = [0x0000_7F12_3456_7890, 0x0000_5555_AAAA_0001, 0x10]
        let entries = [PCSCReaderState(reader: "\\\\?PnP?\\Notification", currentState: 0x0003_0000),
                       PCSCReaderState(reader: "A 00 00", currentState: 0x0001_0022),
                       PCSCReaderState(reader: "B 00 00", currentState: 0)]
        var c = [SCARD_READERSTATE](repeating: SCARD_READERSTATE(), count: 3)
        for i in 0..<3 {
            c[i].szReader = UnsafePointer(bitPattern: addresses[i])
            c[i].dwCurrentState = DWORD(entries[i].currentState)
        }
        let expected = c.withUnsafeBytes { Array($0) }
        var ours = [UInt8](repeating: 0xEE, count: PCSCMarshal.readerStatesByteCount(3, abi: abi))
        ours.withUnsafeMutableBytes { PCSCMarshal.writeReaderStates(entries, readerAddresses: addresses, abi: abi, into: $0) }
        #expect(ours == expected)

        // What the library writes back, written by C, read by the marshaller.
        c[1].dwEventState = 0x0002_0222
        c[1].cbAtr = 4
        c[1].rgbAtr.0 = 0x3B; c[1].rgbAtr.1 = 0x8F; c[1].rgbAtr.2 = 0x80; c[1].rgbAtr.3 = 0x01
        c[2].dwEventState = 0x0004
        c[2].cbAtr = 200  // a bad length is cut to the array
        var read = entries
        c.withUnsafeBytes { PCSCMarshal.readReaderStates(&read, abi: abi, from: $0) }
        #expect(read[1].eventState == 0x0002_0222 && read[1].atr == [0x3B, 0x8F, 0x80, 0x01])
        #expect(read[2].eventState == 0x0004 && read[2].atr.count == 33)
        #expect(read[0].atr.isEmpty)
    }

    @Test func linuxIORequestIsTheCStructure() {
        var pci = SCARD_IO_REQUEST(dwProtocol: DWORD(SCARD_PROTOCOL_T1), cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
        let expected = withUnsafeBytes(of: &pci) { Array($0) }
        #expect(PCSCMarshal.ioRequest(protocol: SCard.protocolT1, abi: .linux) == expected)
    }

    @Test func theLoaderFindsEveryFunctionInTheRealLibrary() throws {
        let loaded = LoadedPCSCProvider.load(abi: .linux, behaviour: .linux, candidates: PCSCABI.linux.libraryCandidates)
        let provider = try loaded.get()
        #expect(provider.path == "libpcsclite.so.1")
        // This test program links libpcsclite (CPCSCLite): its own functions come first when asked
        // (what makes LD_PRELOAD=libpcscspy.so.0 work).
        #expect(try LoadedPCSCProvider.load(abi: .linux, behaviour: .linux, candidates: [], processFirst: true).get().path == LoadedPCSCProvider.inProcess)
    }

    // MARK: Windows and macOS, from their headers

    /// One entry written out field by field from the header: `szReader` 8 bytes, `pvUserData` 8, then
    /// the words, then `rgbAtr`; `size` bytes in all.
    static func entry(reader: UInt64, current: UInt32, event: UInt32 = 0, atr: [UInt8] = [], wordSize: Int, atrCapacity: Int, size: Int) -> [UInt8] {
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        var bytes = le(reader, 8) + le(0, 8) + le(UInt64(current), wordSize) + le(UInt64(event), wordSize) + le(UInt64(atr.count), wordSize)
        bytes += atr + [UInt8](repeating: 0, count: atrCapacity - atr.count)
        bytes += [UInt8](repeating: 0, count: size - bytes.count)  // tail padding (Linux only)
        return bytes
    }

    @Test(arguments: [PCSCPlatform.linux, .windows, .macOS])
    func readerStateArraysHaveThePlatformsLayout(_ platform: PCSCPlatform) {
        let abi = platform.abi
        let (wordSize, capacity, size): (Int, Int, Int) = switch platform {
        case .linux: (8, 33, 80)
        case .windows: (4, 36, 64)
        case .macOS: (4, 33, 61)
        }
        #expect(abi.wordSize == wordSize && abi.readerState.atrCapacity == capacity && abi.readerState.size == size)
        let entries = [PCSCReaderState(reader: "x", currentState: 0x0002_0000), PCSCReaderState(reader: "y", currentState: 0x0005_0020)]
        let addresses: [UInt] = [0x1122_3344_5566_7788, 0x0000_0000_0BAD_F00D]
        var ours = [UInt8](repeating: 0xEE, count: PCSCMarshal.readerStatesByteCount(2, abi: abi))
        ours.withUnsafeMutableBytes { PCSCMarshal.writeReaderStates(entries, readerAddresses: addresses, abi: abi, into: $0) }
        let expected = Self.entry(reader: 0x1122_3344_5566_7788, current: 0x0002_0000, wordSize: wordSize, atrCapacity: capacity, size: size)
            + Self.entry(reader: 0x0BAD_F00D, current: 0x0005_0020, wordSize: wordSize, atrCapacity: capacity, size: size)
        #expect(ours == expected, "\(platform): \(ours.count) bytes")

        // Reading back: the second entry's state and ATR where the platform puts them.
        let atr: [UInt8] = [0x3B, 0x88, 0x80, 0x01, 0xE1, 0xF3, 0x5E, 0x11]
        let written = Self.entry(reader: 1, current: 0, event: 0x0001_0010, wordSize: wordSize, atrCapacity: capacity, size: size)
            + Self.entry(reader: 2, current: 0, event: 0x0003_0222, atr: atr, wordSize: wordSize, atrCapacity: capacity, size: size)
        var read = entries
        written.withUnsafeBytes { PCSCMarshal.readReaderStates(&read, abi: abi, from: $0) }
        #expect(read[0].eventState == 0x0001_0010 && read[0].atr.isEmpty)
        #expect(read[1].eventState == 0x0003_0222 && read[1].atr == atr)
    }

    @Test func ioRequestsOfEachPlatform() {
        #expect(PCSCMarshal.ioRequest(protocol: 2, abi: .linux) == [2, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0])
        #expect(PCSCMarshal.ioRequest(protocol: 2, abi: .windows) == [2, 0, 0, 0, 8, 0, 0, 0])
        #expect(PCSCMarshal.ioRequest(protocol: 1, abi: .macOS) == [1, 0, 0, 0, 8, 0, 0, 0])
    }

    @Test func stringsOfEachPlatform() {
        let name = "Lecteur é 00 00"
        #expect(PCSCMarshal.encodeString(name, abi: .linux) == Array(name.utf8) + [0])
        #expect(PCSCMarshal.encodeString(name, abi: .macOS) == Array(name.utf8) + [0])
        let wide = PCSCMarshal.encodeString(name, abi: .windows)
        #expect(wide.count == 2 * 15 + 2 && wide[0] == 0x4C && wide[1] == 0 && wide[16] == 0xE9 && wide[17] == 0 && wide.suffix(2) == [0, 0])
        for abi in [PCSCABI.linux, .windows, .macOS] {
            let multi = PCSCMarshal.encodeString("A 00 00", abi: abi) + PCSCMarshal.encodeString(name, abi: abi) + PCSCMarshal.encodeString("", abi: abi)
            let units = multi.count / abi.encoding.unitSize
            #expect(multi.withUnsafeBytes { PCSCMarshal.decodeMultiString($0, units: units, abi: abi) } == ["A 00 00", name])
            // A length beyond the buffer or a list without its final NUL does not read past the bytes.
            #expect(multi.withUnsafeBytes { PCSCMarshal.decodeMultiString($0, units: units + 50, abi: abi) } == ["A 00 00", name])
            let unterminated = Array(multi.dropLast(2 * abi.encoding.unitSize))
            #expect(unterminated.withUnsafeBytes { PCSCMarshal.decodeMultiString($0, units: units, abi: abi) } == ["A 00 00"])
        }
    }

    // MARK: Constants and codes per platform

    @Test func resultCodesAreNormalisedOnEveryPlatform() {
        // pcsc-lite: a positive 64-bit LONG; Windows and macOS: a negative Int32.
        #expect(PCSCABI.linux.normalise(0x8010_001D) == PCSCError.noService.rawValue)
        #expect(PCSCABI.windows.normalise(Int64(Int32(bitPattern: 0x8010_001D))) == PCSCError.noService.rawValue)
        #expect(PCSCABI.windows.normalise(-2_146_435_043) == PCSCError.noService.rawValue)
        #expect(PCSCABI.macOS.normalise(Int64(Int32(bitPattern: 0x8010_0068))) == PCSCError.resetCard.rawValue)
        // Windows numbers SCARD_E_UNSUPPORTED_FEATURE 0x80100022.
        #expect(PCSCABI.windows.normalise(Int64(Int32(bitPattern: 0x8010_0022))) == PCSCError.unsupportedFeature.rawValue)
        #expect(PCSCABI.linux.normalise(0x8010_0022) == 0x8010_0022)
        #expect(PCSCABI.linux.normalise(0) == 0 && PCSCABI.windows.normalise(0) == 0)
    }

    @Test func controlCodesAndStatesPerPlatform() {
        #expect(PCSCABI.linux.getFeatureRequest == 0x4200_0D48)
        #expect(PCSCABI.macOS.getFeatureRequest == 0x4200_0D48)
        #expect(PCSCABI.windows.getFeatureRequest == 0x0031_3520)
        #expect(PCSCABI.windows.controlCode(1) == 0x0031_0004)
        #expect(PCSCABI.windows.protocolRaw == 0x10000 && PCSCABI.linux.protocolRaw == 4 && PCSCABI.macOS.protocolRaw == 4)
        // SCardStatus: Windows's enumeration (SCARD_PRESENT = 2, SCARD_SPECIFIC = 6) as pcsc-lite's bits.
        #expect(PCSCABI.windows.normaliseCardStatus(2) == 0x04 && PCSCABI.windows.normaliseCardStatus(6) == 0x40)
        #expect(PCSCABI.windows.normaliseCardStatus(99) == 0)
        #expect(PCSCABI.linux.normaliseCardStatus(0x34) == 0x34)
        #expect(PCSCABI.windows.symbols[.listReaders] == "SCardListReadersW" && PCSCABI.windows.symbols[.connect] == "SCardConnectW")
        #expect(PCSCABI.macOS.symbols[.control] == "SCardControl132" && PCSCABI.linux.symbols[.control] == "SCardControl")
        #expect(PCSCABI.linux.symbols.count == PCSCFunction.allCases.count)
        #expect(PCSCABI.current == .linux)
    }

    // MARK: Without PC/SC

    @Test func aMachineWithoutPCSCGetsAClearError() async {
        let missing = LoadedPCSCProvider.load(abi: .linux, behaviour: .linux, candidates: ["/nonexistent/libpcsclite.so.1", "libpcsclite-not-here.so.9"])
        guard case .failure(let unavailable) = missing else {
            Issue.record("a missing library loaded")
            return
        }
        #expect(unavailable.description.hasPrefix("PC/SC is not installed"))
        #expect(unavailable.description.contains("/nonexistent/libpcsclite.so.1") && unavailable.description.contains("libpcsclite-not-here.so.9"))
        #expect(unavailable.description.contains("apt-get install libpcsclite1 pcscd"))

        // A library without the functions is refused with their names, not called.
        let wrong = LoadedPCSCProvider.load(abi: .linux, behaviour: .linux, candidates: ["libc.so.6"])
        guard case .failure(let refused) = wrong else {
            Issue.record("libc passed for PC/SC")
            return
        }
        #expect(refused.description.contains("does not export SCardEstablishContext"))

        let backend = PCSCBackend(loaded: .failure(unavailable), logger: .init(label: "test"))
        #expect(backend.unavailability == unavailable)
        for attempt in 0..<2 {
            do {
                _ = try await backend.readers()
                Issue.record("readers without PC/SC")
            } catch {
                guard case .backend(_, let name, let message) = error else {
                    Issue.record("attempt \(attempt): \(error)")
                    continue
                }
                #expect(name == "PCSC_NOT_INSTALLED" && message.contains("PC/SC is not installed"))
            }
        }
        do {
            _ = try await backend.connect(to: "A 00 00", share: .shared, protocols: [.t1])
            Issue.record("a connection without PC/SC")
        } catch {
            #expect(error == unavailable.cardError)
        }
        // The event stream ends instead of retrying for ever.
        var count = 0
        for await _ in backend.events() { count += 1 }
        #expect(count == 0)
    }
}
