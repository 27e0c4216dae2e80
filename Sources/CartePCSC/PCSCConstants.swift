/// The PC/SC constants whose values are the same on pcsc-lite, Windows and macOS (the ones that differ
/// are in ``PCSCABI``).
enum SCard {
    static let shareExclusive: UInt32 = 1
    static let shareShared: UInt32 = 2
    static let shareDirect: UInt32 = 3

    static let protocolUndefined: UInt32 = 0
    static let protocolT0: UInt32 = 1
    static let protocolT1: UInt32 = 2

    static let leaveCard: UInt32 = 0
    static let resetCard: UInt32 = 1
    static let unpowerCard: UInt32 = 2
    static let ejectCard: UInt32 = 3

    static let stateUnaware: UInt32 = 0x0000
    static let stateIgnore: UInt32 = 0x0001
    static let stateChanged: UInt32 = 0x0002
    static let stateUnknown: UInt32 = 0x0004
    static let stateUnavailable: UInt32 = 0x0008
    static let stateEmpty: UInt32 = 0x0010
    static let statePresent: UInt32 = 0x0020
    static let stateAtrMatch: UInt32 = 0x0040
    static let stateExclusive: UInt32 = 0x0080
    static let stateInUse: UInt32 = 0x0100
    static let stateMute: UInt32 = 0x0200
    static let stateUnpowered: UInt32 = 0x0400

    /// `MAX_ATR_SIZE` (pcsc-lite and macOS; Windows's array has 36 bytes).
    static let maxATRSize = 33
}
