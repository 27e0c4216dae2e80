/// The files of `web/` embedded in carte at build time (SwiftPM `embedInCode`): the agent's
/// JavaScript client and demo page (`carte agent serve --demo-port`) and the QA console's page
/// (`carte sim console`).
public enum BundledWeb {
    /// Path → (bytes, content type), as the agent's demo server serves them.
    public static let files: [String: (bytes: [UInt8], contentType: String)] = [
        "/": (PackageResources.demo_html, "text/html; charset=utf-8"),
        "/demo.html": (PackageResources.demo_html, "text/html; charset=utf-8"),
        "/demo.js": (PackageResources.demo_js, "text/javascript; charset=utf-8"),
        "/cartekit-agent.js": (PackageResources.cartekit_agent_js, "text/javascript; charset=utf-8"),
    ]

    /// Path → (bytes, content type), as `carte sim console` serves them.
    public static let console: [String: (bytes: [UInt8], contentType: String)] = [
        "/": (PackageResources.console_html, "text/html; charset=utf-8"),
        "/console.js": (PackageResources.console_js, "text/javascript; charset=utf-8"),
        "/console.css": (PackageResources.console_css, "text/css; charset=utf-8"),
    ]
}
