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
        let f = try r.fields(root, "", allowed: ["format", "id", "name", "vendor", "model", "firmware", "serial", "synthetic", "features", "slots", "usb"])
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
        return profile
    }

    /// Loads the profile in the file at `path`.
    public static func load(path: String) throws(CardImageError) -> VirtualReaderProfile {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 1 << 20 else {
            throw CardImageError(file: path, field: "", problem: .unreadable(FileManager.default.fileExists(atPath: path) ? "unreadable or larger than 1 MiB" : "no such file"))
        }
        guard let text = String(data: data, encoding: .utf8) else { throw CardImageError(file: path, field: "", problem: .unreadable("the file is not UTF-8 text")) }
        return try load(text: text, source: path)
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
    /// One contactless slot (`Firmware/virtual/contactless.yaml`).
    public static var contactless: VirtualReaderProfile { builtIn.first { $0.id == "contactless" }! }

    /// The built-in profiles: the files of `Firmware/virtual/`, embedded in the binary.
    public static var builtIn: [VirtualReaderProfile] { ReaderProfileLoader.bundled }
}
