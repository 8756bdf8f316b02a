#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
@preconcurrency import Darwin
#endif

func writeToFD2(_ buf: UnsafeRawBufferPointer) -> Int {
    write(2, buf.baseAddress, buf.count)
}

func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(cString: v)
}

func nowSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Line-buffered stdout, so that a log piped to a file or `tee` keeps every finished line even when
/// the process is killed (a timeout on the GPU machine) — stdio fully buffers a pipe by default.
func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}

/// Writes out a partial line now (a progress line that a later `print` finishes).
func flushStandardOutput() {
    fflush(stdout)
}
