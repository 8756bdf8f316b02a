/// The library version.
public enum FlashInferVersion {
    public static let string = "0.1.0-dev"
}
