/// What SHA-1 and SHA-256 share (FIPS 180-4 §5.1, §6): 64-byte blocks, big-endian 32-bit state words,
/// and the final block's padding with the message length in bits. Each hash brings its compression.
protocol BlockHash {
    var state: [UInt32] { get set }
    var byteCount: UInt64 { get set }
    var buffer: [UInt8] { get set }
    /// Mixes one 64-byte block into ``state``.
    mutating func compress(_ block: ArraySlice<UInt8>)
}

extension BlockHash {
    /// The state as big-endian bytes (the form PSO HASH carries).
    var bigEndianState: [UInt8] { state.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * $0)) } } }

    /// Absorbs `data`, compressing every whole block.
    mutating func absorb<C: Collection>(_ data: C) where C.Element == UInt8 {
        byteCount &+= UInt64(data.count)
        buffer.append(contentsOf: data)
        var start = 0
        while buffer.count - start >= 64 {
            compress(buffer[start..<(start + 64)])
            start += 64
        }
        if start > 0 { buffer.removeFirst(start) }
    }

    /// The digest: the state after the padding block(s), leaving `self` unchanged.
    func digestBytes() -> [UInt8] {
        var copy = self
        let bits = byteCount &* 8
        var tail: [UInt8] = [0x80]
        tail += [UInt8](repeating: 0, count: (55 &- Int(byteCount % 64) + 64) % 64)
        tail += (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
        copy.buffer.append(contentsOf: tail)
        var start = 0
        while start < copy.buffer.count {
            copy.compress(copy.buffer[start..<(start + 64)])
            start += 64
        }
        return copy.bigEndianState
    }

    /// The 32-bit big-endian words of a block.
    static func words(_ block: ArraySlice<UInt8>, count: Int) -> [UInt32] {
        var w = [UInt32](repeating: 0, count: count)
        var i = block.startIndex
        for t in 0..<16 {
            w[t] = UInt32(block[i]) << 24 | UInt32(block[i + 1]) << 16 | UInt32(block[i + 2]) << 8 | UInt32(block[i + 3])
            i += 4
        }
        return w
    }
}
