//! `xen/include/public/io/console.h`: the shared-memory console ring of a
//! domU (frame and event channel in `start_info.console.domU`). The guest
//! produces into `out` and consumes from `in`; the backend (here the
//! hypervisor itself) does the opposite. Indices are free-running and
//! masked with the ring size.

use super::{layout, pod_struct};

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// Size of the input ring (backend -> guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output ring (guest -> backend).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `connection`: the backend serves the ring (added after 4.17).
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `connection`: not served yet; the initial state.
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

pod_struct! {
    /// `struct xencons_interface`.
    ///
    /// Xen 4.17's header ends after `out_prod` (3088 bytes); later headers
    /// add `connection` (the C struct then has 3 bytes of tail padding,
    /// spelled out here). The offsets of the older fields are unchanged.
    pub struct XenconsInterface {
        pub in_: [u8; XENCONS_IN_SIZE],
        pub out: [u8; XENCONS_OUT_SIZE],
        pub in_cons: XenconsRingIdx,
        pub in_prod: XenconsRingIdx,
        pub out_cons: XenconsRingIdx,
        pub out_prod: XenconsRingIdx,
        /// `XENCONSOLE_*`.
        pub connection: u8,
        pub _pad0: [u8; 3],
    }
}
layout!(XenconsInterface, 3092; in_ @ 0, out @ 1024, in_cons @ 3072, in_prod @ 3076,
        out_cons @ 3080, out_prod @ 3084, connection @ 3088);

/// `MASK_XENCONS_IDX(idx, in)`: position of index `idx` in `in`.
pub const fn mask_xencons_in(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// `MASK_XENCONS_IDX(idx, out)`: position of index `idx` in `out`.
pub const fn mask_xencons_out(idx: XenconsRingIdx) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_xencons_out(2048 + 5), 5);
        assert_eq!(mask_xencons_in(u32::MAX), 1023);
    }
}
