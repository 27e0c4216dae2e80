import Testing

/// The suites that drive the shared sandbox (its daemon's cards, its pcscd) take turns: each holds the
/// sandbox for its whole run, so a suite of the PC/SC backend tests and one of the integration tests
/// never insert, remove or hold cards under each other. Suites that start their own pcscd do not need it.
package struct SharedSandboxTrait: SuiteTrait, TestScoping {
    package var isRecursive: Bool { false }

    package func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await SandboxTurns.shared.acquire()
        do {
            try await function()
        } catch {
            await SandboxTurns.shared.release()
            throw error
        }
        await SandboxTurns.shared.release()
    }
}

extension Trait where Self == SharedSandboxTrait {
    /// Holds the shared sandbox for the suite's whole run (see ``SharedSandboxTrait``).
    package static var sharedSandbox: Self { SharedSandboxTrait() }
}

/// A first-come, first-served turn on the shared sandbox.
actor SandboxTurns {
    static let shared = SandboxTurns()
    private var held = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            held = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}
