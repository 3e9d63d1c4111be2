extension Daemon {
    /// A verified push webhook: fetch now, and relay it to the listed agents unless another
    /// Bulwark relayed it here (`WebhookRelay`).
    package func sourcePushed(body: [UInt8], relayed: Bool) {
        sourcePushed()
        guard !relayed, let relay = options.webhookRelay else { return }
        relay.relay(body, logger: logger)
    }
}
