/// What a check found.
public enum CheckStatus: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// Nothing to do.
    case ok
    /// Worth knowing, nothing to do.
    case info
    /// Not checked (with the reason in the evidence).
    case skip
    /// Works, but should be fixed (an old firmware, a reader pcscd does not claim…).
    case warn
    /// Broken: the fix says what to do.
    case fail

    private var rank: Int { [.ok: 0, .info: 1, .skip: 2, .warn: 3, .fail: 4][self] ?? 0 }
    public static func < (a: CheckStatus, b: CheckStatus) -> Bool { a.rank < b.rank }
}

/// One diagnostic: what was checked, what was seen, and what to do.
public struct DoctorCheck: Sendable, Hashable, Codable {
    /// Stable identifier (`pcscd.answers`, `reader.CarteKit Virtual Bi-fente 00`, `usb.1-3`…).
    public var id: String
    /// One line for a person.
    public var title: String
    /// What was found.
    public var status: CheckStatus
    /// What was seen (versions, paths, names, return codes, timings).
    public var evidence: [String]
    /// What to do, when something is to be done.
    public var fix: String?

    /// A check.
    public init(id: String, title: String, status: CheckStatus, evidence: [String] = [], fix: String? = nil) {
        self.id = id
        self.title = title
        self.status = status
        self.evidence = evidence
        self.fix = fix
    }
}

/// A group of checks (pcscd, readers, cards, USB, udev).
public struct DoctorSection: Sendable, Hashable, Codable {
    /// Stable identifier (`pcscd`, `readers`, `cards`, `usb`, `udev`).
    public var id: String
    /// Its heading.
    public var title: String
    /// Its checks, in order.
    public var checks: [DoctorCheck]

    /// A section.
    public init(id: String, title: String, checks: [DoctorCheck]) {
        self.id = id
        self.title = title
        self.checks = checks
    }

    /// The worst status of the section.
    public var status: CheckStatus { checks.map(\.status).max() ?? .ok }
}

/// `carte doctor`'s report (JSON schema `carte.doctor/1`, docs/json.md).
public struct DoctorReport: Sendable, Hashable, Codable {
    /// The JSON schema name.
    public var schema = "carte.doctor/1"
    /// When it ran (ISO 8601, UTC).
    public var date: String
    /// CarteKit's version.
    public var carteVersion: String
    /// How long the checks took, in milliseconds.
    public var milliseconds: Double
    /// The sections, in order: pcscd, readers, cards, USB, udev.
    public var sections: [DoctorSection]

    /// A report.
    public init(date: String, carteVersion: String, milliseconds: Double, sections: [DoctorSection]) {
        self.date = date
        self.carteVersion = carteVersion
        self.milliseconds = milliseconds
        self.sections = sections
    }

    /// Every check.
    public var checks: [DoctorCheck] { sections.flatMap(\.checks) }
    /// The worst status.
    public var status: CheckStatus { checks.map(\.status).max() ?? .ok }
    /// The check with this id.
    public func check(_ id: String) -> DoctorCheck? { checks.first { $0.id == id } }

    /// The report for a person: sections, one line per check with its status, the evidence indented,
    /// the fix after an arrow; colours (ANSI) when `colour` is true.
    public func text(colour: Bool) -> String {
        func paint(_ s: CheckStatus) -> String {
            let label = s.rawValue.uppercased().padding(4)
            guard colour else { return "[\(label)]" }
            let code: String
            switch s {
            case .ok: code = "32"
            case .info, .skip: code = "36"
            case .warn: code = "33"
            case .fail: code = "31;1"
            }
            return "[\u{1B}[\(code)m\(label)\u{1B}[0m]"
        }
        var out: [String] = []
        for section in sections {
            out.append("\(section.title)")
            for c in section.checks {
                out.append("  \(paint(c.status)) \(c.title)")
                for e in c.evidence { out.append("         \(e)") }
                if let fix = c.fix { out.append("         → \(fix)") }
            }
            out.append("")
        }
        let counts = CheckStatus.allCases.map { s in (s, checks.filter { $0.status == s }.count) }.filter { $0.1 > 0 }
        out.append("Summary: " + counts.map { "\($0.1) \($0.0.rawValue)" }.joined(separator: ", ")
                   + " — \(status == .fail ? "something is broken (see FAIL)" : status == .warn ? "works, with warnings" : "all good")"
                   + " (\(Int(milliseconds.rounded())) ms)")
        return out.joined(separator: "\n")
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
