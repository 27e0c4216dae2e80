/// The framed protocol between the pcscd driver (`libifdcarte.so`), control clients (`carte sim …`)
/// and the simulator daemon (`carte sim serve`), over one Unix-domain stream socket.
///
/// Every message is a frame: a 4-byte big-endian length `L` (1 ≤ L ≤ ``maximumFrame``), then `L` bytes:
/// one type byte and the payload. A connection starts with ``MessageType/hello`` carrying the role
/// (driver or control) and the protocol version; every request gets exactly one reply,
/// ``MessageType/ok`` or ``MessageType/error``. No Foundation (only Glibc for ``SocketIO``), so the
/// driver can embed it.
public enum Wire {
    /// The protocol version a hello carries.
    public static let version: UInt16 = 1
    /// The largest frame accepted (type byte + payload), far above the largest extended APDU.
    public static let maximumFrame = 1 << 20
}

/// The type byte of a frame.
public enum MessageType: UInt8, Sendable, CaseIterable {
    /// First frame of a connection: role (1 byte: 1 driver, 2 control) + version (2 bytes).
    case hello = 0x01
    /// Driver: bind this connection to reader `u16` slot `u16`; the reply carries a ``ReaderDescription``.
    case attach = 0x10
    /// Driver: is a card there? Reply: 1 byte ``SlotPresence``.
    case presence = 0x11
    /// Driver: power action (1 byte: 0 down, 1 up, 2 warm reset). Reply: the ATR (empty for power down).
    case power = 0x12
    /// Driver: transmit the payload APDU. Reply: the response APDU.
    case transmit = 0x13
    /// Driver: reader control (`SCardControl`): code `u32` + data. Reply: the reader's answer.
    case control = 0x14
    /// Driver, once attached: asks for a shared-memory lane for its APDUs (``SharedLane``). Reply: ``ok``
    /// carrying the lane file's size (`u32`), with the file attached (`SCM_RIGHTS`); or an error, and the
    /// connection goes on without a lane.
    case lane = 0x15
    /// Control client: a JSON request (UTF-8). Reply: ``ok`` with a JSON answer.
    case controlRequest = 0x20
    /// Success; the payload is the answer.
    case ok = 0x80
    /// Failure: 1 byte ``WireFailure`` code, then an English message (UTF-8).
    case error = 0x81
}

/// Who opens a connection: the first byte of a ``MessageType/hello``.
public enum ConnectionRole: UInt8, Sendable {
    /// The pcscd driver (one connection per slot).
    case driver = 1
    /// A control client (`carte sim insert|remove|status`).
    case control = 2
}

/// What a slot holds, as the driver needs it.
public enum SlotPresence: UInt8, Sendable {
    case absent = 0
    case present = 1
    case mute = 2
}

/// Why a request failed.
public enum WireFailure: UInt8, Sendable, CustomStringConvertible {
    /// No card in the slot.
    case noCard = 1
    /// The card does not answer.
    case mute = 2
    /// No such reader or slot.
    case noSuchSlot = 3
    /// The request is not supported (unknown control code…).
    case unsupported = 4
    /// The request is malformed.
    case badRequest = 5
    /// The request arrived before `hello`/`attach`.
    case notAttached = 6
    /// Something else; the message says what.
    case other = 7

    public var description: String {
        switch self {
        case .noCard: return "no card"
        case .mute: return "mute card"
        case .noSuchSlot: return "no such reader or slot"
        case .unsupported: return "unsupported request"
        case .badRequest: return "malformed request"
        case .notAttached: return "not attached"
        case .other: return "failure"
        }
    }
}

/// A malformed frame or payload.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The length field announces 0 bytes or more than ``Wire/maximumFrame``.
    case invalidLength(Int)
    /// A type byte no version of the protocol defines.
    case unknownType(UInt8)
    /// A payload shorter than its fields (`field` names the first missing one).
    case truncatedPayload(type: MessageType, field: String)
    /// The peer closed the connection (in the middle of a frame when `midFrame`).
    case closed(midFrame: Bool)

    public var description: String {
        switch self {
        case .invalidLength(let n): return "invalid frame length \(n) (1...\(Wire.maximumFrame))"
        case .unknownType(let t): return "unknown frame type 0x\(String(t, radix: 16))"
        case .truncatedPayload(let type, let field): return "\(type) frame truncated: \(field) missing"
        case .closed(let mid): return mid ? "connection closed in the middle of a frame" : "connection closed"
        }
    }
}

/// One frame.
public struct Frame: Hashable, Sendable {
    /// The frame type.
    public var type: MessageType
    /// The payload after the type byte.
    public var payload: [UInt8]

    /// A frame of `type` carrying `payload`.
    public init(_ type: MessageType, _ payload: [UInt8] = []) {
        self.type = type
        self.payload = payload
    }

    /// Length prefix, type and payload.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 5)
        out += bigEndian(UInt32(payload.count + 1))
        out.append(type.rawValue)
        out += payload
        return out
    }

    /// Reads the length prefix: the number of bytes that follow it.
    public static func length(fromHeader header: [UInt8]) throws(WireError) -> Int {
        try length(fromHeader: header[...])
    }

    /// Reads the length prefix from a slice (of a receive buffer) of exactly 4 bytes.
    public static func length(fromHeader header: ArraySlice<UInt8>) throws(WireError) -> Int {
        precondition(header.count == 4)
        let n = header.reduce(0) { $0 << 8 | Int($1) }
        guard n >= 1, n <= Wire.maximumFrame else { throw .invalidLength(n) }
        return n
    }

    /// Decodes the bytes that follow the length prefix.
    public init(body: [UInt8]) throws(WireError) {
        try self.init(body: body[...])
    }

    /// Decodes the bytes that follow the length prefix, from a slice (of a receive buffer).
    public init(body: ArraySlice<UInt8>) throws(WireError) {
        guard let first = body.first else { throw .invalidLength(0) }
        guard let type = MessageType(rawValue: first) else { throw .unknownType(first) }
        self.type = type
        self.payload = Array(body.dropFirst())
    }

    /// The first frame of a connection: `role`, then ``Wire/version``.
    public static func hello(_ role: ConnectionRole) -> Frame {
        Frame(.hello, [role.rawValue] + bigEndianU16(Wire.version))
    }

    /// An error frame.
    public static func failure(_ code: WireFailure, _ message: String) -> Frame {
        Frame(.error, [code.rawValue] + Array(message.utf8))
    }

    /// For an error frame: its code and message.
    public var failure: (code: WireFailure, message: String)? {
        guard type == .error, let first = payload.first else { return nil }
        return (WireFailure(rawValue: first) ?? .other, String(decoding: payload.dropFirst(), as: UTF8.self))
    }
}

/// A reader as the daemon describes it to the driver (so pcscd reports real-looking attributes).
public struct ReaderDescription: Hashable, Sendable {
    /// The reader name (pcscd appends ` NN SS`).
    public var name: String
    /// `SCARD_ATTR_VENDOR_NAME`.
    public var vendor: String
    /// `SCARD_ATTR_VENDOR_IFD_TYPE`.
    public var model: String
    /// `SCARD_ATTR_VENDOR_IFD_VERSION` (`0xMMmm0000`).
    public var ifdVersion: UInt32
    /// `SCARD_ATTR_VENDOR_IFD_SERIAL_NO`.
    public var serialNumber: String
    /// How many slots the reader has.
    public var slotCount: Int
    /// Whether the described slot is contactless.
    public var contactless: Bool
    /// 0 for short APDUs only, 0x10000 for extended.
    public var maxAPDUDataSize: UInt32
    /// `wIdVendor` (0 when the profile has none).
    public var usbVendorID: UInt16
    /// `wIdProduct` (0 when the profile has none).
    public var usbProductID: UInt16

    /// Describes a reader; see the properties.
    public init(name: String, vendor: String, model: String, ifdVersion: UInt32, serialNumber: String, slotCount: Int, contactless: Bool, maxAPDUDataSize: UInt32, usbVendorID: UInt16, usbProductID: UInt16) {
        self.name = name
        self.vendor = vendor
        self.model = model
        self.ifdVersion = ifdVersion
        self.serialNumber = serialNumber
        self.slotCount = slotCount
        self.contactless = contactless
        self.maxAPDUDataSize = maxAPDUDataSize
        self.usbVendorID = usbVendorID
        self.usbProductID = usbProductID
    }

    /// Tag (1) length (2, big-endian) value fields; unknown tags are skipped when decoding.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func put(_ tag: UInt8, _ value: [UInt8]) {
            out.append(tag)
            out.append(UInt8(value.count >> 8 & 0xFF))
            out.append(UInt8(value.count & 0xFF))
            out += value
        }
        put(1, Array(name.utf8))
        put(2, Array(vendor.utf8))
        put(3, Array(model.utf8))
        put(4, bigEndian(ifdVersion))
        put(5, Array(serialNumber.utf8))
        put(6, bigEndian(UInt32(slotCount)))
        put(7, [contactless ? 1 : 0])
        put(8, bigEndian(maxAPDUDataSize))
        put(9, bigEndian(UInt32(usbVendorID)))
        put(10, bigEndian(UInt32(usbProductID)))
        return out
    }

    /// Decodes ``encoded()``.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        var fields: [UInt8: [UInt8]] = [:]
        var i = 0
        while i < bytes.count {
            guard i + 3 <= bytes.count else { throw .truncatedPayload(type: .ok, field: "reader description field header") }
            let length = Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            guard i + 3 + length <= bytes.count else { throw .truncatedPayload(type: .ok, field: "reader description field \(bytes[i])") }
            fields[bytes[i]] = Array(bytes[(i + 3)..<(i + 3 + length)])
            i += 3 + length
        }
        func text(_ t: UInt8) -> String { fields[t].map { String(decoding: $0, as: UTF8.self) } ?? "" }
        func number(_ t: UInt8) -> UInt32 { fields[t].map { $0.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) } } ?? 0 }
        self.init(name: text(1), vendor: text(2), model: text(3), ifdVersion: number(4), serialNumber: text(5),
                  slotCount: Int(number(6)), contactless: fields[7] == [1], maxAPDUDataSize: number(8),
                  usbVendorID: UInt16(truncatingIfNeeded: number(9)), usbProductID: UInt16(truncatingIfNeeded: number(10)))
    }
}

/// The 4 big-endian bytes of `v`.
public func bigEndian(_ v: UInt32) -> [UInt8] {
    [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
}

/// The 2 big-endian bytes of `v`.
public func bigEndianU16(_ v: UInt16) -> [UInt8] {
    [UInt8(v >> 8), UInt8(v & 0xFF)]
}

/// Reads a big-endian `u16` at `offset`.
public func readU16(_ b: [UInt8], _ offset: Int) -> UInt16? {
    guard offset >= 0, offset + 2 <= b.count else { return nil }
    return UInt16(b[offset]) << 8 | UInt16(b[offset + 1])
}

/// Reads a big-endian `u32` at `offset`.
public func readU32(_ b: [UInt8], _ offset: Int) -> UInt32? {
    guard offset >= 0, offset + 4 <= b.count else { return nil }
    return b[offset..<(offset + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
}
