import Synchronization

/// A small thread-safe memo of launch plans, keyed by what determines a plan.
///
/// The single-request entry points are called from many threads at once (a serving engine), so
/// the table is behind a `Mutex`. A miss plans outside the lock (planning may compile a kernel,
/// which takes seconds): two threads that miss one key at once both plan, and the first plan
/// stored is the one every caller gets from then on (the two are equal: a plan is a function of
/// its key). At most `capacity` entries are kept; inserting into a full cache evicts the least
/// recently used entry, so memory stays bounded however many shapes a process sees.
final class PlanCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var lastUse: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var clock: UInt64 = 0
        var hits = 0
        var misses = 0
    }

    /// The most entries kept.
    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        precondition(capacity > 0, "PlanCache: capacity must be > 0")
        self.capacity = capacity
    }

    /// The plan for `key`: the cached one, else `make()`'s (then cached).
    func value(for key: Key, make: () throws(FlashInferError) -> Value) throws(FlashInferError) -> Value {
        let cached: Value? = state.withLock { s in
            s.clock += 1
            guard s.entries[key] != nil else {
                s.misses += 1
                return nil
            }
            s.hits += 1
            s.entries[key]!.lastUse = s.clock
            return s.entries[key]!.value
        }
        if let cached { return cached }
        let made = try make()
        return state.withLock { s in
            if let raced = s.entries[key] { return raced.value }
            if s.entries.count >= capacity, let oldest = s.entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
                s.entries[oldest] = nil
            }
            s.clock += 1
            s.entries[key] = Entry(value: made, lastUse: s.clock)
            return made
        }
    }

    /// Entries held now (≤ `capacity`).
    var count: Int { state.withLock { $0.entries.count } }

    /// Lookups answered from the cache, and lookups that planned.
    var statistics: (hits: Int, misses: Int) { state.withLock { ($0.hits, $0.misses) } }

    /// Whether `key` is cached (does not count as a use).
    func contains(_ key: Key) -> Bool { state.withLock { $0.entries[key] != nil } }

    /// Forgets every plan (`JIT.evictMemoryCache` calls this: cached plans hold loaded kernels).
    func removeAll() { state.withLock { $0.entries.removeAll() } }
}
