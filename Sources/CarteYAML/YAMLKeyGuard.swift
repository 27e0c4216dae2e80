// CYaml is the libyaml that Yams builds from its own sources (not a system library): this file only
// reads libyaml's event stream before Yams composes the same text, and no C type leaves it.
import CYaml

/// Finds a mapping key that is not text before Yams composes a document.
///
/// Every CarteKit YAML format (card images, personas, reader profiles, the doctor's reader catalog)
/// keys its mappings with text.
/// YAML also allows a sequence, a mapping or an alias as a key (`? [a]`, `[a]: b`, `*x : b`), and Yams
/// checks a mapping's keys for duplicates by sorting them: its ordering of nested sequences compares
/// each level twice, so duplicated keys nested `d` deep cost 2^d comparisons — a 2 KB persona held the
/// fuzzer for longer than its 10 s limit (Fuzz/Regressions/persona/timeout-d3e440dbc…), and a key that is
/// an alias of an alias bomb would be hashed in full. One pass over libyaml's events (linear in the
/// text, no node built) refuses such a document first; a text that libyaml cannot parse is left to
/// Yams, which reports the syntax error with its own words.
///
/// Package-internal: each YAML reader (`CardImageLoader.compose` in CarteImages, `ReaderCatalog.load` in
/// CarteDoctor) turns the finding into its own typed error before it calls `Yams.compose`.
package enum YAMLKeyGuard {
    /// Where the first key that is not text starts (1-based), and what it is.
    package struct NonTextKey: Equatable, Sendable {
        /// The key's first line, from 1.
        package var line: Int
        /// The key's first column, from 1.
        package var column: Int
        /// "a sequence", "a mapping" or "an alias".
        package var kind: String
    }

    /// The first mapping key in `text` that is a sequence, a mapping or an alias; nil when every key
    /// is text, or when libyaml stops on a syntax error before finding one.
    package static func firstNonTextKey(in text: String) -> NonTextKey? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return nil }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer -> NonTextKey? in
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            // One entry per open collection: for a mapping, whether its next node is a key.
            var open: [Bool?] = []
            func nodeEnded() {
                if let last = open.last, let atKey = last { open[open.count - 1] = !atKey }
            }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let atKey = open.last.flatMap { $0 } ?? false
                let mark = event.start_mark
                let here = { (kind: String) in NonTextKey(line: mark.line + 1, column: mark.column + 1, kind: kind) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SCALAR_EVENT:
                    nodeEnded()
                case YAML_ALIAS_EVENT:
                    if atKey { return here("an alias") }
                    nodeEnded()
                case YAML_SEQUENCE_START_EVENT:
                    if atKey { return here("a sequence") }
                    open.append(nil)
                case YAML_MAPPING_START_EVENT:
                    if atKey { return here("a mapping") }
                    open.append(true)
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    _ = open.popLast()
                    nodeEnded()
                default:
                    break
                }
            }
        }
    }
}
