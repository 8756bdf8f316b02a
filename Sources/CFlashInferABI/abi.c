// The C ABI header lives in include/flashinfer_swift.h; the functions are implemented in Swift (FlashInferC).
