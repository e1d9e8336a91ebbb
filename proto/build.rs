fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/silt.proto");
    tonic_prost_build::configure().compile_protos(&["proto/silt.proto"], &["proto"])?;
    Ok(())
}
