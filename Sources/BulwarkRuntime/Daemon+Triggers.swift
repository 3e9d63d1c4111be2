package import BulwarkCore
import BulwarkGit
import BulwarkServer
package import Foundation
import Logging
import Metrics
import Prometheus
import Synchronization

/// What wakes the worker: the scheduler's ticks, changed files (through the watch index, debounced),
/// a pushed source, findings. Each only marks work as pending.
extension Daemon {
    package func requestSource() {
        pendingSource = true
        wake.yield()
    }

    package func request(_ bindings: Set<Binding>) {
        guard !bindings.isEmpty else { return }
        pendingBindings.formUnion(bindings)
        wake.yield()
    }

    package func requestAll() {
        pendingAll = true
        wake.yield()
    }

    /// Called on every tick of the scheduler: polls the source and runs controllers that are due
    /// (see `Scheduler`, on the monotonic clock). Returns how long the scheduler may sleep.
    package func tick() -> Duration {
        let due = scheduler.tick(at: clock.now(), intervals: state?.controllers.mapValues(\.interval) ?? [:])
        if due.source { requestSource() }
        if let state, !due.controllers.isEmpty {
            request(Set(state.bindings.filter { due.controllers.contains($0.controller) }))
        }
        return due.sleep
    }

    /// A file changed: the resources whose drift it can hold are re-observed. `seenAt`, when the
    /// watcher saw the first of these changes, is the detection time of any drift they hold, so
    /// MTTR counts the debounce too.
    package func fileChanged(_ paths: Set<String>, seenAt: Date = Date()) {
        var hit = Set<Binding>()
        for path in paths {
            hit.formUnion(watchIndex.files[path] ?? [])
            // A change inside a watched folder (or to the folder itself).
            var folder = path
            while !folder.isEmpty {
                hit.formUnion(watchIndex.folders[folder] ?? [])
                guard let slash = folder.lastIndex(of: "/") else { break }
                folder = String(folder[..<slash])
            }
        }
        if !hit.isEmpty {
            logger.debug("watched file changed", metadata: ["paths": .string(paths.sorted().joined(separator: ",")),
                                                            "resources": .stringConvertible(hit.count)])
        }
        for binding in hit { detections[binding] = min(detections[binding] ?? seenAt, seenAt) }
        request(hit)
    }

    /// Which bindings each watched file and folder can drift, built once per revision.
    struct WatchIndex {
        package var files: [String: Set<Binding>] = [:]
        package var folders: [String: Set<Binding>] = [:]
        package var paths: [String] { Array(files.keys) + folders.keys.map { $0 + "/" } }
    }

    func index(_ state: DesiredState) -> WatchIndex {
        var index = WatchIndex()
        for binding in state.bindings {
            guard let resource = state.resources[binding.resource], let target = state.targets[binding.target],
                  let kind = registry.kinds[resource.id.kind] else { continue }
            for path in kind.driver.watchedPaths(resource, on: target) {
                if path.hasSuffix("/") {
                    index.folders[String(path.dropLast()), default: []].insert(binding)
                } else {
                    index.files[path, default: []].insert(binding)
                }
            }
        }
        return index
    }

    /// The watcher's kernel queue overflowed: which files changed is not known, so everything
    /// is looked at again (before, the lost drifts waited for their controllers' intervals).
    package func watchedChangesLost() {
        logger.warning("file changes were lost (the kernel's inotify queue overflowed); every resource is looked at again")
        requestAll()
    }

    /// A watched path changed: after the debounce, everything that changed is one request.
    package func noteChanged(_ path: String) {
        changedPaths.insert(path)
        guard firstChangeAt == nil else { return }
        firstChangeAt = clock.wall()
        Task {
            try? await Task.sleep(for: settings.debounce)
            flushChanges()
        }
    }

    func flushChanges() {
        let seenAt = firstChangeAt ?? clock.wall()
        firstChangeAt = nil
        let paths = changedPaths
        changedPaths = []
        fileChanged(paths, seenAt: seenAt)
    }
}
