extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }

    /// The duration in milliseconds, as a floating-point number.
    public var milliseconds: Double { seconds * 1000 }
}
