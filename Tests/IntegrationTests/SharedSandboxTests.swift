import PCSCTestSupport
import Testing

/// End-to-end tests through the shared sandbox's pcscd and daemon (PCSCSandbox): one serialized suite
/// that the capability folders extend (ApCV, Article, CAPI, CPS, Faults, Clients). It takes its turn on
/// the sandbox with the backend's own suite (CartePCSCTests), so they never move cards under each other.
@Suite("Through the shared private pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .sharedSandbox, .timeLimit(.minutes(3)))
struct SharedSandboxTests {}
