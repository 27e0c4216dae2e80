/// SHA-256 (FIPS 180-4) in pure Swift, with access to the intermediate state.
///
/// The intermediate state is what a CPS3 "hash the last block on the card" exchange carries
/// (PSO HASH with tag `90`: the host hashes every whole block but the last, sends the eight state
/// words and the bit count, and the card finishes). Everything else in CarteKit hashes with
/// ``digest(_:)``; tests check this implementation against OpenSSL's.
public struct SHA256: Sendable, BlockHash {
    /// The eight 32-bit state words.
    public internal(set) var state: [UInt32]
    /// Bytes absorbed so far (whole blocks plus the buffered tail).
    public internal(set) var byteCount: UInt64
    var buffer: [UInt8] = []

    private static let initial: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    /// A fresh hash.
    public init() {
        state = Self.initial
        byteCount = 0
    }

    /// Resumes from an intermediate state: `state` after `byteCount` bytes, a multiple of 64.
    /// Returns `nil` when `state` does not hold 8 words or `byteCount` is not a whole number of blocks.
    public init?(state: [UInt32], byteCount: UInt64) {
        guard state.count == 8, byteCount % 64 == 0 else { return nil }
        self.state = state
        self.byteCount = byteCount
    }

    /// The state as 32 big-endian bytes (the form PSO HASH carries).
    public var stateBytes: [UInt8] { bigEndianState }

    /// Absorbs `data`.
    public mutating func update<C: Collection>(_ data: C) where C.Element == UInt8 { absorb(data) }

    /// The digest (32 bytes). The value itself is left unchanged.
    public func finalize() -> [UInt8] { digestBytes() }

    /// The SHA-256 digest of `data`.
    public static func digest<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var h = SHA256()
        h.update(data)
        return h.finalize()
    }

    mutating func compress(_ block: ArraySlice<UInt8>) {
        var w = Self.words(block, count: 64)
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7]
        for t in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ ch &+ Self.k[t] &+ w[t]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            h = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
}
