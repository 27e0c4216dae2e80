import ArgumentParser
import CarteBundledImages
import CarteCore
import Foundation
import CartePCSC
import CarteEmulator
import CarteImages
import Logging

/// Which readers a command talks to.
enum BackendKind: String, ExpressibleByArgument, CaseIterable {
    /// CarteKit's in-memory virtual readers (no pcscd needed).
    case simulator
    /// The readers pcscd knows, real or virtual (`carte sim serve` + libifdcarte.so).
    case pcsc
}

/// The option that chooses the backend (commands that can talk to pcscd).
struct BackendOptions: ParsableArguments {
    @Option(help: "Readers to use: simulator (in-memory virtual readers, the default) or pcsc (the readers pcscd knows).")
    var backend: BackendKind = .simulator
}

/// Options that set up the in-memory virtual readers.
struct SimulatorOptions: ParsableArguments {
    @Option(
        name: .customLong("profile"),
        help: ArgumentHelp(
            "Virtual reader profile to plug in (repeatable): a built-in one (\(VirtualReaderProfile.builtIn.map(\.id).joined(separator: ", ")), from Firmware/virtual/) or a profile file (carte-reader/1 YAML).",
            valueName: "NAME|FILE"))
    var profiles: [String] = []

    @Option(
        name: .customLong("image"),
        help: ArgumentHelp(
            "Card image to insert (repeatable): FILE, or SLOT=FILE where SLOT is a reader name or its unique prefix. "
                + "FILE may be bundled:PATH for an image built into carte (carte image list shows them, e.g. bundled:vitale/family-five.yaml, bundled:cps/medecin-liberal.yaml). "
                + "Default: the synthetic demo Vitale 2 in the first slot.",
            valueName: "[SLOT=]FILE"))
    var images: [String] = []

    @Flag(help: "Insert no card at all (empty readers).")
    var noCard = false

    /// The backend the options ask for: pcscd, or the in-memory simulator set up by ``makeBackend()``.
    func makeAnyBackend(_ backend: BackendKind, logger: Logger, defaultImages: [String]? = nil) throws -> any ReaderBackend {
        if backend == .pcsc {
            guard profiles.isEmpty, images.isEmpty, !noCard else {
                throw ValidationError("--profile, --image and --no-card set up the simulator; with --backend pcsc, use carte sim to drive virtual readers")
            }
            return PCSCBackend(logger: logger)
        }
        return try makeBackend(defaultImages: defaultImages, logger: logger)
    }

    /// Builds the in-memory backend: readers plugged in, images inserted.
    /// `defaultImages` replaces the demo Vitale when no --image is given (`carte cps` inserts a Vitale and a CPS).
    func makeBackend(defaultImages: [String]? = nil, logger: Logger = Logger(label: "cartekit.simulator", factory: { _ in SwiftLogNoOpLogHandler() })) throws -> SimulatorBackend {
        let backend = SimulatorBackend(logger: logger)
        let chosen = profiles.isEmpty ? ["bi-fente"] : profiles
        for id in chosen {
            if let profile = VirtualReaderProfile.builtIn.first(where: { $0.id == id }) {
                backend.addReader(profile)
            } else if FileManager.default.fileExists(atPath: id) {
                do {
                    backend.addReader(try ReaderProfileLoader.load(path: id))
                } catch {
                    throw CLIError(kind: "profile", message: error.description, exitCode: CarteExit.invalidInput)
                }
            } else {
                throw ValidationError("unknown reader profile \"\(id)\": neither a built-in one (\(VirtualReaderProfile.builtIn.map(\.id).joined(separator: ", "))) nor a file")
            }
        }
        if noCard {
            // --no-card with --image would drop the images without a word.
            guard images.isEmpty else { throw ValidationError("--no-card inserts no card: it cannot go with --image \(images.joined(separator: ", "))") }
            return backend
        }
        let specs = images.isEmpty ? (defaultImages ?? ["bundled:" + BundledImages.defaultImage.path]) : images
        var free = backendSlots(backend)
        for spec in specs {
            var slotName: String? = nil
            var file = spec
            if let eq = spec.firstIndex(of: "="), !spec[..<eq].hasPrefix("bundled:") {
                slotName = String(spec[..<eq])
                file = String(spec[spec.index(after: eq)...])
            }
            let image = try SimulatorOptions.loadImage(file)
            let target: String
            if let slotName {
                target = slotName
            } else {
                guard !free.isEmpty else {
                    throw CLIError(kind: "usage", message: "no free slot left for \(file); plug in another --profile or use SLOT=FILE", exitCode: CarteExit.invalidInput)
                }
                target = free.removeFirst()
            }
            try backend.insert(image, into: target)
            free.removeAll { $0 == target }
        }
        return backend
    }

    /// The images `--image` names (without their slots), loaded.
    func namedImages() throws -> [CardImage] {
        try images.map { spec in
            var file = spec
            if let eq = spec.firstIndex(of: "="), !spec[..<eq].hasPrefix("bundled:") { file = String(spec[spec.index(after: eq)...]) }
            return try SimulatorOptions.loadImage(file)
        }
    }

    private func backendSlots(_ backend: SimulatorBackend) -> [String] {
        // `readers()` never suspends on the simulator; read the registry synchronously.
        backend.readerNames
    }

    /// Loads an image from a file or from `bundled:PATH`.
    static func loadImage(_ spec: String) throws -> CardImage {
        if spec.hasPrefix("bundled:") {
            let path = String(spec.dropFirst("bundled:".count))
            guard let bundled = BundledImages.image(at: path) else {
                throw CLIError(kind: "image", message: "no bundled image \"\(path)\"; bundled: \(BundledImages.all.map(\.path).joined(separator: ", "))", exitCode: CarteExit.invalidInput)
            }
            do {
                return try CardImageLoader.load(text: bundled.text, source: spec)
            } catch {
                throw CLIError(kind: "image", message: error.description, exitCode: CarteExit.invalidInput)
            }
        }
        do {
            return try CardImageLoader.load(path: spec)
        } catch {
            throw CLIError(kind: "image", message: error.description, exitCode: CarteExit.invalidInput)
        }
    }
}
