public import CarteCore

/// The **synthetic** appli carte Vitale (apCV) protocol CarteKit models (docs/apcv.md).
///
/// Nothing technical about the real apCV is public (domain-facts §6, [U]): not the HCE AID, the APDU
/// dialogue, the QR payload, the token format nor the service's endpoints. Everything here is
/// CarteKit's own design, realistic but invented, so editors can build and test the flow now; every
/// value that would come from the real protocol is configurable (``ApCVProtocol/Configuration``), and the
/// resolution step is a protocol (``ApCVResolver``) the real service can implement later without
/// changing an editor's code.
public enum ApCVProtocol {
    /// The synthetic AID of the phone's HCE application: `F0` (proprietary, not registered) followed by
    /// "SYNAPCV" in ASCII, so a trace shows at once that it is not the real one.
    public static let syntheticAID: [UInt8] = [0xF0, 0x53, 0x59, 0x4E, 0x41, 0x50, 0x43, 0x56]

    /// The class of the synthetic GET SESSION TOKEN command (proprietary class).
    public static let tokenCLA: UInt8 = 0x80
    /// The instruction of the synthetic GET SESSION TOKEN command.
    public static let tokenINS: UInt8 = 0x50

    /// The prefix of a QR payload (the synthetic format's version 1).
    public static let qrPrefix = "APCV1:"

    /// The ATR a PC/SC reader synthesises for an ISO 14443-4 type A target with no historical bytes
    /// (PC/SC part 3 §3.1.3.2.3.1), as a phone in card emulation presents itself: `3B 80 80 01 01`.
    public static let phoneATR: [UInt8] = [0x3B, 0x80, 0x80, 0x01, 0x01]

    /// Tags of the session token (BER-TLV; see ``SessionToken``).
    public enum Tag {
        /// The whole token: the signed content then the signature.
        public static let token: TLVTag = 0x7F70
        /// The signed content.
        public static let content: TLVTag = 0x7F71
        /// The ECDSA signature (DER) of the encoded content.
        public static let signature: TLVTag = 0x5F37
        /// Format version (1 byte, `01`).
        public static let version: TLVTag = 0x80
        /// Token id (16 random bytes): what single use is checked on.
        public static let tokenID: TLVTag = 0x81
        /// The id of the key that signed (UTF-8).
        public static let keyID: TLVTag = 0x82
        /// The audience: the professional software's id (UTF-8).
        public static let audience: TLVTag = 0x83
        /// Issued at (4 bytes, seconds since 1970, big-endian).
        public static let issuedAt: TLVTag = 0x84
        /// Expires at (4 bytes, seconds since 1970, big-endian).
        public static let expiresAt: TLVTag = 0x85
        /// The subject: an opaque handle the insurer's service maps to the insured person.
        public static let subject: TLVTag = 0x86
        /// The channel: `01` NFC, `02` QR code.
        public static let channel: TLVTag = 0x87
        /// The reader's nonce, echoed (NFC only; 8 bytes).
        public static let nonce: TLVTag = 0x88
    }

    /// What a reader or a resolver may need to change when the real protocol is known. Every default
    /// is synthetic.
    public struct Configuration: Hashable, Sendable {
        /// The AID the NFC source selects.
        public var aid: [UInt8]
        /// The professional software's id, sent to the phone and checked as the token's audience
        /// (a ``ApCVSource`` uses its resolver's; this one is the default of the CLI and libcarte).
        public var softwareID: String

        /// A configuration; the defaults are synthetic. (The service's time checks are configured on
        /// ``TokenVerifier`` and ``ApCVService``.)
        public init(aid: [UInt8] = ApCVProtocol.syntheticAID, softwareID: String = "CARTEKIT-DEMO-LGO") {
            self.aid = aid
            self.softwareID = softwareID
        }
    }
}
