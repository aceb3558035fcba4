// The build script of every 32-bit test guest (each guest's Cargo.toml
// says `build = "../rt/build-guest.rs"`): link with guests32/rt/guest.ld.
// Only when building for the 32-bit target (i686-unknown-linux-gnu, see
// .cargo/config.toml): on the host a guest is an empty program (see
// pvguest32::guest_main!). Every guest crate sits beside guests32/rt, so
// the script is found from the guest's own directory.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/../rt/guest.ld");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        println!("cargo:rustc-link-arg-bins=--gc-sections");
    }
    println!("cargo:rerun-if-changed=../rt/guest.ld");
}
