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
        // As every carte JSON output: sorted keys, pretty-printed, absent values null (docs/json.md).
        Array(jsonText(self).utf8)
    }
}

/// A request of the rights service, parsed from its HTTP head (untrusted bytes: the fuzz target
/// `rights-request` checks this never traps).
package struct RightsRequest: Hashable, Sendable {
    /// The NIR as the path gives it (percent-decoded, spaces removed), not yet checked.
    package var nir: String
    /// The `date=YYYY-MM-DD` query parameter, if any.
    package var date: VitaleDate?

    /// Why a request is refused: the HTTP status, the error kind and message of `carte.rights-error/1`.
    package struct Refusal: Error, Hashable, Sendable {
        package var status: Int
        package var kind: String
        package var message: String
        init(_ status: Int, _ kind: String, _ message: String) {
            self.status = status
            self.kind = kind
            self.message = message
        }
    }

    /// Parses `GET /rights/v1/<NIR>[?date=YYYY-MM-DD] HTTP/1.x` and its header lines (no body allowed).
    package static func parse(head: [UInt8]) throws(Refusal) -> RightsRequest {
        guard let text = String(validating: head, as: UTF8.self) else { throw Refusal(400, "bad-request", "the request head is not UTF-8") }
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { throw Refusal(400, "bad-request", "malformed request line") }
        guard parts[0] == "GET" else { throw Refusal(405, "method-not-allowed", "only GET /rights/v1/<NIR> is served") }
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex, !line[..<colon].contains(" "), !line[..<colon].contains("\t") else {
                throw Refusal(400, "bad-request", "malformed header line")
            }
            let name = line[..<colon].lowercased()
            if name == "content-length", line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) != "0" {
                throw Refusal(400, "bad-request", "a GET has no body")
            }
            if name == "transfer-encoding" { throw Refusal(400, "bad-request", "a GET has no body") }
        }
        let target = parts[1]
        let pathAndQuery = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = pathAndQuery[0]
        guard path.hasPrefix("/rights/v1/") else { throw Refusal(404, "not-found", "unknown path; the service answers GET /rights/v1/<NIR>") }
        // Percent-decoded once (a NIR typed with spaces arrives as %20), then the spaces dropped.
        guard let decoded = String(path.dropFirst("/rights/v1/".count)).removingPercentEncoding else {
            throw Refusal(400, "bad-request", "malformed percent-encoding in the path")
        }
        let nir = decoded.filter { $0 != " " }
        var date: VitaleDate? = nil
        if pathAndQuery.count == 2 {
            for item in pathAndQuery[1].split(separator: "&", omittingEmptySubsequences: false) {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard kv.count == 2, kv[0] == "date" else {
                    throw Refusal(400, "bad-request", "unknown query parameter \"\(item.prefix(32))\" (only date=YYYY-MM-DD)")
                }
                guard let d = VitaleDate(iso: kv[1]) else { throw Refusal(400, "bad-request", "date takes YYYY-MM-DD") }
                date = d
            }
        }
        return RightsRequest(nir: nir, date: date)
    }
}

/// An error document of the service, schema `carte.rights-error/1`.
struct RightsErrorDocument: Codable {
    var schema = "carte.rights-error/1"
    var status: Int
    var error: String
    var message: String

    func json() -> [UInt8] {
        // As every carte JSON output: sorted keys, pretty-printed, absent values null (docs/json.md).
        Array(jsonText(self).utf8)
    }
}
