//! `guest32-hostile` (placeholder).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
pvguest32::guest_main!("hostile32", run);
fn run(_si: &pvguest32::abi32::StartInfo32) {}
