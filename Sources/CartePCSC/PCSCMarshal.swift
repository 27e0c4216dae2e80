/// Writes and reads the C structures of PC/SC byte by byte from a ``PCSCABI`` description, so one code
/// path serves the three layouts (`SCARD_READERSTATE` of 80, 64 and 61 bytes; `SCARD_IO_REQUEST` of 16
/// and 8) and each is tested on Linux. Values are little-endian: every platform CarteKit targets
/// (x86-64, arm64) is.
package enum PCSCMarshal {
    /// The number of bytes an array of `count` `SCARD_READERSTATE`s takes (the stride is the size: the
    /// platform's own arrays have no gap between elements).
    package static func readerStatesByteCount(_ count: Int, abi: PCSCABI) -> Int { count * abi.readerState.size }

    /// Writes `states` as a C array into `buffer` (at least ``readerStatesByteCount(_:abi:)`` bytes),
    /// zeroing every other byte first (Windows wants unused fields zero): `szReader` is
    /// `readerAddresses[i]`, `pvUserData` null, `dwCurrentState` the entry's current state, the output
    /// fields zero.
    package static func writeReaderStates(_ states: [PCSCReaderState], readerAddresses: [UInt], abi: PCSCABI, into buffer: UnsafeMutableRawBufferPointer) {
        let layout = abi.readerState
        precondition(readerAddresses.count == states.count && buffer.count >= readerStatesByteCount(states.count, abi: abi), "reader-state buffer too small")
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        for (i, state) in states.enumerated() {
            let base = i * layout.size
            store(UInt64(readerAddresses[i]), size: abi.pointerSize, at: base + layout.readerOffset, in: buffer)
            store(UInt64(state.currentState), size: abi.wordSize, at: base + layout.currentStateOffset, in: buffer)
        }
    }

    /// Reads back each entry's `dwEventState` and ATR (`cbAtr` beyond the array's capacity is cut to it:
    /// a library's bad length never reads outside the structure).
    package static func readReaderStates(_ states: inout [PCSCReaderState], abi: PCSCABI, from buffer: UnsafeRawBufferPointer) {
        let layout = abi.readerState
        precondition(buffer.count >= readerStatesByteCount(states.count, abi: abi), "reader-state buffer too small")
        for i in states.indices {
            let base = i * layout.size
            states[i].eventState = UInt32(truncatingIfNeeded: load(size: abi.wordSize, at: base + layout.eventStateOffset, in: buffer))
            let length = min(Int(truncatingIfNeeded: load(size: abi.wordSize, at: base + layout.atrLengthOffset, in: buffer)), layout.atrCapacity)
            let start = base + layout.atrOffset
            states[i].atr = length > 0 ? Array(buffer[start..<(start + max(0, length))]) : []
        }
    }

    /// An `SCARD_IO_REQUEST` for `protocol` (`cbPciLength` = the structure's size).
    package static func ioRequest(protocol: UInt32, abi: PCSCABI) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: abi.ioRequest.size)
        bytes.withUnsafeMutableBytes { b in
            store(UInt64(`protocol`), size: abi.wordSize, at: abi.ioRequest.protocolOffset, in: b)
            store(UInt64(abi.ioRequest.size), size: abi.wordSize, at: abi.ioRequest.lengthOffset, in: b)
        }
        return bytes
    }

    /// `text` as the platform's NUL-terminated string (UTF-8, or UTF-16LE for the `…W` functions).
    package static func encodeString(_ text: String, abi: PCSCABI) -> [UInt8] {
        switch abi.encoding {
        case .utf8:
            return Array(text.utf8) + [0]
        case .utf16LittleEndian:
            var out: [UInt8] = []
            out.reserveCapacity(text.utf16.count * 2 + 2)
            for unit in text.utf16 { out += [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
            return out + [0, 0]
        }
    }

    /// A multi-string (`SCardListReaders`: names each ended by NUL, the list by another NUL) of
    /// `units` characters in the platform's encoding. Stops at the first empty name or the end.
    package static func decodeMultiString(_ bytes: UnsafeRawBufferPointer, units: Int, abi: PCSCABI) -> [String] {
        let unitSize = abi.encoding.unitSize
        let count = min(units, bytes.count / unitSize)
        var names: [String] = []
        var current: [UInt16] = []
        var currentUTF8: [UInt8] = []
        for i in 0..<count {
            let unit: UInt16 = unitSize == 1 ? UInt16(bytes[i]) : UInt16(bytes[2 * i]) | UInt16(bytes[2 * i + 1]) << 8
            if unit == 0 {
                let name = unitSize == 1 ? String(decoding: currentUTF8, as: UTF8.self) : String(decoding: current, as: UTF16.self)
                if name.isEmpty { break }
                names.append(name)
                current.removeAll(keepingCapacity: true)
                currentUTF8.removeAll(keepingCapacity: true)
            } else if unitSize == 1 {
                currentUTF8.append(UInt8(unit))
            } else {
                current.append(unit)
            }
        }
        return names
    }

    /// Stores the low `size` bytes of `value` little-endian at `offset`.
    package static func store(_ value: UInt64, size: Int, at offset: Int, in buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<size { buffer[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// Loads `size` bytes little-endian from `offset`.
    package static func load(size: Int, at offset: Int, in buffer: UnsafeRawBufferPointer) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<size { value |= UInt64(buffer[offset + i]) << (8 * UInt64(i)) }
        return value
    }
}
