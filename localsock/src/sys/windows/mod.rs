//! Windows backend: named pipes through `windows-sys`.
