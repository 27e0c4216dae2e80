public import CarteCrypto
public import CarteVitale
import Synchronization

/// Turns an apCV session token into the insured person's identity: the role of the insurer's
/// service (SESAM-Vitale / Assurance Maladie) in the real flow. A resolver acts for one professional
/// software (its ``softwareID``), the audience tokens must name. Implementations: ``ApCVService``'s
/// ``ApCVService/resolver(for:)`` in process (the simulator's), `HTTPApCVResolver` (CarteApCVHTTP) against a service
/// over HTTP (the simulated one of `carte sim apcv-service`); the real service plugs in as another one.
public protocol ApCVResolver: Sendable {
    /// The professional software this resolver acts for.
    var softwareID: String { get }
    /// The identity for `token` (its bytes as the phone gave them), the same model as a Carte Vitale
    /// read (generation ``VitaleCard/Generation/apcv``). Throws the token's failure: tampered,
    /// expired, replayed, foreign, unknown.
    func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard
}

/// Checks a session token: signature by a known key, validity period, single use and audience.
public final class TokenVerifier: Sendable {
    /// The phones' public keys by key id.
    public let keys: [String: ECPublicKey]
    /// Tolerated clock difference, seconds.
    public let clockSkew: Int64
    /// The longest lifetime accepted, seconds.
    public let maximumLifetime: Int64
    private let clock: @Sendable () -> Int64
    /// Token ids already redeemed, with their expiry (kept until then, plus the skew), and when they
    /// were last pruned (at most once a second, so a check stays O(1) on average).
    private let redeemed = Mutex<(ids: [[UInt8]: Int64], prunedAt: Int64)>(([:], .min))

    /// A verifier. `clock` gives the current time in seconds since 1970 (injectable for tests).
    /// `clockSkew` is kept within 0…3600 s and `maximumLifetime` within 1…86400 s.
    public init(keys: [String: ECPublicKey], clockSkew: Int64 = 30, maximumLifetime: Int64 = 600,
                clock: @escaping @Sendable () -> Int64 = { currentUnixTime() }) {
        self.keys = keys
        self.clockSkew = min(max(clockSkew, 0), 3600)
        self.maximumLifetime = min(max(maximumLifetime, 1), 86_400)
        self.clock = clock
    }

    /// How many redeemed token ids are remembered (each until it could no longer pass the validity check).
    public var rememberedTokens: Int { redeemed.withLock { $0.ids.count } }

    /// Decodes and checks `bytes` for the software `audience`, then marks the token used. The order of
    /// the checks is fixed, so a token with several faults always gives the same error: format, key,
    /// signature, audience, nonce, lifetime, validity, single use.
    public func verify(_ bytes: [UInt8], audience: String, expectedNonce: [UInt8]? = nil) throws(ApCVError) -> SessionToken {
        let token = try SessionToken(bytes: bytes)
        guard let key = keys[token.keyID] else { throw .unknownKey(token.keyID) }
        do { try key.verify(signature: token.signature, of: token.signedContent) } catch { throw .badSignature }
        guard token.audience == audience else { throw .foreignAudience(expected: audience, found: token.audience) }
        if let expectedNonce, token.nonce != expectedNonce { throw .nonceMismatch }
        guard token.expiresAt - token.issuedAt <= maximumLifetime else {
            throw .malformedToken("valid \(token.expiresAt - token.issuedAt) s, longer than the \(maximumLifetime) s allowed")
        }
        let now = clock()
        guard token.issuedAt <= now + clockSkew else { throw .notYetValid(issuedAt: token.issuedAt, now: now) }
        guard now <= token.expiresAt + clockSkew else { throw .expired(expiresAt: token.expiresAt, now: now) }
        let skew = clockSkew
        let fresh = redeemed.withLock { used -> Bool in
            if used.prunedAt != now {  // forget what can no longer be replayed
                used.ids = used.ids.filter { $0.value + skew >= now }
                used.prunedAt = now
            }
            guard used.ids[token.id] == nil else { return false }
            used.ids[token.id] = token.expiresAt
            return true
        }
        guard fresh else { throw .replayed(tokenID: token.idHex) }
        return token
    }
}

/// The simulated insurer's service, in process: verifies tokens (``TokenVerifier``) and looks the
/// identity up by the key that signed. `carte sim apcv-service` serves the same object over HTTP.
public final class ApCVService: Sendable {
    /// The verifier (keys, clock, used tokens).
    public let verifier: TokenVerifier
    /// What the service knows of each phone, by key id: a token is answered only with the identity
    /// of the phone whose key signed it.
    private let phones: [String: Phone]

    /// A service knowing `phones` (each phone's key and the identity behind its subject). A key id
    /// given twice keeps the last phone.
    public init(phones: [Phone], clockSkew: Int64 = 30, maximumLifetime: Int64 = 600,
                clock: @escaping @Sendable () -> Int64 = { currentUnixTime() }) {
        var byKey: [String: Phone] = [:]
        for phone in phones { byKey[phone.keyID] = phone }
        verifier = TokenVerifier(keys: byKey.mapValues(\.publicKey), clockSkew: clockSkew, maximumLifetime: maximumLifetime, clock: clock)
        self.phones = byKey
    }

    /// What the service knows of one phone: its signing key, its subject handle and the identity.
    public struct Phone: Sendable {
        /// The key id tokens carry.
        public var keyID: String
        /// The phone's public key.
        public var publicKey: ECPublicKey
        /// The subject handle tokens carry.
        public var subject: [UInt8]
        /// The insured person and beneficiaries (``VitaleCard/Generation/apcv``).
        public var identity: VitaleCard

        /// A phone record.
        public init(keyID: String, publicKey: ECPublicKey, subject: [UInt8], identity: VitaleCard) {
            self.keyID = keyID
            self.publicKey = publicKey
            self.subject = subject
            self.identity = identity
        }
    }

    /// The identity for `token` redeemed by the software `softwareID`: the identity of the phone
    /// whose key signed the token, when the token names that phone's subject (a phone's key cannot
    /// vouch for another person).
    public func resolve(token: [UInt8], softwareID: String) throws(ApCVError) -> VitaleCard {
        let checked = try verifier.verify(token, audience: softwareID)
        guard let phone = phones[checked.keyID], phone.subject == checked.subject else { throw .unknownSubject }
        return phone.identity
    }

    /// A resolver acting for the software `softwareID`, in process.
    public func resolver(for softwareID: String) -> some ApCVResolver { InProcess(service: self, softwareID: softwareID) }

    struct InProcess: ApCVResolver {
        let service: ApCVService
        let softwareID: String
        func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard {
            try service.resolve(token: token, softwareID: softwareID)
        }
    }
}

extension VitaleCard {
    /// The identity part of a card read, as the apCV service gives it: the people and the AMO,
    /// mutuelle and work-accident data, without what belongs to a physical card (type, serial number,
    /// validity, common zone, APDU count). Whether the data came from CarteKit's synthetic layout is kept.
    public var apcvIdentity: VitaleCard {
        var identity = self
        identity.generation = .apcv
        identity.cardType = nil
        identity.serialNumber = nil
        identity.validUntil = nil
        identity.commonZone = nil
        identity.apduCount = 0
        return identity
    }
}
