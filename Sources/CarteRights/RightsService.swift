public import CarteKit
public import CarteVitale
import Foundation

/// The synthetic online rights-consultation service's knowledge: for each NIR of the Vitale cards it
/// was given (personas read as `carte read` reads them), the report `carte read --json` prints,
/// restricted to that person. Every value is synthetic; the real services' protocol is not public.
public struct RightsService: Sendable {
    /// The cards it knows, read once.
    public let cards: [VitaleCard]

    /// A service answering for the people on `cards`.
    public init(cards: [VitaleCard]) { self.cards = cards }

    /// Every NIR it can answer for.
    public var nirs: [String] {
        let day = (try? VitaleDate.todayInParis()) ?? VitaleDate("20260101")!
        return cards.flatMap { VitaleReport($0, reader: "rights-service", on: day).nirs }
    }

    /// Normalises what a caller typed (spaces allowed, Corsican `2A`/`2B`) to the 15 characters.
    public static func normalise(nir text: String) throws(RightsError) -> String {
        do { return try NIR(text).description } catch { throw .invalidNIR("\(error.description) (\"\(text.prefix(32))\")") }
    }

    /// The answer for `nir` on `day`, asked by `professional`: the `carte.rights/1` document.
    public func answer(nir: String, on day: VitaleDate, professional: Professional) throws(RightsError) -> RightsAnswer {
        let normalised = try Self.normalise(nir: nir)
        for card in cards {
            if let report = VitaleReport(card, reader: "rights-service", on: day).restricted(toNIR: normalised, reader: "rights-service") {
                return RightsAnswer(nir: normalised, date: day.iso, professional: professional, vitale: report)
            }
        }
        throw .unknownNIR(normalised)
    }

    /// Who asked: read from the client certificate the TLS handshake checked.
    public struct Professional: Codable, Hashable, Sendable {
        /// The certificate's common name (`CLAIRE DOCTEST`).
        public var name: String?
        /// Its `serialNumber` attribute: the identifier type and number (`8` + RPPS).
        public var identifier: String?
        /// The certificate's serial number (hex).
        public var certificateSerial: String
        /// The issuer's distinguished name (the TEST CPx CA).
        public var issuer: String

        /// A professional as the handshake identified them.
        public init(name: String?, identifier: String?, certificateSerial: String, issuer: String) {
            self.name = name
            self.identifier = identifier
            self.certificateSerial = certificateSerial
            self.issuer = issuer
        }
    }
}

/// The service's answer, schema `carte.rights/1` (docs/json.md): the person's part of `carte read
/// --json` (`carte.vitale/1`, one person) with the NIR asked, the evaluation date and the professional
/// the client certificate named.
public struct RightsAnswer: Encodable, Sendable {
    var schema = "carte.rights/1"
    /// Always true: the service and its data are synthetic.
    var synthetic = true
    /// The NIR asked (15 characters).
    public let nir: String
    /// The date rights are evaluated on (`YYYY-MM-DD`).
    public let date: String
    /// Who asked.
    public let professional: RightsService.Professional
    /// The person's report, as `carte read --json` gives it.
    public let vitale: VitaleReport

    /// The document's JSON (sorted keys, pretty-printed like every carte JSON output).
    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data("{}".utf8))
    }
}

/// An error document of the service, schema `carte.rights-error/1`.
struct RightsErrorDocument: Codable {
    var schema = "carte.rights-error/1"
    var status: Int
    var error: String
    var message: String

    func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data("{}".utf8))
    }
}
