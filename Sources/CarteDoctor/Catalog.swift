import CarteCore
import CarteBundledProfiles
import CarteYAML
import Yams

/// The reader catalog (`Firmware/catalog.yaml`, format `carte-reader-catalog/1`): SESAM-Vitale / PC/SC
/// readers with their USB ids, layout and the firmware release libccid lists, and the reader names of
/// the legacy GALSS/PSS stack.
public struct ReaderCatalog: Sendable, Hashable {
    /// A USB vendor and product id.
    public struct USBID: Sendable, Hashable, CustomStringConvertible {
        /// `idVendor`.
        public var vendor: UInt16
        /// `idProduct`.
        public var product: UInt16
        /// A USB id.
        public init(vendor: UInt16, product: UInt16) {
            self.vendor = vendor
            self.product = product
        }
        /// `VVVV:PPPP`.
        public var description: String { vendor.hex + ":" + product.hex }
    }

    /// One reader model.
    public struct Entry: Sendable, Hashable {
        /// Stable identifier (`af-care-one`).
        public var id: String
        /// The name pcscd gives it (libccid's friendly name).
        public var name: String
        /// Its USB ids.
        public var usb: [USBID]
        /// Interfaces and slots, in words.
        public var layout: String
        /// Slots, when known.
        public var slots: Int?
        /// Whether its interface is CCID-class (`true`) or vendor-specific.
        public var ccidClass: Bool
        /// Whether libccid lists it (pcscd claims it once libccid is installed).
        public var inLibCCID: Bool
        /// The bcdDevice of libccid's descriptor dump for the model (`1.08`), when known.
        public var listedFirmware: String?
        /// Where the facts come from.
        public var source: String
        /// What to do when pcscd does not claim it (readers absent from libccid).
        public var remedy: String?
        /// Whether the model has a PIN pad its CCID descriptor announces (`bPINSupport`), so a reader
        /// of this model that lists no secure-PIN feature is misconfigured.
        public var pinPad: Bool = false
    }

    /// A reader name shown by the legacy GALSS/PSS stack.
    public struct LegacyName: Sendable, Hashable {
        /// Matched as a prefix, without regard to case.
        public var pattern: String
        /// Where the name comes from.
        public var source: String
    }

    /// The reader models.
    public var entries: [Entry]
    /// The legacy GALSS/PSS reader names.
    public var legacy: [LegacyName]
    /// What to do about a legacy-mode reader.
    public var legacyAdvice: String

    /// The catalog built into CarteKit.
    public static let bundled: ReaderCatalog = {
        do { return try load(text: BundledProfiles.catalog, source: "Firmware/catalog.yaml") } catch {
            preconditionFailure("the bundled catalog is invalid: \(error)")  // the tests load it: a build-time mistake
        }
    }()

    /// The entry with these USB ids.
    public func entry(vendor: UInt16, product: UInt16) -> Entry? {
        entries.first { $0.usb.contains(USBID(vendor: vendor, product: product)) }
    }

    /// The entry whose name starts the pcscd reader name (without regard to case).
    public func entry(readerName: String) -> Entry? {
        let lower = readerName.lowercased()
        return entries.filter { lower.hasPrefix($0.name.lowercased()) }.max { $0.name.count < $1.name.count }
    }

    /// The legacy name `readerName` starts with, if any.
    public func legacyName(_ readerName: String) -> LegacyName? {
        let lower = readerName.lowercased()
        return legacy.first { lower.hasPrefix($0.pattern.lowercased()) }
    }

    /// Why a catalog file is invalid.
    public struct CatalogError: Error, Hashable, Sendable, CustomStringConvertible {
        /// What is wrong, with the file and the field.
        public let description: String
    }

    /// Parses a catalog file.
    public static func load(text: String, source: String) throws(CatalogError) -> ReaderCatalog {
        // Keys that are not text first: Yams sorts duplicated sequence keys with 2^depth comparisons (CarteYAML).
        if let key = YAMLKeyGuard.firstNonTextKey(in: text) {
            throw CatalogError(description: "\(source):\(key.line):\(key.column): a key must be text, not \(key.kind)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw CatalogError(description: "\(source): not YAML: \(error)") }
        guard let map = root?.mapping else { throw CatalogError(description: "\(source): not a mapping") }
        guard map["format"]?.string == "carte-reader-catalog/1" else { throw CatalogError(description: "\(source): format is not carte-reader-catalog/1") }
        func string(_ node: Node?, _ what: String) throws(CatalogError) -> String {
            guard let s = node?.string, !s.isEmpty else { throw CatalogError(description: "\(source): \(what) is missing") }
            return s
        }
        var entries: [Entry] = []
        for (i, node) in (map["readers"]?.sequence ?? []).enumerated() {
            guard let r = node.mapping else { throw CatalogError(description: "\(source): readers[\(i)] is not a mapping") }
            let id = try string(r["id"], "readers[\(i)].id")
            var ids: [USBID] = []
            for u in r["usb"]?.sequence ?? [] {
                let parts = (u.string ?? "").split(separator: ":")
                guard parts.count == 2, let v = UInt16(parts[0], radix: 16), let p = UInt16(parts[1], radix: 16) else {
                    throw CatalogError(description: "\(source): \(id): usb \"\(u.string ?? "")\" is not VVVV:PPPP")
                }
                ids.append(USBID(vendor: v, product: p))
            }
            guard !ids.isEmpty else { throw CatalogError(description: "\(source): \(id): no usb id") }
            let klass = try string(r["class"], "\(id).class")
            guard klass == "ccid" || klass == "vendor" else { throw CatalogError(description: "\(source): \(id): class is ccid or vendor") }
            let libccid = try string(r["libccid"], "\(id).libccid")
            guard libccid == "listed" || libccid == "absent" else { throw CatalogError(description: "\(source): \(id): libccid is listed or absent") }
            let firmware = r["firmware"]?.mapping?["listed"]?.string
            if let firmware, Version(firmware) == nil { throw CatalogError(description: "\(source): \(id): firmware \"\(firmware)\" is not a version") }
            let remedy = r["remedy"]?.string
            if libccid == "absent" && remedy == nil { throw CatalogError(description: "\(source): \(id): a reader absent from libccid needs a remedy") }
            var pinPad = false
            if let n = r["pin-pad"] {
                guard let b = n.bool else { throw CatalogError(description: "\(source): \(id): pin-pad is true or false") }
                pinPad = b
            }
            entries.append(Entry(id: id, name: try string(r["name"], "\(id).name"), usb: ids, layout: try string(r["layout"], "\(id).layout"),
                                 slots: r["slots"]?.int, ccidClass: klass == "ccid", inLibCCID: libccid == "listed", listedFirmware: firmware,
                                 source: try string(r["source"], "\(id).source"), remedy: remedy, pinPad: pinPad))
        }
        var legacy: [LegacyName] = []
        for (i, node) in (map["legacy"]?.sequence ?? []).enumerated() {
            legacy.append(LegacyName(pattern: try string(node.mapping?["pattern"], "legacy[\(i)].pattern"), source: try string(node.mapping?["source"], "legacy[\(i)].source")))
        }
        return ReaderCatalog(entries: entries, legacy: legacy, legacyAdvice: try string(map["legacy-advice"], "legacy-advice"))
    }
}

/// A dotted version (`1.08`, `4.22`), compared part by part as numbers.
public struct Version: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The numbers between the dots.
    public let parts: [Int]
    /// The text it was made from.
    public let description: String

    /// Parses `1.08`; `nil` unless 1 to 4 dot-separated numbers.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard !parts.isEmpty, parts.count <= 4, parts.allSatisfy({ $0 != nil }) else { return nil }
        self.parts = parts.map { $0! }
        description = text
    }

    public static func < (a: Version, b: Version) -> Bool {
        for i in 0..<max(a.parts.count, b.parts.count) {
            let x = i < a.parts.count ? a.parts[i] : 0, y = i < b.parts.count ? b.parts[i] : 0
            if x != y { return x < y }
        }
        return false
    }

    public static func == (a: Version, b: Version) -> Bool { !(a < b) && !(b < a) }
    public func hash(into hasher: inout Hasher) { hasher.combine(parts.reversed().drop { $0 == 0 }.reversed() as [Int]) }
}
