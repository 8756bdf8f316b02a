#if canImport(Glibc)
import Glibc
#endif

/// A minimal JSON value and writer (the CLI has no Foundation).
indirect enum JSON {
    case string(String), number(Double), int(Int), bool(Bool), null
    case array([JSON]), object([(String, JSON)])

    func render(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1)
        let end = String(repeating: "  ", count: indent)
        switch self {
        case .string(let s): return "\"" + JSON.escape(s) + "\""
        case .number(let d): return d.isFinite ? "\(d)" : "null"
        case .int(let i): return "\(i)"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[\n" + a.map { pad + $0.render(indent: indent + 1) }.joined(separator: ",\n") + "\n" + end + "]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.map { pad + "\"\(JSON.escape($0.0))\": " + $0.1.render(indent: indent + 1) }.joined(separator: ",\n") + "\n" + end + "}"
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 { out += "\\u00" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16) } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }

    /// Writes the JSON to `path` (with a trailing newline).
    func write(to path: String) throws {
        let text = render() + "\n"
        guard let f = fopen(path, "w") else { throw ValidationError("cannot open \(path) for writing") }
        defer { fclose(f) }
        _ = text.utf8CString.withUnsafeBufferPointer { fputs($0.baseAddress!, f) }
    }
}

import ArgumentParser
import FlashInfer

/// Facts every results file carries: device, date, commit.
func resultHeader(device: String) -> [(String, JSON)] {
    var t = time(nil)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    func two(_ x: Int32) -> String { x < 10 ? "0\(x)" : "\(x)" }
    let date = "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))Z"
    return [
        ("device", .string(device)),
        ("date", .string(date)),
        ("commit", .string(environment("FLASHINFER_COMMIT") ?? "unknown")),
        ("version", .string(FlashInferVersion.string)),
    ]
}
