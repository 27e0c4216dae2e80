public import CarteCore

/// A card image: everything the simulator needs to play one card — its ATR and protocol, its
/// ISO 7816-4 file tree, its PINs and its quirks. Loaded from the versioned text format documented in
/// `CardImages/README.md` (see `CardImageLoader` in CarteImages), or built in code.
public struct CardImage: Sendable, Hashable {
    /// The format version this build reads and writes.
    public static let currentFormat = 1

    /// A short human name ("Demo Vitale 2").
    public var name: String
    /// Free text for people reading the image.
    public var summary: String?
    /// Whether the image (or part of it) is a synthetic reconstruction rather than a dump of a real
    /// card. Images built from [P] facts must say so; the simulator repeats it in reports.
    public var synthetic: Bool
    /// Where the image came from (a file path, `bundled:demo/vitale2-demo.yaml`), for messages.
    public var source: String?

    /// The ATR bytes the card answers a reset with.
    public var atr: [UInt8]
    /// The protocol the card runs (T=0 or T=1).
    public var cardProtocol: TransmissionProtocol
    /// Behaviour switches.
    public var behaviour: Behaviour
    /// The master file and everything under it.
    public var root: DedicatedFile
    /// The card's PINs and other verifiable reference data.
    public var pins: [PIN]
    /// Exact command → response pairs answered before any other processing.
    public var overrides: [Override]
    /// A word-addressed memory answering a proprietary class (a Vitale 1 B0' card), if any.
    public var memory: Memory? = nil
    /// The card's private keys (signature, authentication, deciphering), used by MSE SET, PSO and
    /// INTERNAL AUTHENTICATE.
    public var keys: [Key] = []
    /// The appli carte Vitale this image plays when it is a phone (synthetic protocol, docs/apcv.md).
    public var apcv: Phone? = nil
    /// Faults the slot plays on this card, each armed at an APDU number counted from the insertion.
    public var faults: [ScheduledFault] = []
    /// Entries typed on the reader's PIN pad, queued when the card is inserted (a reader without a
    /// pad ignores them).
    public var keypad: [KeypadEntry] = []
    /// Where the image was recorded (`carte record`), if it was.
    public var recorded: Recording? = nil
    /// How a recorded image answers (its transcript or its learned file system), if it is one.
    public var replay: Replay? = nil

    /// A fault of the image's schedule.
    public struct ScheduledFault: Sendable, Hashable {
        /// The APDU (1 for the first after the insertion) the fault applies to (or starts at).
        public var atAPDU: Int
        /// The fault.
        public var fault: SlotFault
        /// A scheduled fault.
        public init(atAPDU: Int, fault: SlotFault) {
            self.atAPDU = atAPDU
            self.fault = fault
        }
    }

    /// A phone running the (synthetic) appli carte Vitale in card emulation: it answers SELECT of
    /// its AID and the GET SESSION TOKEN command with a token signed by its key. Every value is
    /// synthetic; the key material never appears in a text form.
    public struct Phone: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// What the phone does when asked for a token.
        public enum Consent: String, Sendable, Hashable, CaseIterable {
            /// The holder confirms at once (the usual flow once the app is open).
            case automatic
            /// The holder declines on the phone: the command gets `6985`.
            case refuse
        }
        /// The AID the application answers to.
        public var aid: [UInt8]
        /// The id of the signing key, carried in every token.
        public var keyID: String
        /// The opaque subject handle the service maps to the insured person.
        public var subject: [UInt8]
        /// Seconds a token stays valid.
        public var tokenLifetime: Int
        /// The card image (a path or `bundled:PATH`) whose identity the simulated service gives for
        /// this phone: the same persona as a physical Vitale.
        public var identity: String
        /// How the holder answers a token request.
        public var consent: Consent
        /// The ECDSA P-256 private key in PEM (PKCS#8). Secret: never printed.
        public var privateKeyPEM: String

        /// A phone.
        public init(aid: [UInt8], keyID: String, subject: [UInt8], tokenLifetime: Int = 120, identity: String, consent: Consent = .automatic, privateKeyPEM: String) {
            self.aid = aid
            self.keyID = keyID
            self.subject = subject
            self.tokenLifetime = tokenLifetime
            self.identity = identity
            self.consent = consent
            self.privateKeyPEM = privateKeyPEM
        }

        public var description: String { "apCV phone, key \"\(keyID)\", identity \(identity), tokens valid \(tokenLifetime) s, <private key redacted>" }
        public var debugDescription: String { description }
        public var customMirror: Mirror { Mirror(self, children: ["phone": description], displayStyle: .struct) }
    }

    /// A private key on the card. Test keys only: the text forms never show the key material.
    public struct Key: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// What a key may be used for.
        public enum Usage: String, Sendable, Hashable, CaseIterable {
            /// PSO COMPUTE DIGITAL SIGNATURE (MSE template `B6`).
            case sign
            /// INTERNAL AUTHENTICATE (MSE template `A4`).
            case authenticate
            /// PSO DECIPHER (MSE template `B8`).
            case decipher
        }
        /// The key reference MSE SET names (tag `83` or `84`, or the second byte of tag `91`).
        public var reference: UInt8
        /// A label for people.
        public var label: String?
        /// The operations the key may perform.
        public var usages: Set<Usage>
        /// The condition to use the key (`pin:01`: after VERIFY of PIN 01; `always`).
        public var use: AccessRule
        /// The private key in PEM (PKCS#8). Secret: never printed.
        public var privateKeyPEM: String

        /// Creates a key.
        public init(reference: UInt8, label: String? = nil, usages: Set<Usage>, use: AccessRule, privateKeyPEM: String) {
            self.reference = reference
            self.label = label
            self.usages = usages
            self.use = use
            self.privateKeyPEM = privateKeyPEM
        }

        public var description: String {
            "key \(reference.hex)\(label.map { " \"\($0)\"" } ?? ""): \(Usage.allCases.filter(usages.contains).map(\.rawValue).joined(separator: ", ")), use \(use), <private key redacted>"
        }
        public var debugDescription: String { description }
        public var customMirror: Mirror { Mirror(self, children: ["key": description], displayStyle: .struct) }
    }

    /// A memory card's contents and addressing. The B0' commands are [C] (domain-facts §2); the exact
    /// address units and data encoding are not public, so this model is **synthetic**: addresses count
    /// `wordSize`-byte words from `firstAddress`, and `BC C0` answers the first and last addresses.
    public struct Memory: Sendable, Hashable {
        /// The class byte of the memory commands (`BC` for B0').
        public var cla: UInt8
        /// The first address (`0200` on a Vitale 1).
        public var firstAddress: UInt16
        /// Bytes per address unit.
        public var wordSize: Int
        /// The contents, from the first address on.
        public var data: [UInt8]

        /// A memory card image (B0' by default).
        public init(cla: UInt8 = 0xBC, firstAddress: UInt16 = 0x0200, wordSize: Int = 4, data: [UInt8]) {
            self.cla = cla
            self.firstAddress = firstAddress
            self.wordSize = wordSize
            self.data = data
        }

        /// The last address (ADMAX).
        public var lastAddress: UInt16 { firstAddress &+ UInt16(clamping: max(0, (data.count + wordSize - 1) / wordSize - 1)) }
    }

    /// Creates an image; see the properties for each parameter.
    public init(
        name: String,
        summary: String? = nil,
        synthetic: Bool,
        source: String? = nil,
        atr: [UInt8],
        cardProtocol: TransmissionProtocol = .t0,
        behaviour: Behaviour = Behaviour(),
        root: DedicatedFile,
        pins: [PIN] = [],
        overrides: [Override] = []
    ) {
        self.name = name
        self.summary = summary
        self.synthetic = synthetic
        self.source = source
        self.atr = atr
        self.cardProtocol = cardProtocol
        self.behaviour = behaviour
        self.root = root
        self.pins = pins
        self.overrides = overrides
    }

    /// Switches that change how the card answers.
    public struct Behaviour: Sendable, Hashable {
        /// Answer like a T=0 card: data of case 3/4 commands comes back as `61xx` (to fetch with GET
        /// RESPONSE) and a case 2 command with the wrong Le gets `6Cxx`.
        public var t0Responses: Bool
        /// The class bytes the card accepts (logical-channel bits of inter-industry classes masked out).
        /// Others get `6E00`.
        public var classes: Set<UInt8>
        /// SELECT P2 values the card refuses with `6A86` (a CPS3 refuses P2 `00`).
        public var selectRejectedP2: Set<UInt8>
        /// Seed of the deterministic generator behind GET CHALLENGE.
        public var challengeSeed: UInt64
        /// Answer class `A0` like the CPS2ter volet (GSM 11.11 style: `9Fxx`, FCI tag `85`, `94xx`/`98xx`
        /// status words; domain-facts §5.4) rather than rejecting it.
        public var cps2terVolet: Bool
        /// How many logical channels the card opens (1 = only the basic channel). A SELECT on a closed
        /// channel below this number opens it, as the CPS4 ChipDoc selection on channel 1 expects.
        public var logicalChannels: Int
        /// Put IAS-ECC security attributes in every FCP (`A1 { 8C 02 01 <read condition> }`: `00` for a
        /// free read, `12` behind a PIN), as OpenSC's IAS-ECC driver requires of a SELECT answer.
        public var securityAttributesInFCP: Bool
        /// How the card reads MSE SET and PSO commands (the CPS3's IAS-ECC or the CPS4's ChipDoc).
        public var securityOperations: SecurityOperations

        /// The two dialects of the security commands a CPx card speaks (domain-facts §5.3, §5.5).
        public enum SecurityOperations: String, Sendable, Hashable, CaseIterable {
            /// IAS-ECC (CPS3): MSE SET with `80` algorithm and `83`/`84` key; PSO HASH; PSO CDS of the
            /// card's hash or of a hash given; INTERNAL AUTHENTICATE; PSO DECIPHER with the padding
            /// indicator `81`, answering the message without its padding.
            case iasECC = "ias-ecc"
            /// ChipDoc (CPS4): MSE SET DST with `91 02 <algorithm> <key | 80>`; PSO CDS of a hash the host
            /// computed (PKCS#1 v1.5 or PSS); no INTERNAL AUTHENTICATE; PSO DECIPHER of the bare
            /// cryptogram, answering the whole RSA block (the host removes the padding).
            case chipDoc = "chipdoc"
        }

        /// Creates behaviour switches (defaults: T=0 answers, class 00 only, no SELECT quirk, no
        /// CPS2ter volet, the basic channel only, no security attributes in FCPs, IAS-ECC security commands).
        public init(t0Responses: Bool = true, classes: Set<UInt8> = [0x00], selectRejectedP2: Set<UInt8> = [], challengeSeed: UInt64 = 0x5EED, cps2terVolet: Bool = false, logicalChannels: Int = 1, securityAttributesInFCP: Bool = false, securityOperations: SecurityOperations = .iasECC) {
            self.securityOperations = securityOperations
            self.securityAttributesInFCP = securityAttributesInFCP
            self.t0Responses = t0Responses
            self.classes = classes
            self.selectRejectedP2 = selectRejectedP2
            self.challengeSeed = challengeSeed
            self.cps2terVolet = cps2terVolet
            self.logicalChannels = logicalChannels
        }
    }

    /// Who may read a file.
    public enum AccessRule: Sendable, Hashable, CustomStringConvertible {
        /// Anyone, any time.
        case always
        /// Nobody (the card answers `6982`).
        case never
        /// Only after the PIN with this reference was verified.
        case pin(UInt8)

        public var description: String {
            switch self {
            case .always: return "always"
            case .never: return "never"
            case .pin(let ref): return "pin:\(ref.hex)"
            }
        }
    }

    /// A dedicated file (the MF, an application, a sub-directory).
    public struct DedicatedFile: Sendable, Hashable {
        /// The 2-byte file identifier (`3F00` for the MF), if any.
        public var fid: UInt16?
        /// The DF name / application identifier, if any.
        public var aid: [UInt8]?
        /// A label for people ("MF_VITALE").
        public var label: String?
        /// Exact FCI bytes to answer SELECT with (overrides the generated `6F`/`62` template).
        public var fci: [UInt8]?
        /// The children, in order.
        public var children: [Node]

        /// Creates a DF.
        public init(fid: UInt16? = nil, aid: [UInt8]? = nil, label: String? = nil, fci: [UInt8]? = nil, children: [Node] = []) {
            self.fid = fid
            self.aid = aid
            self.label = label
            self.fci = fci
            self.children = children
        }
    }

    /// An elementary file.
    public struct ElementaryFile: Sendable, Hashable {
        /// The 2-byte file identifier, if any.
        public var fid: UInt16?
        /// The short file identifier (1…30), if any.
        public var sfi: UInt8?
        /// A label for people ("POINTERS").
        public var label: String?
        /// Read access rule.
        public var read: AccessRule
        /// The content.
        public var content: Content
        /// Exact FCI bytes to answer SELECT with.
        public var fci: [UInt8]?
        /// Whether this file's content is a synthetic reconstruction.
        public var synthetic: Bool

        /// Creates an EF.
        public init(fid: UInt16? = nil, sfi: UInt8? = nil, label: String? = nil, read: AccessRule = .always, content: Content, fci: [UInt8]? = nil, synthetic: Bool = false) {
            self.fid = fid
            self.sfi = sfi
            self.label = label
            self.read = read
            self.content = content
            self.fci = fci
            self.synthetic = synthetic
        }
    }

    /// The content of an elementary file.
    public enum Content: Sendable, Hashable {
        /// A transparent EF (READ BINARY).
        case transparent([UInt8])
        /// A record EF (READ RECORD), records numbered from 1.
        case records([[UInt8]])
    }

    /// A node of the file tree.
    public enum Node: Sendable, Hashable {
        case dedicated(DedicatedFile)
        case elementary(ElementaryFile)
    }

    /// A PIN (or other reference data checked by VERIFY). Its text forms (`description`, `dump`,
    /// debuggers) never show the value.
    public struct PIN: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// The reference in VERIFY's P2 (for example `01` global, `81` local).
        public var reference: UInt8
        /// The exact bytes VERIFY must carry (padding included).
        public var value: [UInt8]
        /// The try counter's maximum.
        public var maxTries: Int
        /// Tries left when the card is inserted (0 = blocked).
        public var remainingTries: Int
        /// A label for people ("PIN porteur").
        public var label: String?
        /// The reference of the unblocking code (PUK) whose RESET RETRY COUNTER resets this PIN, if any.
        public var unblockedBy: UInt8?
        /// The usage counter reported in GET DATA tag `9D` (uses left), if the card keeps one.
        public var usageCounter: Int?

        public var description: String {
            "PIN \(reference.hex)\(label.map { " \"\($0)\"" } ?? ""): \(remainingTries)/\(maxTries) tries, value <redacted \(value.count) bytes>"
        }
        public var debugDescription: String { description }
        public var customMirror: Mirror { Mirror(self, children: ["pin": description], displayStyle: .struct) }

        /// Creates a PIN; `remainingTries` defaults to `maxTries`.
        public init(reference: UInt8, value: [UInt8], maxTries: Int = 3, remainingTries: Int? = nil, label: String? = nil, unblockedBy: UInt8? = nil, usageCounter: Int? = nil) {
            self.reference = reference
            self.value = value
            self.maxTries = maxTries
            self.remainingTries = remainingTries ?? maxTries
            self.label = label
            self.unblockedBy = unblockedBy
            self.usageCounter = usageCounter
        }
    }

    /// An exact command and the response the card gives to it.
    public struct Override: Sendable, Hashable {
        /// The exact command bytes.
        public var command: [UInt8]
        /// The response bytes (data + SW1 SW2).
        public var response: [UInt8]
        /// Creates a pair.
        public init(command: [UInt8], response: [UInt8]) {
            self.command = command
            self.response = response
        }
    }
}
