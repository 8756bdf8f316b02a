// Generated from bench/results/2026-12-04-decode-paths-H200-7eec33e.json (`bench decode-paths` on an
// NVIDIA H200 at 7eec33e: 8 KV heads, head_dim 128, page 16, f16; per-call medians in µs; copy
// ceiling 4.257 TB/s). The data DecodePathModel.Constants.h200 was fitted to.

struct DecodePathRow: Sendable {
    var batch: Int
    var kvLen: Int
    var group: Int
    var cudaCores: Double
    var tensorCores: Double
}

enum DecodePathsH200 {
    static let copyTBps = 4.2574
    static let rows: [DecodePathRow] = [
        .init(batch: 1, kvLen: 512, group: 1, cudaCores: 14.72, tensorCores: 16.51),
        .init(batch: 1, kvLen: 512, group: 2, cudaCores: 14.56, tensorCores: 17.15),
        .init(batch: 1, kvLen: 512, group: 4, cudaCores: 16.27, tensorCores: 18.45),
        .init(batch: 1, kvLen: 512, group: 8, cudaCores: 14.16, tensorCores: 16.35),
        .init(batch: 1, kvLen: 512, group: 16, cudaCores: 13.15, tensorCores: 16.30),
        .init(batch: 4, kvLen: 512, group: 1, cudaCores: 15.60, tensorCores: 17.18),
        .init(batch: 4, kvLen: 512, group: 2, cudaCores: 15.71, tensorCores: 14.98),
        .init(batch: 4, kvLen: 512, group: 4, cudaCores: 13.86, tensorCores: 15.86),
        .init(batch: 4, kvLen: 512, group: 8, cudaCores: 14.61, tensorCores: 17.65),
        .init(batch: 4, kvLen: 512, group: 16, cudaCores: 15.02, tensorCores: 17.18),
        .init(batch: 16, kvLen: 512, group: 1, cudaCores: 14.75, tensorCores: 17.33),
        .init(batch: 16, kvLen: 512, group: 2, cudaCores: 14.75, tensorCores: 17.06),
        .init(batch: 16, kvLen: 512, group: 4, cudaCores: 17.66, tensorCores: 16.91),
        .init(batch: 16, kvLen: 512, group: 8, cudaCores: 20.54, tensorCores: 17.54),
        .init(batch: 16, kvLen: 512, group: 16, cudaCores: 27.73, tensorCores: 17.95),
        .init(batch: 64, kvLen: 512, group: 1, cudaCores: 42.06, tensorCores: 42.91),
        .init(batch: 64, kvLen: 512, group: 2, cudaCores: 45.42, tensorCores: 43.26),
        .init(batch: 64, kvLen: 512, group: 4, cudaCores: 50.98, tensorCores: 43.89),
        .init(batch: 64, kvLen: 512, group: 8, cudaCores: 55.73, tensorCores: 44.98),
        .init(batch: 64, kvLen: 512, group: 16, cudaCores: 103.20, tensorCores: 45.60),
        .init(batch: 256, kvLen: 512, group: 1, cudaCores: 133.33, tensorCores: 149.14),
        .init(batch: 256, kvLen: 512, group: 2, cudaCores: 137.07, tensorCores: 150.05),
        .init(batch: 256, kvLen: 512, group: 4, cudaCores: 142.96, tensorCores: 152.08),
        .init(batch: 256, kvLen: 512, group: 8, cudaCores: 197.10, tensorCores: 155.23),
        .init(batch: 256, kvLen: 512, group: 16, cudaCores: 379.33, tensorCores: 161.15),
        .init(batch: 1, kvLen: 4096, group: 1, cudaCores: 15.38, tensorCores: 26.66),
        .init(batch: 1, kvLen: 4096, group: 2, cudaCores: 13.86, tensorCores: 26.00),
        .init(batch: 1, kvLen: 4096, group: 4, cudaCores: 14.08, tensorCores: 27.22),
        .init(batch: 1, kvLen: 4096, group: 8, cudaCores: 15.25, tensorCores: 28.08),
        .init(batch: 1, kvLen: 4096, group: 16, cudaCores: 19.49, tensorCores: 28.11),
        .init(batch: 4, kvLen: 4096, group: 1, cudaCores: 24.05, tensorCores: 30.35),
        .init(batch: 4, kvLen: 4096, group: 2, cudaCores: 25.02, tensorCores: 30.46),
        .init(batch: 4, kvLen: 4096, group: 4, cudaCores: 26.70, tensorCores: 30.80),
        .init(batch: 4, kvLen: 4096, group: 8, cudaCores: 32.62, tensorCores: 31.17),
        .init(batch: 4, kvLen: 4096, group: 16, cudaCores: 52.37, tensorCores: 31.74),
        .init(batch: 16, kvLen: 4096, group: 1, cudaCores: 69.22, tensorCores: 72.48),
        .init(batch: 16, kvLen: 4096, group: 2, cudaCores: 70.02, tensorCores: 72.38),
        .init(batch: 16, kvLen: 4096, group: 4, cudaCores: 73.54, tensorCores: 72.85),
        .init(batch: 16, kvLen: 4096, group: 8, cudaCores: 96.03, tensorCores: 73.78),
        .init(batch: 16, kvLen: 4096, group: 16, cudaCores: 174.98, tensorCores: 75.09),
        .init(batch: 64, kvLen: 4096, group: 1, cudaCores: 276.11, tensorCores: 250.67),
        .init(batch: 64, kvLen: 4096, group: 2, cudaCores: 301.54, tensorCores: 250.88),
        .init(batch: 64, kvLen: 4096, group: 4, cudaCores: 340.34, tensorCores: 251.47),
        .init(batch: 64, kvLen: 4096, group: 8, cudaCores: 346.40, tensorCores: 252.51),
        .init(batch: 64, kvLen: 4096, group: 16, cudaCores: 685.01, tensorCores: 253.71),
        .init(batch: 256, kvLen: 4096, group: 1, cudaCores: 965.60, tensorCores: 992.75),
        .init(batch: 256, kvLen: 4096, group: 2, cudaCores: 972.30, tensorCores: 994.18),
        .init(batch: 256, kvLen: 4096, group: 4, cudaCores: 1033.86, tensorCores: 995.46),
        .init(batch: 256, kvLen: 4096, group: 8, cudaCores: 1358.61, tensorCores: 998.56),
        .init(batch: 256, kvLen: 4096, group: 16, cudaCores: 2684.94, tensorCores: 1004.98),
        .init(batch: 1, kvLen: 32768, group: 1, cudaCores: 40.08, tensorCores: 56.78),
        .init(batch: 1, kvLen: 32768, group: 2, cudaCores: 40.86, tensorCores: 56.50),
        .init(batch: 1, kvLen: 32768, group: 4, cudaCores: 42.62, tensorCores: 58.34),
        .init(batch: 1, kvLen: 32768, group: 8, cudaCores: 54.13, tensorCores: 58.86),
        .init(batch: 1, kvLen: 32768, group: 16, cudaCores: 94.05, tensorCores: 61.20),
        .init(batch: 4, kvLen: 32768, group: 1, cudaCores: 129.38, tensorCores: 134.43),
        .init(batch: 4, kvLen: 32768, group: 2, cudaCores: 130.93, tensorCores: 135.01),
        .init(batch: 4, kvLen: 32768, group: 4, cudaCores: 134.69, tensorCores: 134.56),
        .init(batch: 4, kvLen: 32768, group: 8, cudaCores: 179.60, tensorCores: 135.62),
        .init(batch: 4, kvLen: 32768, group: 16, cudaCores: 344.48, tensorCores: 136.75),
        .init(batch: 16, kvLen: 32768, group: 1, cudaCores: 489.09, tensorCores: 481.62),
        .init(batch: 16, kvLen: 32768, group: 2, cudaCores: 495.79, tensorCores: 482.38),
        .init(batch: 16, kvLen: 32768, group: 4, cudaCores: 505.04, tensorCores: 481.82),
        .init(batch: 16, kvLen: 32768, group: 8, cudaCores: 677.12, tensorCores: 482.62),
        .init(batch: 16, kvLen: 32768, group: 16, cudaCores: 1340.14, tensorCores: 483.54),
        .init(batch: 64, kvLen: 32768, group: 1, cudaCores: 2157.07, tensorCores: 1905.97),
        .init(batch: 64, kvLen: 32768, group: 2, cudaCores: 2279.44, tensorCores: 1909.28),
        .init(batch: 64, kvLen: 32768, group: 4, cudaCores: 2642.45, tensorCores: 1911.84),
        .init(batch: 64, kvLen: 32768, group: 8, cudaCores: 2692.94, tensorCores: 1919.81),
        .init(batch: 64, kvLen: 32768, group: 16, cudaCores: 5511.89, tensorCores: 1926.26),
    ]
}
