/// vsmartcard's vpcd protocol as its card side ("vicc") reads it: what a stock `libifdvpcd.so` driver in
/// pcscd sends over TCP to the program that plays the card. No sockets here (``VPCDCardSide`` in
/// CarteSimDaemon does the transport), so the parsing can be fuzzed and tested alone.
///
/// Every message, both ways, is a frame: a 2-byte big-endian length `L` (0 ≤ L ≤ ``maximumBody``), then
/// `L` bytes. vpcd always speaks first. A 1-byte body is a control (``VPCDMessage``); any other body is
/// a command APDU, answered by one frame holding the response APDU (an empty body: no card).
public enum VPCD {
    /// The largest body a frame can carry (its length field has 16 bits).
    public static let maximumBody = 0xFFFF

    /// The body length a frame header announces: `header` must be exactly its 2 bytes.
    public static func bodyLength(header: some Collection<UInt8>) throws(VPCDError) -> Int {
        guard header.count == 2 else { throw .header(count: header.count) }
        var i = header.startIndex
        let high = Int(header[i])
        i = header.index(after: i)
        return high << 8 | Int(header[i])
    }

    /// The frame carrying `body`: its 2-byte length, then the body. A body longer than
    /// ``maximumBody`` cannot be framed.
    public static func frame(_ body: [UInt8]) throws(VPCDError) -> [UInt8] {
        guard body.count <= maximumBody else { throw .bodyTooLarge(body.count) }
        return [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }
}

/// A message from vpcd to the card side, decoded from a frame body.
public enum VPCDMessage: Sendable, Equatable {
    /// Control `00`: the card is powered off. No answer.
    case powerOff
    /// Control `01`: the card is powered on. No answer.
    case powerOn
    /// Control `02`: the card is reset. No answer.
    case reset
    /// Control `04`: the card's ATR is asked for. Answer: the ATR (an empty body when no card is there).
    case getATR
    /// Any other 1-byte body: a control this protocol does not define. No answer. (Built with a
    /// defined control byte, it is sent as that control: its ``body`` decodes as `powerOff`, `powerOn`,
    /// `reset` or `getATR`.)
    case unknownControl(UInt8)
    /// Any body that is not 1 byte long (the empty one too): a command APDU, answered with the response.
    /// (The protocol cannot carry a 1-byte APDU: its ``body`` decodes as a control.)
    case apdu([UInt8])

    /// The message a frame body holds (every body is one: the protocol has no malformed message).
    public init(body: [UInt8]) {
        guard body.count == 1 else {
            self = .apdu(body)
            return
        }
        switch body[0] {
        case 0x00: self = .powerOff
        case 0x01: self = .powerOn
        case 0x02: self = .reset
        case 0x04: self = .getATR
        default: self = .unknownControl(body[0])
        }
    }

    /// The frame body that carries this message.
    public var body: [UInt8] {
        switch self {
        case .powerOff: [0x00]
        case .powerOn: [0x01]
        case .reset: [0x02]
        case .getATR: [0x04]
        case .unknownControl(let b): [b]
        case .apdu(let a): a
        }
    }

    /// Whether the card side sends a frame back.
    public var expectsAnswer: Bool {
        switch self {
        case .getATR, .apdu: true
        case .powerOff, .powerOn, .reset, .unknownControl: false
        }
    }
}

/// A vpcd frame that cannot be read or written.
public enum VPCDError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A frame header that is not 2 bytes long (`count` bytes were given).
    case header(count: Int)
    /// A body of `count` bytes, more than a 16-bit length can announce (``VPCD/maximumBody``).
    case bodyTooLarge(Int)

    public var description: String {
        switch self {
        case .header(let n): "a vpcd frame header is 2 bytes, not \(n)"
        case .bodyTooLarge(let n): "a vpcd frame carries at most \(VPCD.maximumBody) bytes, not \(n)"
        }
    }
}
