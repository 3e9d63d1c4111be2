internal import BulwarkGit

extension Daemon {
    /// A verified push webhook: fetch now, and a relay passes it on to the listed agents after
    /// its fetch, if that moved the revision, unless another Bulwark relayed it here (`WebhookRelay`).
    package func sourcePushed(body: [UInt8], relayed: Bool) {
        if !relayed, let relay = options.webhookRelay { relay.webhookArrived(body) }
        sourcePushed()
    }

    /// Before every fetch (`sync`): a relay's fetch answers for the webhooks that arrived before it.
    func sourceChecking() {
        options.webhookRelay?.fetchStarting()
    }

    /// After every fetch (`sync`): a relay relays the webhook it answers for if the revision moved.
    func sourceChecked() {
        options.webhookRelay?.sourceChecked(head: head?.hex, logger: logger)
    }
}
