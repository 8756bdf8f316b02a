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
        try d.check(d.cuStreamBeginCapture(stream.handle, 1), "cuStreamBeginCapture")
        var failure: Error?
        do { try body() } catch { failure = error }
        var g: CUhandle? = nil
        let end = d.cuStreamEndCapture(stream.handle, &g)
        if let failure {
            if g != nil { _ = d.cuGraphDestroy(g) }
            throw failure
        }
        try d.check(end, "cuStreamEndCapture")
        var e: CUhandle? = nil
        let r = d.cuGraphInstantiate(&e, g, 0)
        if r != 0 {
            _ = d.cuGraphDestroy(g)
            throw d.error(r, "cuGraphInstantiateWithFlags")
        }
        return Graph(device: stream.device, graph: g, exec: e)
    }

    init(device: Device, graph: CUhandle?, exec: CUhandle?) {
        self.device = device
        self.graph = graph
        self.exec = exec
    }

    /// Replays the graph on `stream`.
    public func launch(on stream: Stream) throws(CUDAError) {
        try device.driver.check(device.driver.cuGraphLaunch(exec, stream.handle), "cuGraphLaunch")
    }

    deinit {
        _ = device.driver.cuGraphExecDestroy(exec)
        _ = device.driver.cuGraphDestroy(graph)
    }
}
