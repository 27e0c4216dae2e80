public import CarteEmulator
public import CarteApCV
import CarteCore
public import CarteCrypto
public import CarteVitale

/// The simulated insurer's side of the appli carte Vitale: an ``ApCVService`` that knows a set of
/// phone images, each resolving to the identity of its persona's Vitale card image.
public enum ApCVSimulation {
    /// Why the service could not be built.
    public struct SetupError: Error, Hashable, Sendable, CustomStringConvertible {
        /// The phone image at fault (its name or source).
        public var phone: String
        /// What went wrong.
        public var reason: String
        public var description: String { "apCV phone \(phone): \(reason)" }
    }

    /// The service knowing `phones` (images with an `apcv` section; others are ignored). Each phone's
    /// `identity` is loaded with `loadImage` and read in memory like a physical card, so the service
    /// gives exactly the identity of the same persona's Vitale. `clock` is the service's time.
    public static func service(phones: [CardImage], loadImage: (String) throws -> CardImage, clockSkew: Int64 = 30,
                               clock: @escaping @Sendable () -> Int64 = { currentUnixTime() }) async throws(SetupError) -> ApCVService {
        var records: [ApCVService.Phone] = []
        var seenKeys: [String: String] = [:]
        var seenSubjects: [[UInt8]: String] = [:]
        for image in phones {
            guard let phone = image.apcv else { continue }
            let name = image.source ?? image.name
            if let other = seenKeys[phone.keyID] { throw SetupError(phone: name, reason: "key id \"\(phone.keyID)\" is also the one of \(other)") }
            if let other = seenSubjects[phone.subject] { throw SetupError(phone: name, reason: "its subject handle is also the one of \(other)") }
            seenKeys[phone.keyID] = name
            seenSubjects[phone.subject] = name
            let identityImage: CardImage
            do { identityImage = try loadImage(phone.identity) } catch {
                throw SetupError(phone: name, reason: "its identity \(phone.identity) cannot be loaded: \(error)")
            }
            let card: VitaleCard
            do { card = try await readInMemory(identityImage) } catch {
                throw SetupError(phone: name, reason: "its identity \(phone.identity) cannot be read as a Carte Vitale: \(error)")
            }
            do { records.append(try phone.serviceRecord(identity: card)) } catch {
                throw SetupError(phone: name, reason: "its key: \(error)")
            }
        }
        return ApCVService(phones: records, clockSkew: clockSkew, clock: clock)
    }

    /// Reads a Vitale card image in memory, as `carte read` would read the card.
    public static func readInMemory(_ image: CardImage) async throws -> VitaleCard {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let slot = backend.readerNames[0]
        try backend.insert(image, into: slot)
        let connection = try await backend.connect(to: slot, share: .exclusive, protocols: [.t0, .t1])
        defer { Task { try? await connection.disconnect(.leave) } }
        return try await VitaleReader(channel: CardChannel(transport: connection, trace: Trace())).read(atr: await connection.atrBytes)
    }
}
