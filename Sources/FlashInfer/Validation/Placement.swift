import FlashInferCUDA

/// Where the tensors of a call must be: host memory (the CPU backend) or one device (the CUDA
/// backend's stream's). A backend says which (`BackendImplementation.placement`); validation
/// checks every tensor of a call against it, once, with `checkPlacement`.
enum Placement {
    case host
    case device(Device)
}

/// Every tensor where the backend computes: in host memory for the CPU backend; in device memory,
/// on the stream's device, for the CUDA backend. The one placement rule of the library: the single
/// calls (`validateSingle`), the merges, the append and the wrappers' `run` call it.
func checkPlacement(_ tensors: [(String, Tensor)], _ placement: Placement) throws(FlashInferError) {
    for (name, t) in tensors { try checkPlacement(name, t, placement) }
}

/// One tensor's placement (nil: an absent optional tensor, nothing to check); no array built, for
/// run() paths.
func checkPlacement(_ name: String, _ t: Tensor?, _ placement: Placement) throws(FlashInferError) {
    guard let t else { return }
    switch placement {
    case .host:
        guard !t.isOnDevice else { throw .placement(tensor: name, expected: "host (the CPU backend)") }
    case .device(let device):
        guard t.isOnDevice else { throw .placement(tensor: name, expected: "device (the CUDA backend)") }
        guard t.device === device else { throw .deviceMismatch(tensor: name) }
    }
}

/// An index or value array the caller keeps in device memory (read by a kernel, never by the host):
/// on the device the call runs on (the CPU backend takes host values only), and at least `count`
/// elements of `elementBytes` bytes.
func checkDeviceValues(_ b: DeviceBuffer, name: String, count: Int, elementBytes: Int, placement: Placement) throws(FlashInferError) {
    switch placement {
    case .host: throw .placement(tensor: name, expected: "host (values in device memory need the CUDA backend)")
    case .device(let d): guard b.device === d else { throw .deviceMismatch(tensor: name) }
    }
    guard b.byteCount >= elementBytes * count else {
        throw .shape(tensor: name, axis: 0, name: "elements (\(elementBytes)-byte)", expected: ">= \(count)", got: b.byteCount / elementBytes)
    }
}
