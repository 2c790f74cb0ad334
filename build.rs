// The `rbd` feature's C++ shim (src/store/rbd/zerocopy.cc): librbd's C++ API, for reads that
// hand over librbd's own buffers.
fn main() {
    println!("cargo:rerun-if-changed=src/store/rbd/zerocopy.cc");
    if std::env::var_os("CARGO_FEATURE_RBD").is_some() {
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("src/store/rbd/zerocopy.cc")
            .compile("grs_rbd_zerocopy");
        println!("cargo:rustc-link-lib=rbd");
        println!("cargo:rustc-link-lib=rados");
    }
}
