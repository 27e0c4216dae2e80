// The pcscd driver entry points (IFD handler API v3.0). pcscd dlopens libifdcarte.so from a
// reader.conf.d entry written by `carte sim reader-conf`, and calls these from its own threads.
// Every call forwards to the simulator daemon over a Unix socket (see CarteSimProtocol) and is
// bounded by a timeout: if the daemon is gone the card is reported absent at once.
//
// `public` is required: a non-public @_cdecl function is a hidden symbol that pcscd cannot find.
public import CIFDHandler
import CarteSimProtocol
import Synchronization

private let presenceTimeout = 1_000
private let controlTimeout = 5_000

private func ok() -> RESPONSECODE { RESPONSECODE(IFD_SUCCESS) }

/// Copies `bytes` into a C buffer of `capacity` bytes; false (and a length of 0) when it does not fit.
private func copy(_ bytes: [UInt8], to buffer: UnsafeMutablePointer<UCHAR>?, capacity: Int, length: UnsafeMutablePointer<DWORD>?) -> Bool {
    if bytes.isEmpty {
        length?.pointee = 0
        return true
    }
    guard bytes.count <= capacity, let buffer else {
        length?.pointee = 0
        return false
    }
    bytes.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: $0.count) }
    length?.pointee = DWORD(bytes.count)
    return true
}

/// The reader attributes the driver answers (`SCardGetAttrib`); other tags are refused locally,
/// without asking the daemon (pcscd probes several while it sets a reader up).
private let attributeTags: Set<UInt32> = [0x0001_0100, 0x0001_0101, 0x0001_0102, 0x0001_0103, 0x0002_0110, 0x0007_A007]

/// pcscd opens a reader: `deviceName` is the DEVICENAME of its reader.conf entry.
@_cdecl("IFDHCreateChannelByName")
public func IFDHCreateChannelByName(_ lun: DWORD, _ deviceName: LPSTR?) -> RESPONSECODE {
    guard let deviceName, let config = DeviceConfig(resolving: String(cString: deviceName)) else {
        return RESPONSECODE(IFD_COMMUNICATION_ERROR)
    }
    configurations.withLock { $0[lun >> 16] = config }
    // Attach now when the daemon is up, so the attributes are ready; a missing daemon is not an
    // error (the reader shows empty slots until it starts).
    if let link = link(for: lun) { _ = link.request(.presence, timeout: presenceTimeout) }
    return ok()
}

/// Legacy open without DEVICENAME: refused (the daemon cannot be found without it).
@_cdecl("IFDHCreateChannel")
public func IFDHCreateChannel(_ lun: DWORD, _ channel: DWORD) -> RESPONSECODE {
    // Without DEVICENAME there is no way to know where the daemon is.
    RESPONSECODE(IFD_COMMUNICATION_ERROR)
}

/// pcscd closes a reader: its links are dropped.
@_cdecl("IFDHCloseChannel")
public func IFDHCloseChannel(_ lun: DWORD) -> RESPONSECODE {
    let reader = lun >> 16
    links.withLock { l in l = l.filter { $0.key >> 16 != reader } }
    configurations.withLock { _ = $0.removeValue(forKey: reader) }
    return ok()
}

/// Capabilities and reader attributes (`SCardGetAttrib`), from the profile the daemon described.
@_cdecl("IFDHGetCapabilities")
public func IFDHGetCapabilities(_ lun: DWORD, _ tag: DWORD, _ length: PDWORD?, _ value: PUCHAR?) -> RESPONSECODE {
    guard let length else { return RESPONSECODE(IFD_ERROR_TAG) }
    let capacity = Int(length.pointee)
    func reply(_ bytes: [UInt8]) -> RESPONSECODE {
        copy(bytes, to: value, capacity: capacity, length: length) ? ok() : RESPONSECODE(IFD_ERROR_INSUFFICIENT_BUFFER)
    }
    func dword(_ v: UInt) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    let config = configurations.withLock { $0[lun >> 16] }
    switch Int32(tag) {
    case TAG_IFD_ATR:
        return reply(link(for: lun)?.cachedATR ?? [])
    case TAG_IFD_SLOTS_NUMBER:
        return reply([UInt8(config?.slots ?? 1)])
    case TAG_IFD_SIMULTANEOUS_ACCESS:
        return reply([16])  // readers one driver instance serves (one per reader.conf entry)
    case TAG_IFD_THREAD_SAFE, TAG_IFD_SLOT_THREAD_SAFE:
        return reply([1])  // each slot has its own link and lock
    default:
        break
    }
    // Reader attributes (SCardGetAttrib), from the profile the daemon described.
    guard attributeTags.contains(UInt32(truncatingIfNeeded: tag)), let link = link(for: lun) else { return RESPONSECODE(IFD_ERROR_TAG) }
    if link.cachedDescription == nil { _ = link.request(.presence, timeout: presenceTimeout) }
    guard let d = link.cachedDescription else { return RESPONSECODE(IFD_ERROR_TAG) }
    switch UInt32(tag) {
    case 0x0001_0100: return reply(Array(d.vendor.utf8) + [0])  // SCARD_ATTR_VENDOR_NAME
    case 0x0001_0101: return reply(Array(d.model.utf8) + [0])  // SCARD_ATTR_VENDOR_IFD_TYPE
    case 0x0001_0102: return reply(dword(UInt(d.ifdVersion)))  // SCARD_ATTR_VENDOR_IFD_VERSION
    case 0x0001_0103: return reply(Array(d.serialNumber.utf8) + [0])  // SCARD_ATTR_VENDOR_IFD_SERIAL_NO
    case 0x0002_0110: return reply(dword(0x00F0_0000 | UInt(config?.reader ?? 0)))  // SCARD_ATTR_CHANNEL_ID: vendor-defined channel
    case 0x0007_A007: return reply(dword(d.maxAPDUDataSize > 0 ? 65_544 : 261))  // SCARD_ATTR_MAXINPUT
    default: return RESPONSECODE(IFD_ERROR_TAG)
    }
}

/// Nothing can be set.
@_cdecl("IFDHSetCapabilities")
public func IFDHSetCapabilities(_ lun: DWORD, _ tag: DWORD, _ length: DWORD, _ value: PUCHAR?) -> RESPONSECODE {
    RESPONSECODE(IFD_ERROR_TAG)
}

/// PPS: accepted for T=0 and T=1.
@_cdecl("IFDHSetProtocolParameters")
public func IFDHSetProtocolParameters(_ lun: DWORD, _ protocolNumber: DWORD, _ flags: UCHAR, _ pts1: UCHAR, _ pts2: UCHAR, _ pts3: UCHAR) -> RESPONSECODE {
    // A virtual card needs no PPS: accept T=0 and T=1 as pcscd chose them from the ATR.
    protocolNumber == DWORD(SCARD_PROTOCOL_T0) || protocolNumber == DWORD(SCARD_PROTOCOL_T1) ? ok() : RESPONSECODE(IFD_PROTOCOL_NOT_SUPPORTED)
}

/// Power up, down or warm reset; the ATR comes from the daemon.
@_cdecl("IFDHPowerICC")
public func IFDHPowerICC(_ lun: DWORD, _ action: DWORD, _ atr: PUCHAR?, _ atrLength: PDWORD?) -> RESPONSECODE {
    guard let link = link(for: lun) else { return RESPONSECODE(IFD_NO_SUCH_DEVICE) }
    let code: UInt8
    switch Int32(action) {
    case IFD_POWER_DOWN: code = 0
    case IFD_POWER_UP: code = 1
    case IFD_RESET: code = 2
    default: return RESPONSECODE(IFD_NOT_SUPPORTED)
    }
    // The ATR buffer holds MAX_ATR_SIZE bytes (pcscd passes its size in *AtrLength).
    let capacity = min(Int(atrLength?.pointee ?? DWORD(MAX_ATR_SIZE)), Int(MAX_ATR_SIZE))
    switch link.request(.power, [code], timeout: link.config.timeoutMilliseconds) {
    case .success(let bytes):
        if code == 0 {
            link.cachedATR = []
            atrLength?.pointee = 0
            return ok()
        }
        guard !bytes.isEmpty, bytes.count <= capacity else {
            link.cachedATR = []
            atrLength?.pointee = 0
            return RESPONSECODE(IFD_ERROR_POWER_ACTION)
        }
        link.cachedATR = bytes
        return copy(bytes, to: atr, capacity: capacity, length: atrLength) ? ok() : RESPONSECODE(IFD_ERROR_POWER_ACTION)
    case .failure:
        atrLength?.pointee = 0
        return code == 0 ? ok() : RESPONSECODE(IFD_ERROR_POWER_ACTION)
    }
}

/// One APDU to the card and its response (never resent once it may have run).
@_cdecl("IFDHTransmitToICC")
public func IFDHTransmitToICC(
    _ lun: DWORD, _ sendPci: SCARD_IO_HEADER, _ tx: PUCHAR?, _ txLength: DWORD,
    _ rx: PUCHAR?, _ rxLength: PDWORD?, _ recvPci: PSCARD_IO_HEADER?
) -> RESPONSECODE {
    guard let link = link(for: lun), let rxLength else { return RESPONSECODE(IFD_COMMUNICATION_ERROR) }
    let command = tx.map { Array(UnsafeBufferPointer(start: $0, count: Int(txLength))) } ?? []
    let capacity = Int(rxLength.pointee)
    rxLength.pointee = 0
    switch link.request(.transmit, command, timeout: link.config.timeoutMilliseconds) {
    case .success(let response):
        recvPci?.pointee.Protocol = sendPci.Protocol
        return copy(response, to: rx, capacity: capacity, length: rxLength) ? ok() : RESPONSECODE(IFD_ERROR_INSUFFICIENT_BUFFER)
    case .failure(.failed(.noCard, _)):
        return RESPONSECODE(IFD_ICC_NOT_PRESENT)
    case .failure:
        return RESPONSECODE(IFD_COMMUNICATION_ERROR)
    }
}

/// `SCardControl`: the feature list and TLV properties.
@_cdecl("IFDHControl")
public func IFDHControl(
    _ lun: DWORD, _ controlCode: DWORD, _ tx: PUCHAR?, _ txLength: DWORD,
    _ rx: PUCHAR?, _ rxLength: DWORD, _ returned: LPDWORD?
) -> RESPONSECODE {
    returned?.pointee = 0
    guard let link = link(for: lun) else { return RESPONSECODE(IFD_COMMUNICATION_ERROR) }
    let data = tx.map { Array(UnsafeBufferPointer(start: $0, count: Int(txLength))) } ?? []
    let code = UInt32(truncatingIfNeeded: controlCode)
    // Secure PIN entry waits for the keypad: per entry bTimerOut seconds (the reader's own default, at
    // most 255, when 0) or bTimerOut2, up to three entries for a change. The driver waits longer than
    // the daemon can (and at least libccid's 90 s), so it never gives up on a prompt still running.
    // (pcscd serialises a slot's calls, so its presence polls wait for the entry; answering them from
    // the last state here is defensive.)
    let securePIN = code == 0x4233_0006 || code == 0x4233_0007
    var timeout = controlTimeout
    if securePIN {
        let first = data.first.map { $0 == 0 ? 255 : Int($0) } ?? 255
        let later = data.count > 1 && data[1] != 0 ? Int(data[1]) : first
        let entries = code == 0x4233_0007 ? 3 : 1
        timeout = max(90, first + (entries - 1) * later + 10) * 1_000
    }
    if securePIN { link.beginPINEntry() }
    defer { if securePIN { link.endPINEntry() } }
    switch link.request(.control, bigEndian(code) + data, timeout: timeout) {
    case .success(let answer):
        return copy(answer, to: rx, capacity: Int(rxLength), length: returned) ? ok() : RESPONSECODE(IFD_ERROR_INSUFFICIENT_BUFFER)
    case .failure(.failed(.unsupported, _)):
        return RESPONSECODE(IFD_ERROR_NOT_SUPPORTED)
    case .failure:
        return RESPONSECODE(IFD_COMMUNICATION_ERROR)
    }
}

/// Presence, polled by pcscd every 400 ms.
@_cdecl("IFDHICCPresence")
public func IFDHICCPresence(_ lun: DWORD) -> RESPONSECODE {
    guard let link = link(for: lun) else { return RESPONSECODE(IFD_ICC_NOT_PRESENT) }
    switch link.presence(timeout: presenceTimeout) {
    case .present, .mute:
        // A mute card is present (pcscd then fails to power it and reports it unresponsive).
        return RESPONSECODE(IFD_ICC_PRESENT)
    case .absent, nil:
        return RESPONSECODE(IFD_ICC_NOT_PRESENT)
    }
}
