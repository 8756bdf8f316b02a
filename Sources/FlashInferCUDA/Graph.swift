import Synchronization

/// Numbers the graphs written by FLASHINFER_GRAPH_DOT.
private let dotCounter = Mutex(0)

/// A CUDA graph captured from a stream and instantiated, for replaying a fixed sequence of
/// launches with one call (what serving engines do with decode steps).
public final class Graph: @unchecked Sendable {
    public let device: Device
    let graph: CUhandle?
    let exec: CUhandle?

    /// Captures everything `body` enqueues on `stream` (which must be a non-default stream) into a graph.
    /// Work in `body` must not synchronise the stream or allocate.
    public static func capture(on stream: Stream, _ body: () throws -> Void) throws -> Graph {
        let d = stream.device.driver
        try stream.device.makeCurrent()
        // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1: other threads' unsafe calls are not affected.
        stream.captureRetained.withLock { $0 = [] }
        try d.check(d.cuStreamBeginCapture(stream.handle, 1), "cuStreamBeginCapture")
        var failure: Error?
        do { try body() } catch { failure = error }
        var g: CUhandle? = nil
        let end = d.cuStreamEndCapture(stream.handle, &g)
        // Every buffer the captured calls used, once each: the graph's kernels hold their
        // addresses, so the graph owns a reference (a cache or plan freed while the graph lives was
        // the H200's CUDA_ERROR_ILLEGAL_ADDRESS at replay in `bench decode-step`).
        let used = stream.captureRetained.withLock { list -> [DeviceBuffer] in
            defer { list = nil }
            var seen = Set<ObjectIdentifier>()
            return (list ?? []).filter { seen.insert(ObjectIdentifier($0)).inserted }
        }
        if let failure {
            if g != nil { _ = d.cuGraphDestroy(g) }
            throw failure
        }
        try d.check(end, "cuStreamEndCapture")
        // FLASHINFER_GRAPH_DOT=PREFIX: every captured graph is written to PREFIX<n>.dot (verbose:
        // node types, kernel names, grid and parameter bytes), for debugging a capture.
        if let prefix = Env.get("FLASHINFER_GRAPH_DOT"), let dot = d.cuGraphDebugDotPrint {
            let n = dotCounter.withLock { (c: inout Int) -> Int in c += 1; return c }
            _ = dot(g, "\(prefix)\(n).dot", 0x3fff)
        }
        var e: CUhandle? = nil
        let r = d.cuGraphInstantiate(&e, g, 0)
        if r != 0 {
            _ = d.cuGraphDestroy(g)
            throw d.error(r, "cuGraphInstantiateWithFlags")
        }
        return Graph(device: stream.device, graph: g, exec: e, retained: used)
    }

    init(device: Device, graph: CUhandle?, exec: CUhandle?, retained: [DeviceBuffer] = []) {
        self.device = device
        self.graph = graph
        self.exec = exec
        self.retained = retained
    }

    /// The buffers the captured library calls read or wrote (K/V caches, q, outputs, plan arrays,
    /// workspaces): alive while the graph is. Memory the captured work reached without the
    /// library (raw addresses) is the caller's to keep alive.
    public let retained: [DeviceBuffer]

    /// Replays the graph on `stream`, ordered after other streams' pending uses of the buffers it
    /// touches (each counted as written: later work on other streams waits for the replay).
    public func launch(on stream: Stream) throws(CUDAError) {
        if !stream.isCapturing {
            for b in retained { try b.orderWrite(on: stream, capturing: false) }
        }
        try device.driver.check(device.driver.cuGraphLaunch(exec, stream.handle), "cuGraphLaunch")
    }

    deinit {
        _ = device.driver.cuGraphExecDestroy(exec)
        _ = device.driver.cuGraphDestroy(graph)
    }
}
