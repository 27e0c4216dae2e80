public import CarteEmulator
import CarteBundledProfiles
import Foundation
import Yams

/// Reads virtual reader profiles (`carte-reader/1` YAML, the files of `Firmware/virtual/`): the same
/// strict checks as card images, with errors naming the file, the line and the field.
public enum ReaderProfileLoader {
    /// Loads a profile from its text; `source` names it in errors.
    public static func load(text: String, source: String) throws(CardImageError) -> VirtualReaderProfile {
        let root = try CardImageLoader.compose(text, source: source)
        let r = YAMLDocumentReader(source: source)
        let f = try r.fields(root, "", allowed: ["format", "id", "name", "vendor", "model", "firmware", "serial", "synthetic", "features", "slots", "usb", "pin-pad"])
        func required(_ key: String) throws(CardImageError) -> Node {
            guard let n = f[key] else { throw r.fail(root, key, .missingField) }
            return n
        }
        let format = try r.scalar(try required("format"), "format")
        guard format == "carte-reader/1" else { throw r.fail(f["format"], "format", .unsupportedFormat(format)) }
        let id = try r.scalar(try required("id"), "id")
        guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw r.fail(f["id"], "id", .invalidValue("an id is letters, digits and hyphens"))
        }
        let name = try r.scalar(try required("name"), "name")
        guard !name.isEmpty, name.utf8.count <= 100, name.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\"" }) else {
            throw r.fail(f["name"], "name", .invalidValue("a reader name is 1 to 100 printable ASCII characters without quotes (pcscd adds \" NN SS\")"))
        }
        let firmwareNode = try required("firmware")
        let firmware = try r.scalar(firmwareNode, "firmware")
        let parts = firmware.split(separator: ".")
        guard parts.count == 2, parts.allSatisfy({ (1...2).contains($0.count) && $0.allSatisfy(\.isNumber) }) else {
            throw r.fail(firmwareNode, "firmware", .invalidValue("a firmware version is major.minor, digits only (like \"1.08\")"))
        }
        var profile = VirtualReaderProfile(
            id: id, name: name, vendor: try r.scalar(try required("vendor"), "vendor"), firmwareVersion: firmware,
            serialNumber: try f["serial"].map { n throws(CardImageError) in try r.scalar(n, "serial") },
            slots: [], features: [], synthetic: try r.bool(try required("synthetic"), "synthetic"),
            model: try f["model"].map { n throws(CardImageError) in try r.scalar(n, "model") })
        if let n = f["features"] {
            for (i, item) in try r.list(n, "features").enumerated() { profile.features.append(try r.scalar(item, "features[\(i)]")) }
        }
        let slotsNode = try required("slots")
        for (i, item) in try r.list(slotsNode, "slots").enumerated() {
            let s = try r.fields(item, "slots[\(i)]", allowed: ["role", "contactless"])
            let role = try s["role"].map { n throws(CardImageError) in try r.scalar(n, "slots[\(i)].role") } ?? "any"
            guard ["vitale", "cpx", "any"].contains(role) else {
                throw r.fail(s["role"], "slots[\(i)].role", .invalidValue("a slot role is vitale, cpx or any"))
            }
            let contactless = try s["contactless"].map { n throws(CardImageError) in try r.bool(n, "slots[\(i)].contactless") } ?? false
            profile.slots.append(.init(role: role, contactless: contactless))
        }
        guard (1...16).contains(profile.slots.count) else { throw r.fail(slotsNode, "slots", .invalidValue("a reader has 1 to 16 slots")) }
        if let usb = f["usb"] {
            let u = try r.fields(usb, "usb", allowed: ["vendor", "product"])
            func id16(_ key: String) throws(CardImageError) -> UInt16? {
                guard let n = u[key] else { return nil }
                let bytes = try r.hex(n, "usb.\(key)")
                guard bytes.count == 2 else { throw r.fail(n, "usb.\(key)", .invalidValue("a USB id is 2 bytes in hexadecimal (like 1C34)")) }
                return UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            }
            profile.usbVendorID = try id16("vendor")
            profile.usbProductID = try id16("product")
        }
        if let pad = f["pin-pad"] { profile.pinPad = try pinPad(pad, r) }
        return profile
    }

    /// The `pin-pad` section: what the reader announces (PC/SC part 10) and its keypad's script.
    static func pinPad(_ node: Node, _ r: YAMLDocumentReader) throws(CardImageError) -> PINPadProfile {
        let p = try r.fields(node, "pin-pad", allowed: ["verify", "modify", "announced", "display", "min-pin", "max-pin", "entry-validation", "timeout2", "default-timeout", "script"])
        var pad = PINPadProfile()
        if let n = p["verify"] { pad.verify = try r.bool(n, "pin-pad.verify") }
        if let n = p["modify"] { pad.modify = try r.bool(n, "pin-pad.modify") }
        if let n = p["announced"] { pad.announced = try r.bool(n, "pin-pad.announced") }
        if let n = p["display"] {
            let text = try r.scalar(n, "pin-pad.display")
            let parts = text.split(separator: "x")
            if text == "none" {
                pad.displayCharacters = 0
                pad.displayLines = 0
            } else if parts.count == 2, let c = Int(parts[0]), let l = Int(parts[1]), (1...255).contains(c), (1...255).contains(l) {
                pad.displayCharacters = c
                pad.displayLines = l
            } else {
                throw r.fail(n, "pin-pad.display", .invalidValue("a display is CHARACTERSxLINES (like 16x2) or none"))
            }
        }
        if let n = p["min-pin"] { pad.minimumPINLength = try r.int(n, "pin-pad.min-pin", in: 1...16) }
        if let n = p["max-pin"] { pad.maximumPINLength = try r.int(n, "pin-pad.max-pin", in: 1...16) }
        guard pad.minimumPINLength <= pad.maximumPINLength else { throw r.fail(p["max-pin"] ?? node, "pin-pad.max-pin", .invalidValue("max-pin is at least min-pin")) }
        if let n = p["entry-validation"] { pad.entryValidationCondition = UInt8(try r.int(n, "pin-pad.entry-validation", in: 1...7)) }
        if let n = p["timeout2"] { pad.timeout2 = UInt8(try r.int(n, "pin-pad.timeout2", in: 0...255)) }
        if let n = p["default-timeout"] { pad.defaultTimeoutSeconds = try r.int(n, "pin-pad.default-timeout", in: 1...255) }
        if let n = p["script"] { pad.script = try keypadScript(n, "pin-pad.script", r) }
        return pad
    }

    /// A keypad script: a list of `{ digits: "1234", after-ms: 0 }`, `{ cancel: true }`, `{ timeout: true }`.
    static func keypadScript(_ node: Node, _ path: String, _ r: YAMLDocumentReader) throws(CardImageError) -> [KeypadEntry] {
        var out: [KeypadEntry] = []
        for (i, item) in try r.list(node, path).enumerated() {
            let at = "\(path)[\(i)]"
            let e = try r.fields(item, at, allowed: ["digits", "cancel", "timeout", "after-ms"])
            let after = Duration.milliseconds(try e["after-ms"].map { n throws(CardImageError) in try r.int(n, "\(at).after-ms", in: 0...600_000) } ?? 0)
            if let n = e["digits"] {
                let text = try r.scalar(n, "\(at).digits")
                let digits: KeypadDigits
                do { digits = try KeypadDigits(text) } catch { throw r.fail(n, "\(at).digits", .invalidValue(error.description)) }
                out.append(.digits(digits, after: after))
            } else if let n = e["cancel"], try r.bool(n, "\(at).cancel") {
                out.append(.cancel(after: after))
            } else if let n = e["timeout"], try r.bool(n, "\(at).timeout") {
                out.append(.timeout)
            } else {
                throw r.fail(item, at, .invalidValue("a keypad entry has digits, cancel: true or timeout: true"))
            }
        }
        return out
    }

    /// Loads the profile in the file at `path`.
    public static func load(path: String) throws(CardImageError) -> VirtualReaderProfile {
        try load(text: CardImageLoader.readText(path, maximumSize: 1 << 20), source: path)
    }

    /// The profiles of `Firmware/virtual/`, embedded in the binary. A bundled file that does not load
    /// is a build defect (a test loads every one), reported loudly.
    public static let bundled: [VirtualReaderProfile] = BundledProfiles.all.map { file in
        do {
            return try load(text: file.text, source: "bundled:" + file.path)
        } catch {
            fatalError("bundled reader profile \(file.path) is invalid: \(error)")
        }
    }
}

extension VirtualReaderProfile {
    /// One contact slot (`Firmware/virtual/mono-fente.yaml`).
    public static var monoFente: VirtualReaderProfile { builtIn.first { $0.id == "mono-fente" }! }
    /// Two contact slots: slot 0 for the Vitale card, slot 1 for the CPx card (`Firmware/virtual/bi-fente.yaml`).
    public static var biFente: VirtualReaderProfile { builtIn.first { $0.id == "bi-fente" }! }
    /// Two contact slots and a PIN pad with a display (`Firmware/virtual/bi-fente-pinpad.yaml`).
    public static var biFentePINPad: VirtualReaderProfile { builtIn.first { $0.id == "bi-fente-pinpad" }! }
    /// One contactless slot (`Firmware/virtual/contactless.yaml`).
    public static var contactless: VirtualReaderProfile { builtIn.first { $0.id == "contactless" }! }

    /// The built-in profiles: the files of `Firmware/virtual/`, embedded in the binary.
    public static var builtIn: [VirtualReaderProfile] { ReaderProfileLoader.bundled }
}
