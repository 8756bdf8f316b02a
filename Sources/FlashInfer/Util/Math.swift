#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@inline(__always) func _exp2(_ x: Double) -> Double { exp2(x) }
