import CarteCore

// The CPS2ter volet of a CPS3/CPS4 (domain-facts §5.4): class `A0`, GSM 11.11 style. SELECT by FID
// (`A0 A4 00 00 02 <FID>`) answers `9Fxx`, the FCI (tag `85`: size, FID, type) comes with GET
// RESPONSE, and errors use the `94xx`/`98xx` words. It reads the same file tree as the IAS volet.
extension SimulatedCard {
    func processCPS2ter(_ c: CommandAPDU) -> [UInt8] {
        if c.ins != 0xC0 { pending = [] }
        switch c.ins {
        case 0xA4:
            guard c.p1 == 0, c.p2 == 0 else { return sw(.wrongP1P2) }
            guard c.data.count == 2, c.le == nil else { return sw(.wrongLength) }
            let fid = UInt16(c.data[0]) << 8 | UInt16(c.data[1])
            let found: Int? = fid == 0x3F00 ? 0 : (findByFID(fid) ?? files[0].children.first { files[$0].fid == fid })
            guard let index = found else { return sw(.cps2terFileNotFound) }
            if files[index].isDF {
                currentDF = index
                currentEF = nil
            } else {
                currentDF = files[index].parent ?? 0
                currentEF = index
            }
            currentRecord = nil
            let f = files[index]
            let size = f.isDF ? 0 : f.data.count
            let type: UInt8 = index == 0 ? 1 : f.isDF ? 2 : 4
            pending = [0x85, 0x05, UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF), UInt8((f.fid ?? 0) >> 8), UInt8((f.fid ?? 0) & 0xFF), type]
            return sw(.cps2terBytesAvailable(pending.count))
        case 0xC0:
            guard c.p1 == 0, c.p2 == 0 else { return sw(.wrongP1P2) }
            guard !pending.isEmpty else { return sw(.noPreciseDiagnosis) }
            guard let le = c.le, le <= pending.count else { return sw(.wrongLength) }
            let chunk = Array(pending.prefix(le))
            pending.removeFirst(le)
            return respond(chunk, .success)
        case 0xB0:
            guard let le = c.le, c.data.isEmpty else { return sw(.wrongLength) }
            guard let ef = currentEF, files[ef].records == nil else { return sw(.cps2terFileIncompatible) }
            if canRead(ef) != nil { return sw(.cps2terPINIncorrect) }  // access condition not fulfilled
            let offset = Int(c.p1) << 8 | Int(c.p2)
            let data = files[ef].data
            guard offset + le <= data.count else { return sw(.cps2terBadAddressOrLength) }
            return respond(Array(data[offset..<(offset + le)]), .success)
        case 0x20:
            guard c.p1 == 0, c.le == nil else { return sw(.wrongP1P2) }
            guard var pin = pins[c.p2] else { return sw(.cps2terPINNotActivated) }
            defer { pins[c.p2] = pin }
            guard c.data.count == 8 || c.data.count == pin.value.count else { return sw(.wrongLength) }
            if pin.remaining == 0 { return sw(.cps2terPINLocked) }
            if constantTimeEqual(Array(c.data.prefix(pin.value.count)), pin.value) {
                pin.remaining = pin.maxTries
                pin.verified = true
                return sw(.success)
            }
            pin.remaining -= 1
            pin.verified = false
            return sw(pin.remaining == 0 ? .cps2terPINLocked : .cps2terPINIncorrect)
        default:
            return sw(.insNotSupported)
        }
    }
}
