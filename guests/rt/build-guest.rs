// The build script of every test guest (each guest's Cargo.toml says
// `build = "../rt/build-guest.rs"`): link with the guests' linker script,
// guests/rt/guest.ld. Bare-metal target only: on the host a guest is an
// empty program (see pvguest::guest_main!). Every guest crate sits beside
// guests/rt, so the script is found from the guest's own directory.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/../rt/guest.ld");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
    println!("cargo:rerun-if-changed=../rt/guest.ld");
}
