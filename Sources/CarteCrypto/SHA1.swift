/// SHA-1 (FIPS 180-4) in pure Swift, with access to the intermediate state.
///
/// A CPS3 still declares SHA-1 for on-card hashing (the ANS Cryptolib sends MSE SET HT with algorithm
/// `10` for `CKM_SHA1_RSA_PKCS`): PSO HASH then carries either the whole message (tag `80`) or the
/// five state words and the bit count after the host hashed every whole block but the last (tag `90`),
/// as for ``SHA256``. Tests check this implementation against OpenSSL's.
public struct SHA1: Sendable, BlockHash {
    /// The five 32-bit state words.
    public internal(set) var state: [UInt32]
    /// Bytes absorbed so far (whole blocks plus the buffered tail).
    public internal(set) var byteCount: UInt64
    var buffer: [UInt8] = []

    private static let initial: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]

    /// A fresh hash.
    public init() {
        state = Self.initial
        byteCount = 0
    }

    /// Resumes from an intermediate state: `state` after `byteCount` bytes, a multiple of 64.
    /// Returns `nil` when `state` does not hold 5 words or `byteCount` is not a whole number of blocks.
    public init?(state: [UInt32], byteCount: UInt64) {
        guard state.count == 5, byteCount % 64 == 0 else { return nil }
        self.state = state
        self.byteCount = byteCount
    }

    /// The state as 20 big-endian bytes (the form PSO HASH carries).
    public var stateBytes: [UInt8] { bigEndianState }

    /// Absorbs `data`.
    public mutating func update<C: Collection>(_ data: C) where C.Element == UInt8 { absorb(data) }

    /// The digest (20 bytes). The value itself is left unchanged.
    public func finalize() -> [UInt8] { digestBytes() }

    /// The SHA-1 digest of `data`.
    public static func digest<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var h = SHA1()
        h.update(data)
        return h.finalize()
    }

    mutating func compress(_ block: ArraySlice<UInt8>) {
        var w = Self.words(block, count: 80)
        @inline(__always) func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { x << n | x >> (32 - n) }
        for t in 16..<80 { w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1) }
        var a = state[0], b = state[1], c = state[2], d = state[3], e = state[4]
        for t in 0..<80 {
            let f: UInt32, k: UInt32
            switch t {
            case 0..<20: f = (b & c) | (~b & d); k = 0x5A827999
            case 20..<40: f = b ^ c ^ d; k = 0x6ED9EBA1
            case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC
            default: f = b ^ c ^ d; k = 0xCA62C1D6
            }
            let temp = rotl(a, 5) &+ f &+ e &+ k &+ w[t]
            e = d; d = c; c = rotl(b, 30); b = a; a = temp
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d; state[4] &+= e
    }
}
