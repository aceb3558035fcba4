//! The Xen PV public ABI (`xen/include/public/`) as `repr(C)` types and constants.
