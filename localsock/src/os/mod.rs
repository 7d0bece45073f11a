//! Platform-specific extensions.
//!
//! The portable API is the same on every platform; what only one platform has lives here, in
//! sealed extension traits.

#[cfg(windows)]
#[cfg_attr(docsrs, doc(cfg(windows)))]
pub mod windows;
