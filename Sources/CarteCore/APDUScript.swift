/// A line of an APDU script that cannot be understood.
public struct APDUScriptError: Error, Hashable, Sendable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    /// 1-based column of the problem within the line, when known.
    public var column: Int?
    /// What is wrong.
    public var message: String

    /// Creates an error for `line` (and `column`, when known).
    public init(line: Int, column: Int?, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line)\(column.map { ", column \($0)" } ?? ""): \(message)" }
}

/// A script of APDUs in the style of pcsc-tools' `scriptor`: one command in hexadecimal per line,
/// `#` starts a comment (whole line or end of line), blank lines are ignored, `reset` resets the card,
/// `exit` (or `quit`) ends the script.
///
/// ```
/// # select the VITALE application
/// 00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45
/// reset
/// 00 B0 82 00 00   # read SFI 2
/// ```
public struct APDUScript: Hashable, Sendable {
    /// One step of the script.
    public enum Step: Hashable, Sendable {
        /// Send a command (decoded from `line`).
        case command(CommandAPDU, line: Int)
        /// Reset the card.
        case reset(line: Int)
    }

    /// The steps, in order.
    public var steps: [Step]

    /// Parses a script.
    /// - Throws: ``APDUScriptError`` with the line and column of the first bad line.
    public init(parsing text: String) throws(APDUScriptError) {
        var steps: [Step] = []
        var number = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            number += 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            let leading = line.count - trimmed.count
            let content = String(trimmed).trimmingTrailingWhitespace()
            if content.isEmpty { continue }
            switch content.lowercased() {
            case "reset":
                steps.append(.reset(line: number))
                continue
            case "exit", "quit":
                self.steps = steps
                return
            default:
                break
            }
            let bytes: [UInt8]
            do {
                bytes = try [UInt8](hex: content)
            } catch {
                let offset: Int
                switch error {
                case .invalidCharacter(_, let o), .oddNumberOfDigits(let o): offset = o
                }
                throw APDUScriptError(line: number, column: leading + offset + 1, message: error.description)
            }
            do {
                steps.append(.command(try CommandAPDU(bytes: bytes), line: number))
            } catch {
                throw APDUScriptError(line: number, column: nil, message: error.description)
            }
        }
        self.steps = steps
    }
}

extension String {
    fileprivate func trimmingTrailingWhitespace() -> String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
